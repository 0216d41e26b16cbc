"""Join the price table with the inventory into the placement spec's pools, and write a scenario.

One pool per (cloud, region, gpu) offer of a GPU type the inventory lists, per market in
price mode `both` (a row with a spot and an on-demand price gives two pools, ids suffixed
`/spot` and `/on-demand`, each with its `market`); one pool per offer in the other modes:
- `price_per_gpu_hour`: the cheapest per-GPU price (instance price / gpus_per_instance) over
  the offer's zones, instance types and sources, in the pool's market: `spot`, `on-demand`,
  or `cheapest` (per instance row the lower of the two prices present);
- spot prices of rows whose AWS spot-advisor bucket (`spot_interruption`) is above the
  inventory's `serving.max_spot_interruption` are left out; rows with no bucket stay (only AWS
  publishes one) and a note says so;
- `max_tp`: the largest power of two <= gpus_per_instance, taking the **largest** node among
  the offer's instance types priced in that market (the pool can rent that node; on-demand
  prices are per-GPU linear within a family on the big clouds, but a spot pool may get its
  price from a smaller node than the one that sets `max_tp` - see config/README.md);
- `available`: the smallest quota covering the pool (`Inventory.available_gpus`); pools no
  quota covers, or whose quota is 0, are not built;
- `memory_gb`, `tokens_per_s`, `tp_efficiency`: from the inventory's GPU entry and its profile
  for the model (NaN when there is no profile: `validate_pools` then fails the run).

`fleet_scenario` builds the fleet document of `../shared/spec/fleet-model.md`: every model
(demand, useful throughput), pools with per-model `tokens_per_s` maps (a model without a
profile for the GPU cannot use the pool), a `market` per pool, and the inventory's quotas that
cover more than one pool as `quotas:` entries (they cap the sum; a quota covering one pool is
that pool's `available`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml

from tasks.files import write_text_atomic
from tasks.inventory import MARKETS, Inventory, ModelSpec, Quota
from tasks.prices.schema import SPOT_INTERRUPTION_BUCKETS

PriceMode = Literal["spot", "on-demand", "cheapest", "both"]
PRICE_MODES: tuple[str, ...] = ("spot", "on-demand", "cheapest", "both")
DEFAULT_FLEET_PRICE_MODE = "both"
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
# Not part of a one-model scenario; kept in the pools frame for reports. `market` is the pool's
# market ("spot", "on-demand"; None for `cheapest`), `spot_interruption` the advisor bucket of
# the row that sets a spot pool's price (None when unknown or not spot).
DETAIL_COLUMNS: tuple[str, ...] = (
    "cheapest_instance_type",
    "cheapest_zone",
    "offer_rows",
    "market",
    "spot_interruption",
)
OFFER_COLUMNS: tuple[str, ...] = tuple(
    c for c in (*POOL_COLUMNS, *DETAIL_COLUMNS) if c not in ("tokens_per_s", "tp_efficiency")
)
PRICE_DECIMALS = 6  # USD per GPU-hour, to a millionth of a dollar
NO_FEED_NOTE = (
    "only AWS publishes spot interruption data (the spot advisor); {clouds} publish no such feed"
)


class PoolsError(ValueError):
    """Pools cannot be built (unknown model or price mode, a model no pool can serve)."""


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


def _check_mode(price_mode: str) -> None:
    if price_mode not in PRICE_MODES:
        raise PoolsError(f"price mode must be one of {', '.join(PRICE_MODES)}, got {price_mode!r}")


def per_gpu_prices(prices: pd.DataFrame, price_mode: str) -> pd.Series:
    """USD per GPU-hour of each price row in `price_mode`; NaN where the row has no such price.

    `both` has two prices per row; as one number per row it is the lower (as `cheapest`)."""
    _check_mode(price_mode)
    gpus = prices["gpus_per_instance"].astype("float64")
    on_demand = prices["price_per_hour"].astype("float64") / gpus
    spot = prices["spot_price_per_hour"].astype("float64") / gpus
    if price_mode == "spot":
        return spot
    if price_mode == "on-demand":
        return on_demand
    return pd.concat([on_demand, spot], axis=1).min(axis=1, skipna=True)


def interruption_ranks(prices: pd.DataFrame) -> pd.Series:
    """Index of each row's `spot_interruption` bucket (least first); NaN when unknown."""
    if "spot_interruption" not in prices.columns:
        return pd.Series(math.nan, index=prices.index, dtype="float64")
    rank = {label: float(i) for i, label in enumerate(SPOT_INTERRUPTION_BUCKETS)}
    return prices["spot_interruption"].map(lambda v: rank.get(v, math.nan)).astype("float64")


