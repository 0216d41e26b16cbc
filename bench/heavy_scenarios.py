"""Heavy-demand scenarios of issue 12, built from the bundled (real) catalog prices.

Every (cloud, region, GPU) offer of a GPU type the inventory profiles becomes a pool, in all
clouds, at its cheapest price (spot where present, else on-demand), with
`available = gpus_per_instance of its largest node` (a few GPUs per pool: one node each).
Larger fleets copy whole regions under a new region name with prices perturbed by a seeded
+-10 %. The model has `num_layers` layers of `layer_memory_gb` each; demand is a share of the
fleet's fluid capacity `sum(available x tokens_per_s)`.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.inventory import Quota, load_inventory
from tasks.pools import build_pools, pool_entries
from tasks.prices import fetch_prices

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INVENTORY = ROOT / "config" / "inventory.yaml"
PROFILE_MODEL = "llama-3.1-70b"  # GPU throughput profiles come from this inventory model
PRICE_NOISE = 0.10


def base_pools(inventory_path: Path = DEFAULT_INVENTORY) -> pd.DataFrame:
    """Every offer of every cloud as a pool with one node's GPUs available."""
    inventory = load_inventory(inventory_path)
    clouds = sorted({str(cloud) for cloud in fetch_prices("snapshot")["cloud"].unique()})
    quotas = tuple(Quota(cloud, 1_000, where=f"bench {cloud}") for cloud in clouds)
    inventory = dataclasses.replace(inventory, quotas=quotas)
    pools = build_pools(
        fetch_prices("snapshot"), inventory, PROFILE_MODEL, price_mode="cheapest"
    ).pools
    pools = pools.copy()
    pools["available"] = pools["max_tp"].astype(int)
    return pools.sort_values("id").reset_index(drop=True)


def grow(pools: pd.DataFrame, count: int, seed: int = 0) -> pd.DataFrame:
    """The first `count` pools of the fleet, copying whole regions (perturbed prices) past it."""
    rng = random.Random(seed)
    frames = [pools]
    copy = 1
    while sum(len(frame) for frame in frames) < count:
        clone = pools.copy()
        clone["region"] = clone["region"] + f"-copy{copy}"
        clone["id"] = clone["cloud"] + "/" + clone["region"] + "/" + clone["gpu"]
        clone["price_per_gpu_hour"] = [
            round(price * (1 + rng.uniform(-PRICE_NOISE, PRICE_NOISE)), 6)
            for price in clone["price_per_gpu_hour"]
        ]
        frames.append(clone)
        copy += 1
    grown = pd.concat(frames, ignore_index=True)
    if count >= len(grown):
        return grown
    order = list(range(len(grown)))
    rng.shuffle(order)
    return grown.iloc[sorted(order[:count])].reset_index(drop=True)


def heavy_scenario(
    pools: pd.DataFrame,
    *,
    num_layers: int,
    layer_memory_gb: float = 2.0,
    max_stages: int = 8,
    demand_share: float = 0.25,
    time_limit_s: float | None = None,
) -> dict[str, Any]:
    """A one-model scenario document with demand = `demand_share` of the fluid capacity."""
    capacity = float((pools["available"] * pools["tokens_per_s"]).sum())
    solver: dict[str, Any] = {
        "max_stages": max_stages,
        "demand_tokens_per_s": round(demand_share * capacity, 3),
    }
    if time_limit_s is not None:
        solver["time_limit_s"] = time_limit_s
    return {
        "model": {
            "name": f"bench-{num_layers}L",
            "num_layers": num_layers,
            "layer_memory_gb": layer_memory_gb,
        },
        "pools": pool_entries(pools),
        "solver": solver,
    }
