"""Last night's fleet against tonight's scenario: re-priced per model, re-checked against pools
and quotas, pre-fleet pool ids read as tonight's fleet pools (real solver scenarios)."""

from __future__ import annotations

from typing import Any

from solver import scenario_from_dict
from tasks.state.diff import (
    compare_fleet_to_published,
    on_fleet_pools,
    recheck_fleet,
    reprice_fleet,
)

EAST = "aws/us-east-1/V100/spot"
EAST_OD = "aws/us-east-1/V100/on-demand"


def scenario(spot_price: float = 1.0, quota: int = 4, pools: tuple[str, ...] = (EAST, EAST_OD)):
    prices = {EAST: spot_price, EAST_OD: 3.0}
    return scenario_from_dict(
        {
            "models": [
                {
                    "name": "small",
                    "num_layers": 4,
                    "layer_memory_gb": 0.5,
                    "demand_tokens_per_s": 2000,
                },
                {
                    "name": "big",
                    "num_layers": 8,
                    "layer_memory_gb": 1.5,
                    "demand_tokens_per_s": 500,
                },
            ],
            "pools": [
                {
                    "id": pool,
                    "gpu": "V100",
                    "cloud": "aws",
                    "region": "us-east-1",
                    "market": pool.rsplit("/", 1)[1],
                    "available": 8,
                    "max_tp": 1,
                    "price_per_gpu_hour": prices[pool],
                    "memory_gb": 16,
                    "tokens_per_s": {"small": 1000, "big": 250},
                }
                for pool in pools
            ],
            "quotas": [{"cloud": "aws", "region": "us-east-1", "gpu": "V100", "max_gpus": quota}],
        }
    )


def plan(*groups: tuple[str, str, int]) -> dict[str, Any]:
    """(model, pool, count) replicas of one stage, figures as stored (stale on purpose)."""
    replicas = [
        {
            "count": count,
            "model": model,
            "cloud": "aws",
            "region": "us-east-1",
            "tokens_per_s": 1.0,
            "cost_per_hour": 1.0,
            "stages": [
                {
                    "pool": pool,
                    "gpu": "V100",
                    "tp": 1,
                    "layers": 4 if model == "small" else 8,
                    "market": "spot",
                }
            ],
        }
        for model, pool, count in groups
    ]
    return {"strategy": "exact", "status": "optimal", "replicas": replicas}


def test_reprice_uses_each_models_rate_and_tonights_price() -> None:
    previous = plan(("small", EAST, 2), ("big", EAST, 2))
    repriced = reprice_fleet(previous, scenario(spot_price=1.5))
    assert repriced["repriced"] is True
    assert repriced["tokens_per_s"] == 2 * 1000 + 2 * 250
    assert repriced["cost_per_hour"] == 4 * 1.5
    by_model = {m["name"]: m["tokens_per_s"] for m in repriced["models"]}
    assert by_model == {"small": 2000, "big": 500}


def test_recheck_names_a_pool_gone_and_a_quota_below_use() -> None:
    previous = plan(("small", EAST, 2), ("big", EAST, 2))
    assert recheck_fleet(previous, scenario()) == []
    assert any("quota" in v for v in recheck_fleet(previous, scenario(quota=3)))
    gone = recheck_fleet(previous, scenario(pools=(EAST_OD,)))
    assert gone == [f"pool {EAST} is no longer offered"]


def test_pre_fleet_pool_ids_become_tonights_fleet_pools() -> None:
    previous = plan(("small", "aws/us-east-1/V100", 2))
    renamed = on_fleet_pools(previous, {EAST, EAST_OD})
    assert renamed["replicas"][0]["stages"][0]["pool"] == EAST
    assert on_fleet_pools(previous, {EAST_OD}) == previous  # no spot pool tonight: kept


def test_a_quota_cut_below_last_nights_use_publishes_the_switch() -> None:
    previous = plan(("small", EAST, 2), ("big", EAST, 2))
    current = plan(("small", EAST, 2), ("big", EAST_OD, 1))
    current["replicas"][1]["stages"][0]["market"] = "on-demand"
    tonight = scenario(quota=3)
    comparison = compare_fleet_to_published(
        previous, reprice_fleet(current, tonight), tonight, 0.02
    )
    assert comparison.decision.kind == "infeasible" and comparison.decision.publish
    assert comparison.diff.changed
