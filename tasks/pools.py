"""Join the price table with the inventory into the placement spec's pools, and write a scenario.

One pool per (cloud, region, gpu) offer of a GPU type the inventory lists:
- `price_per_gpu_hour`: the cheapest per-GPU price (instance price / gpus_per_instance) over
  the offer's zones, instance types and sources, in the chosen price mode: `spot`,
  `on-demand`, or `cheapest` (per instance row the lower of the two prices present);
- `max_tp`: the largest power of two <= gpus_per_instance, taking the **largest** node among
  the offer's instance types priced in that mode (the pool can rent that node; on-demand
  prices are per-GPU linear within a family on the big clouds, but a spot pool may get its
  price from a smaller node than the one that sets `max_tp` - see config/README.md);
- `available`: from the inventory's quotas (offer quota capped by the cloud quota); offers no
  quota names, or whose quota is 0, get no pool;
- `memory_gb`, `tokens_per_s`, `tp_efficiency`: from the inventory's GPU entry and its profile
  for the model (NaN when there is no profile: `validate_pools` then fails the run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml

from tasks.files import write_text_atomic
from tasks.inventory import Inventory, ModelSpec

PriceMode = Literal["spot", "on-demand", "cheapest"]
PRICE_MODES: tuple[str, ...] = ("spot", "on-demand", "cheapest")
POOL_COLUMNS: tuple[str, ...] = (
    "id",
    "gpu",
    "cloud",
    "region",
    "available",
    "max_tp",
    "price_per_gpu_hour",
    "memory_gb",
    "tokens_per_s",
    "tp_efficiency",
)
# Not part of the scenario; kept in the pools frame for reports.
DETAIL_COLUMNS: tuple[str, ...] = ("cheapest_instance_type", "cheapest_zone", "offer_rows")
PRICE_DECIMALS = 6  # USD per GPU-hour, to a millionth of a dollar


class PoolsError(ValueError):
    """Pools cannot be built (unknown model or price mode)."""


@dataclass(frozen=True)
class PoolBuild:
    """The pools frame plus notes on what was left out and why."""

    pools: pd.DataFrame
    notes: tuple[str, ...] = field(default_factory=tuple)


def max_tp_for(gpus_per_instance: int) -> int:
    """The largest power of two <= `gpus_per_instance` (TP stays inside one node)."""
    if gpus_per_instance < 1:
        raise ValueError(f"gpus_per_instance must be >= 1, got {gpus_per_instance}")
    return 1 << (int(gpus_per_instance).bit_length() - 1)


def per_gpu_prices(prices: pd.DataFrame, price_mode: str) -> pd.Series:
    """USD per GPU-hour of each price row in `price_mode`; NaN where the row has no such price."""
    if price_mode not in PRICE_MODES:
        raise PoolsError(f"price mode must be one of {', '.join(PRICE_MODES)}, got {price_mode!r}")
    gpus = prices["gpus_per_instance"].astype("float64")
    on_demand = prices["price_per_hour"].astype("float64") / gpus
    spot = prices["spot_price_per_hour"].astype("float64") / gpus
    if price_mode == "spot":
        return spot
    if price_mode == "on-demand":
        return on_demand
    return pd.concat([on_demand, spot], axis=1).min(axis=1, skipna=True)


def build_pools(
    prices: pd.DataFrame, inventory: Inventory, model: str, *, price_mode: str = "spot"
) -> PoolBuild:
    """Pools (one row per offer, columns POOL_COLUMNS + DETAIL_COLUMNS) for `model`."""
    if model not in inventory.models:
        known = ", ".join(sorted(inventory.models)) or "none"
        raise PoolsError(f"model {model!r} is not in the inventory (models: {known})")
    notes: list[str] = []
    frame = prices.copy()
    frame["_price"] = per_gpu_prices(frame, price_mode)
    unknown = frame.loc[~frame["gpu"].isin(list(inventory.gpus)), "gpu"]
    if len(unknown):
        notes.append(
            f"{len(unknown)} price rows skipped: GPU type not in the inventory "
            f"({', '.join(sorted(unknown.unique())[:8])}{', ...' if unknown.nunique() > 8 else ''})"
        )
    frame = frame[frame["gpu"].isin(list(inventory.gpus))]
    unpriced = frame["_price"].isna()
    if unpriced.any():
        notes.append(f"{int(unpriced.sum())} price rows skipped: no {price_mode} price")
    frame = frame[~unpriced]
    rows: list[dict[str, Any]] = []
    no_quota: list[str] = []
    zero_quota: list[str] = []
    for (cloud, region, gpu), offer in frame.groupby(["cloud", "region", "gpu"], sort=True):
        pool_id = f"{cloud}/{region}/{gpu}"
        available = inventory.available_gpus(str(cloud), str(region), str(gpu))
        if available is None:
            no_quota.append(pool_id)
            continue
        if available == 0:
            zero_quota.append(pool_id)
            continue
        cheapest = offer.loc[offer["_price"].idxmin()]
        profile = inventory.gpus[str(gpu)].profiles.get(model)
        rows.append(
            {
                "id": pool_id,
                "gpu": gpu,
                "cloud": cloud,
                "region": region,
                "available": int(available),
                "max_tp": max_tp_for(int(offer["gpus_per_instance"].max())),
                "price_per_gpu_hour": round(float(cheapest["_price"]), PRICE_DECIMALS),
                "memory_gb": inventory.gpus[str(gpu)].memory_gb,
                "tokens_per_s": profile.tokens_per_s if profile else math.nan,
                "tp_efficiency": dict(profile.tp_efficiency)
                if profile and profile.tp_efficiency
                else None,
                "cheapest_instance_type": cheapest["instance_type"],
                "cheapest_zone": cheapest["zone"],
                "offer_rows": len(offer),
            }
        )
    if no_quota:
        notes.append(f"{len(no_quota)} offers skipped: no quota names them or their cloud")
    if zero_quota:
        notes.append(f"{len(zero_quota)} offers skipped: quota 0 ({', '.join(zero_quota[:5])})")
    built = {row["id"] for row in rows}
    unused = [
        f"{q.where} {q.cloud}/{q.region}/{q.gpu}"
        for q in inventory.quotas
        if not q.per_cloud and f"{q.cloud}/{q.region}/{q.gpu}" not in built and q.max_gpus > 0
    ]
    if unused:
        notes.append(
            f"{len(unused)} quotas match no offer with a {price_mode} price: "
            + ", ".join(unused[:5])
            + (", ..." if len(unused) > 5 else "")
        )
    pools = pd.DataFrame(rows, columns=[*POOL_COLUMNS, *DETAIL_COLUMNS])
    return PoolBuild(pools=pools, notes=tuple(notes))


def pool_entries(pools: pd.DataFrame) -> list[dict[str, Any]]:
    """The scenario's `pools` list: the spec's fields, plus `tp_efficiency` from a profile."""
    entries = []
    for row in pools.to_dict("records"):
        entry: dict[str, Any] = {
            "id": str(row["id"]),
            "gpu": str(row["gpu"]),
            "cloud": str(row["cloud"]),
            "region": str(row["region"]),
            "available": int(row["available"]),
            "max_tp": int(row["max_tp"]),
            "price_per_gpu_hour": float(row["price_per_gpu_hour"]),
            "memory_gb": float(row["memory_gb"]),
            "tokens_per_s": float(row["tokens_per_s"]),
        }
        if isinstance(row.get("tp_efficiency"), Mapping):
            entry["tp_efficiency"] = {int(k): float(v) for k, v in row["tp_efficiency"].items()}
        entries.append(entry)
    return entries


def build_scenario(
    pools: pd.DataFrame, model: ModelSpec, solver_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A scenario document per the placement spec (`solver: {}` means the spec's defaults)."""
    return {
        "model": {
            "name": model.name,
            "num_layers": model.num_layers,
            "layer_memory_gb": round(model.layer_memory_gb, 6),
        },
        "pools": pool_entries(pools),
        "solver": {**model.serving, **(solver_options or {})},
    }


def scenario_yaml(scenario: Mapping[str, Any], header: str = "") -> str:
    """The YAML text of `scenario`, after `header` written as comment lines."""
    comments = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    body = yaml.safe_dump(dict(scenario), sort_keys=False, default_flow_style=False, width=100)
    return comments + body


def write_scenario(scenario: Mapping[str, Any], path: str | Path, header: str = "") -> Path:
    """Write `scenario` as YAML atomically (temp file in the same folder, fsync, rename)."""
    return write_text_atomic(path, scenario_yaml(scenario, header))