def _market_prices(frame: pd.DataFrame, market: str | None, max_rank: int | None) -> pd.Series:
    """Per-GPU price of each row in `market` (None: the lower of the two); spot prices of rows
    above the interruption ceiling are dropped."""
    gpus = frame["gpus_per_instance"].astype("float64")
    on_demand = frame["price_per_hour"].astype("float64") / gpus
    spot = frame["spot_price_per_hour"].astype("float64") / gpus
    if max_rank is not None:
        spot = spot.where(~(interruption_ranks(frame) > max_rank))
    if market == "spot":
        return spot
    if market == "on-demand":
        return on_demand
    return pd.concat([on_demand, spot], axis=1).min(axis=1, skipna=True)


def _markets_of(price_mode: str) -> tuple[str | None, ...]:
    if price_mode == "both":
        return MARKETS
    return (None,) if price_mode == "cheapest" else (price_mode,)


def _listing(items: Sequence[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


def build_offers(prices: pd.DataFrame, inventory: Inventory, *, price_mode: str) -> PoolBuild:
    """Model-independent pools (columns OFFER_COLUMNS): price, max_tp, available, market."""
    _check_mode(price_mode)
    notes: list[str] = []
    frame = prices.copy()
    if "spot_interruption" not in frame.columns:  # a table saved before the column existed
        frame["spot_interruption"] = None
    unknown = frame.loc[~frame["gpu"].isin(list(inventory.gpus)), "gpu"]
    if len(unknown):
        notes.append(
            f"{len(unknown)} price rows skipped: GPU type not in the inventory "
            f"({', '.join(sorted(unknown.unique())[:8])}{', ...' if unknown.nunique() > 8 else ''})"
        )
    frame = frame[frame["gpu"].isin(list(inventory.gpus))]
    markets = _markets_of(price_mode)
    max_rank = inventory.serving.max_interruption_rank
    notes += _interruption_notes(frame, inventory, markets)
    for market in markets:
        frame[f"_price_{market}"] = _market_prices(frame, market, max_rank)
    if price_mode != "both":
        unpriced = frame[f"_price_{markets[0]}"].isna()
        if unpriced.any():
            notes.append(f"{int(unpriced.sum())} price rows skipped: no {price_mode} price")
    rows: list[dict[str, Any]] = []
    no_quota: list[str] = []
    zero_quota: list[str] = []
    for (cloud, region, gpu), offer in frame.groupby(["cloud", "region", "gpu"], sort=True):
        for market in markets:
            priced = offer[offer[f"_price_{market}"].notna()]
            if priced.empty:
                continue
            pool_id = f"{cloud}/{region}/{gpu}" + (f"/{market}" if price_mode == "both" else "")
            available = inventory.available_gpus(str(cloud), str(region), str(gpu), market)
            if available is None:
                no_quota.append(pool_id)
                continue
            if available == 0:
                zero_quota.append(pool_id)
                continue
            cheapest = priced.loc[priced[f"_price_{market}"].idxmin()]
            bucket = cheapest["spot_interruption"] if market == "spot" else None
            rows.append(
                {
                    "id": pool_id,
                    "gpu": gpu,
                    "cloud": cloud,
                    "region": region,
                    "available": int(available),
                    "max_tp": max_tp_for(int(priced["gpus_per_instance"].max())),
                    "price_per_gpu_hour": round(
                        float(cheapest[f"_price_{market}"]), PRICE_DECIMALS
                    ),
                    "memory_gb": inventory.gpus[str(gpu)].memory_gb,
                    "cheapest_instance_type": cheapest["instance_type"],
                    "cheapest_zone": cheapest["zone"],
                    "offer_rows": len(priced),
                    "market": market,
                    "spot_interruption": bucket if isinstance(bucket, str) else None,
                }
            )
    if no_quota:
        notes.append(f"{len(no_quota)} offers skipped: no quota names them or their cloud")
    if zero_quota:
        notes.append(f"{len(zero_quota)} offers skipped: quota 0 ({_listing(zero_quota)})")
    unused = [
        f"{q.where} {_quota_text(q)}"
        for q in inventory.quotas
        if not q.per_cloud and q.max_gpus > 0 and not any(_covers(q, row) for row in rows)
    ]
    if unused:
        notes.append(
            f"{len(unused)} quotas match no offer with a {price_mode} price: " + _listing(unused)
        )
    pools = pd.DataFrame(rows, columns=list(OFFER_COLUMNS))
    for column in ("market", "spot_interruption"):  # missing text is None, not NaN
        pools[column] = pools[column].astype("object").where(pools[column].notna(), None)
    return PoolBuild(pools=pools, notes=tuple(notes))


def _quota_text(quota: Quota) -> str:
    if quota.market is None and quota.region is not None and quota.gpu is not None:
        return f"{quota.cloud}/{quota.region}/{quota.gpu}"
    return quota.label


def _covers(quota: Quota, pool: Mapping[str, Any]) -> bool:
    market = pool.get("market")
    return quota.matches(
        str(pool["cloud"]), str(pool["region"]), str(pool["gpu"]), market if market else None
    )


def _interruption_notes(
    frame: pd.DataFrame, inventory: Inventory, markets: tuple[str | None, ...]
) -> list[str]:
    """What the interruption ceiling removed, and which clouds have no bucket to judge by."""
    ceiling = inventory.serving.max_spot_interruption
    max_rank = inventory.serving.max_interruption_rank
    if max_rank is None or ("on-demand" in markets and len(markets) == 1):
        return []
    has_spot = frame["spot_price_per_hour"].notna()
    ranks = interruption_ranks(frame)
    notes = []
    above = has_spot & (ranks > max_rank)
    if above.any():
        notes.append(
            f"{int(above.sum())} spot price rows left out: AWS spot advisor interruption bucket "
            f"above {ceiling} (serving.max_spot_interruption)"
        )
    unknown = has_spot & ranks.isna()
    if unknown.any():
        clouds = sorted(frame.loc[unknown, "cloud"].unique())
        notes.append(
            f"{int(unknown.sum())} spot price rows kept with no interruption bucket: "
            + NO_FEED_NOTE.format(clouds=", ".join(c for c in clouds if c != "aws") or "the others")
            + (
                " (aws rows too: their price source carried no advisor data)"
                if "aws" in clouds
                else ""
            )
        )
    return notes


def build_pools(
    prices: pd.DataFrame, inventory: Inventory, model: str, *, price_mode: str = "spot"
) -> PoolBuild:
    """Pools (one row per offer and market, columns POOL_COLUMNS + DETAIL_COLUMNS) for `model`."""
    if model not in inventory.models:
        known = ", ".join(sorted(inventory.models)) or "none"
        raise PoolsError(f"model {model!r} is not in the inventory (models: {known})")
    offers = build_offers(prices, inventory, price_mode=price_mode)
    pools = offers.pools.copy()
    profiles = [inventory.gpus[str(gpu)].profiles.get(model) for gpu in pools["gpu"]]
    pools["tokens_per_s"] = [p.tokens_per_s if p else math.nan for p in profiles]
    pools["tp_efficiency"] = [
        dict(p.tp_efficiency) if p and p.tp_efficiency else None for p in profiles
    ]
    return PoolBuild(pools=pools[[*POOL_COLUMNS, *DETAIL_COLUMNS]], notes=offers.notes)


def pool_entries(pools: pd.DataFrame) -> list[dict[str, Any]]:
    """The scenario's `pools` list: the spec's fields, plus `tp_efficiency` from a profile and
    `market` when the pool's name carries it (price mode `both`)."""
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
        market = row.get("market")
        if isinstance(market, str) and entry["id"].endswith(f"/{market}"):
            entry["market"] = market  # price mode `both`: the pool's name carries its market
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


# --- the fleet: every model, one set of pools, quotas that cap sums ---------------------------

FLEET_MODEL_OPTIONS = ("budget_per_hour", "max_stages", "homogeneous_replicas")


@dataclass(frozen=True)
class FleetBuild:
    """Fleet pools (one row per pool and market) with per-model throughput, and the quotas."""

    offers: pd.DataFrame  # OFFER_COLUMNS, the pools at least one model can use
    models: tuple[ModelSpec, ...]
    per_model: Mapping[str, pd.DataFrame]  # build_pools-style frame of the pools a model can use
    quotas: tuple[Quota, ...]  # inventory quotas covering more than one pool
    notes: tuple[str, ...] = ()
    price_mode: str = DEFAULT_FLEET_PRICE_MODE


def build_fleet(
    prices: pd.DataFrame,
    inventory: Inventory,
    *,
    price_mode: str = DEFAULT_FLEET_PRICE_MODE,
    models: Sequence[str] | None = None,
) -> FleetBuild:
    """The pools every model of the fleet may use; raise PoolsError for an unusable request."""
    _check_mode(price_mode)
    if price_mode == "cheapest":
        raise PoolsError(
            "a fleet needs one market per pool: price mode both, spot or on-demand, not cheapest"
        )
    names = list(models) if models is not None else list(inventory.models)
    unknown = [m for m in names if m not in inventory.models]
    if unknown or not names:
        known = ", ".join(sorted(inventory.models)) or "none"
        raise PoolsError(f"models not in the inventory: {', '.join(unknown)} (models: {known})")
    offers = build_offers(prices, inventory, price_mode=price_mode)
    pools = offers.pools.copy()
    if price_mode != "both":  # one market, still named with it: the fleet spec's pool names
        pools["id"] = pools["id"] + "/" + pools["market"]
    notes = list(offers.notes)
    usable = [any(m in inventory.gpus[str(gpu)].profiles for m in names) for gpu in pools["gpu"]]
    unusable = pools.loc[[not u for u in usable], "id"].tolist()
    if unusable:
        notes.append(
            f"{len(unusable)} pools skipped: no model of the fleet has a throughput profile for "
            f"their GPU ({_listing(unusable)})"
        )
    pools = pools[usable].reset_index(drop=True)
    per_model: dict[str, pd.DataFrame] = {}
    for name in names:
        profiles = [inventory.gpus[str(gpu)].profiles.get(name) for gpu in pools["gpu"]]
        frame = pools.copy()
        frame["tokens_per_s"] = [p.tokens_per_s if p else math.nan for p in profiles]
        frame["tp_efficiency"] = [
            dict(p.tp_efficiency) if p and p.tp_efficiency else None for p in profiles
        ]
        per_model[name] = frame[frame["tokens_per_s"].notna()][
            [*POOL_COLUMNS, *DETAIL_COLUMNS]
        ].reset_index(drop=True)
    records = pools.to_dict("records")
    shared = tuple(q for q in inventory.quotas if sum(_covers(q, row) for row in records) > 1)
    return FleetBuild(
        offers=pools,
        models=tuple(inventory.models[m] for m in names),
        per_model=per_model,
        quotas=shared,
        notes=tuple(notes),
        price_mode=price_mode,
    )


def fleet_document(build: FleetBuild, inventory: Inventory) -> dict[str, Any]:
    """The fleet scenario document (fleet-model.md) of a build; PoolsError when a model has no
    pool or per-model solver options disagree."""
    empty = [m.name for m in build.models if build.per_model[m.name].empty]
    if empty:
        raise PoolsError(
            f"no pool can serve model(s) {', '.join(empty)}: no quota covers a priced offer of a "
            "GPU type with a throughput profile for them"
        )
    models = []
    for model in build.models:
        entry: dict[str, Any] = {
            "name": model.name,
            "num_layers": model.num_layers,
            "layer_memory_gb": round(model.layer_memory_gb, 6),
            "demand_tokens_per_s": model.demand_tokens_per_s,
        }
        if model.useful_tokens_per_s is not None:
            entry["useful_tokens_per_s"] = model.useful_tokens_per_s
        models.append(entry)
    rates: dict[str, dict[str, float]] = {}
    efficiencies: dict[str, dict[str, dict[int, float]]] = {}
    for name, frame in build.per_model.items():
        for row in frame.to_dict("records"):
            rates.setdefault(row["id"], {})[name] = float(row["tokens_per_s"])
            if isinstance(row.get("tp_efficiency"), Mapping):
                efficiencies.setdefault(row["id"], {})[name] = {
                    int(k): float(v) for k, v in row["tp_efficiency"].items()
                }
    pools = []
    for row in build.offers.to_dict("records"):
        entry = {
            "id": str(row["id"]),
            "gpu": str(row["gpu"]),
            "cloud": str(row["cloud"]),
            "region": str(row["region"]),
            "market": str(row["market"]),
            "available": int(row["available"]),
            "max_tp": int(row["max_tp"]),
            "price_per_gpu_hour": float(row["price_per_gpu_hour"]),
            "memory_gb": float(row["memory_gb"]),
            "tokens_per_s": rates[row["id"]],
        }
        if row["id"] in efficiencies:
            entry["tp_efficiency"] = efficiencies[row["id"]]
        pools.append(entry)
    quotas = []
    for quota in build.quotas:
        item: dict[str, Any] = {"cloud": quota.cloud}
        for key in ("region", "gpu", "market"):
            if getattr(quota, key) is not None:
                item[key] = getattr(quota, key)
        item["max_gpus"] = quota.max_gpus
        quotas.append(item)
    document: dict[str, Any] = {"models": models, "pools": pools}
    if quotas:
        document["quotas"] = quotas
    document["solver"] = _fleet_solver_options(build.models, inventory)
    return document


def _fleet_solver_options(models: Sequence[ModelSpec], inventory: Inventory) -> dict[str, Any]:
    """Fleet-wide options: `serving:` resilience, plus per-model options all models agree on."""
    options: dict[str, Any] = {}
    for key in FLEET_MODEL_OPTIONS:
        values = {repr(m.serving[key]): m.serving[key] for m in models if key in m.serving}
        if len(values) > 1:
            raise PoolsError(
                f"models.*.serving.{key} differs between models ({', '.join(sorted(values))}); "
                "a fleet is solved with one value"
            )
        if values:
            options[key] = next(iter(values.values()))
    serving = inventory.serving
    if "survive_spot_loss" in serving.given:
        options["survive_spot_loss"] = serving.survive_spot_loss
    if "survive_fraction" in serving.given:
        options["survive_fraction"] = serving.survive_fraction
    options.setdefault("time_limit_s", serving.time_limit_s)
    return options


def fleet_scenario(
    prices: pd.DataFrame,
    inventory: Inventory,
    *,
    price_mode: str = DEFAULT_FLEET_PRICE_MODE,
    models: Sequence[str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The whole fleet as one scenario document (fleet-model.md), and notes on what was left out."""
    build = build_fleet(prices, inventory, price_mode=price_mode, models=models)
    return fleet_document(build, inventory), list(build.notes)
