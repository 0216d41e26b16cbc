"""solver.diff: placements, diffs, last night's plan against tonight, the publish decision."""

from __future__ import annotations

from typing import Any

import pytest

from solver import Scenario, scenario_from_dict, solve
from solver.diff import (
    compare_to_published,
    decide,
    diff_plans,
    placement_of,
    recheck_previous,
    reprice_plan,
)

V100 = "lab/east/V100"
T4 = "lab/east/T4"


def scenario(
    *, v100_available: int = 4, v100_price: float = 0.30, t4_price: float = 0.80, **solver: Any
) -> Scenario:
    """Two pools in one region; one V100 replica runs the whole 32-layer model."""
    pools = [
        {"id": V100, "gpu": "V100", "available": v100_available, "price_per_gpu_hour": v100_price,
         "tokens_per_s": 1000},
        {"id": T4, "gpu": "T4", "available": 8, "price_per_gpu_hour": t4_price,
         "tokens_per_s": 1200},
    ]  # fmt: skip
    return scenario_from_dict(
        {
            "model": {"name": "tiny", "num_layers": 32, "layer_memory_gb": 0.4},
            "pools": [
                {"cloud": "lab", "region": "east", "max_tp": 4, "memory_gb": 16, **pool}
                for pool in pools
            ],
            "solver": {"demand_tokens_per_s": 1500, "tp_degrees": [1], **solver},
        }
    )


def replica(pool: str, gpu: str, count: int, tokens_per_s: float, cost: float) -> dict[str, Any]:
    stages = [{"pool": pool, "gpu": gpu, "tp": 1, "layers": 32}]
    return {"count": count, "cloud": "lab", "region": "east", "tokens_per_s": tokens_per_s,
            "cost_per_hour": cost, "stages": stages}  # fmt: skip


def plan(*replicas: dict[str, Any], strategy: str = "exact") -> dict[str, Any]:
    tokens = sum(r["count"] * r["tokens_per_s"] for r in replicas)
    cost = sum(r["count"] * r["cost_per_hour"] for r in replicas)
    return {
        "strategy": strategy,
        "status": "optimal",
        "tokens_per_s": tokens,
        "cost_per_hour": cost,
        "cost_per_token": cost / (3600 * tokens) if tokens else None,
        "gpus": sum(r["count"] for r in replicas),
        "replicas": list(replicas),
    }


TWO_V100 = plan(replica(V100, "V100", 2, 1000, 0.30))
TWO_T4 = plan(replica(T4, "T4", 2, 1200, 0.80))
MIXED = plan(replica(V100, "V100", 1, 1000, 0.30), replica(T4, "T4", 1, 1200, 0.80))


def test_placement_ignores_figures_order_and_grouping() -> None:
    split = plan(replica(V100, "V100", 1, 1000, 0.31), replica(V100, "V100", 1, 999, 0.29))
    assert placement_of(split) == placement_of(TWO_V100)
    reordered = plan(*reversed(MIXED["replicas"]))
    assert placement_of(reordered) == placement_of(MIXED)
    assert placement_of(TWO_V100) != placement_of(TWO_T4)
    assert placement_of(None) == placement_of(plan())


def test_first_plan_publishes_initial_plan() -> None:
    diff = diff_plans(None, TWO_V100)
    assert diff.first and diff.changed
    assert diff.replicas_added_by_pool == {V100: 2}
    assert diff.gpus_by_type_after == {"V100": 2}
    decision = decide(None, [], TWO_V100)
    assert decision.publish and decision.reason == "initial plan" and decision.kind == "initial"


def test_identical_placement_is_unchanged() -> None:
    repriced = {**TWO_V100, "cost_per_hour": 0.5, "cost_per_token": 1e-7}
    diff = diff_plans(repriced, TWO_V100)
    assert not diff.changed and not diff.added and not diff.removed
    assert diff.gpus_by_type_delta == {}
    decision = decide(repriced, [], TWO_V100)
    assert not decision.publish and decision.reason == "unchanged"


def test_diff_names_replicas_added_and_removed_per_pool() -> None:
    diff = diff_plans(MIXED, TWO_V100)
    assert diff.changed
    assert [(c.count, c.pools) for c in diff.added] == [(1, (V100,))]
    assert [(c.count, c.pools) for c in diff.removed] == [(1, (T4,))]
    assert diff.replicas_added_by_pool == {V100: 1}
    assert diff.replicas_removed_by_pool == {T4: 1}
    assert diff.gpus_by_type_delta == {"T4": -1, "V100": 1}
    assert diff.gpus_by_pool_delta == {T4: -1, V100: 1}
    assert diff.cost_per_hour_before == pytest.approx(1.10)
    assert diff.cost_per_hour_after == pytest.approx(0.60)
    assert diff.to_json()["replicas_removed_by_pool"] == {T4: 1}


def test_saving_above_threshold_publishes() -> None:
    decision = decide(MIXED, [], TWO_V100)  # $/token 1.39e-7 → 8.3e-8
    assert decision.publish and decision.kind == "saving"
    assert decision.reason.startswith("saves ") and decision.reason.endswith("% $/token")
    assert decision.saving_cost_per_token == pytest.approx(1 - (0.6 / 2000) / (1.1 / 2200))


def test_saving_below_threshold_keeps_the_plan() -> None:
    previous = {**TWO_T4, "cost_per_hour": 0.6 * 1.01, "tokens_per_s": 2000}
    previous["cost_per_token"] = previous["cost_per_hour"] / (3600 * 2000)
    decision = decide(previous, [], TWO_V100)
    assert not decision.publish and decision.kind == "below-threshold"
    assert decision.reason == "saving below threshold (1.0% < 2%)"
    assert decide(previous, [], TWO_V100, threshold=0.005).publish


def test_cost_saving_alone_reaches_the_threshold() -> None:
    # Same $/token, but half the fleet: the cost per hour saving publishes.
    previous = plan(replica(V100, "V100", 4, 1000, 0.30))
    decision = decide(previous, [], TWO_V100)
    assert decision.publish and decision.reason == "saves 50.0% cost per hour"


def test_previous_infeasible_when_quota_fell_below_use() -> None:
    tonight = scenario(v100_available=1)
    violations = recheck_previous(TWO_V100, tonight)
    assert violations == [f"pool {V100}: quota fell below use: uses 2 GPUs, 1 available"]
    current = solve(tonight, "exact").to_json()
    decision = decide(reprice_plan(TWO_V100, tonight), violations, current)
    assert decision.publish and decision.kind == "infeasible"
    assert decision.reason.startswith("current plan infeasible: pool lab/east/V100: quota fell")
    assert decision.violations == tuple(violations)


def test_recheck_names_a_pool_gone_budget_and_demand() -> None:
    only_t4 = scenario_from_dict(
        {
            "model": {"name": "tiny", "num_layers": 32, "layer_memory_gb": 0.4},
            "pools": [
                {
                    "id": T4,
                    "gpu": "T4",
                    "cloud": "lab",
                    "region": "east",
                    "available": 8,
                    "max_tp": 1,
                    "price_per_gpu_hour": 0.8,
                    "memory_gb": 16,
                    "tokens_per_s": 1200,
                }
            ],
            "solver": {"demand_tokens_per_s": 1500, "tp_degrees": [1]},
        }
    )
    assert recheck_previous(MIXED, only_t4) == [f"pool {V100} is no longer offered"]
    assert recheck_previous(TWO_V100, scenario(demand_tokens_per_s=2500)) == [
        "throughput 2000 below demand 2500"
    ]
    over_budget = recheck_previous(TWO_V100, scenario(v100_price=1.0, budget_per_hour=1.5))
    assert over_budget == ["cost 2 $/h above budget 1.5"]
    assert recheck_previous(TWO_V100, scenario()) == []


def test_saving_compares_against_last_night_at_tonight_prices() -> None:
    # V100 doubled in price: last night's placement now costs more than all-T4 per token.
    tonight = scenario(v100_price=0.90)
    repriced = reprice_plan(TWO_V100, tonight)
    assert repriced["cost_per_hour"] == pytest.approx(1.80) and repriced["repriced"]
    comparison = compare_to_published(TWO_V100, solve(tonight, "exact").to_json(), tonight)
    assert comparison.decision.publish and comparison.decision.kind == "saving"
    assert comparison.decision.previous_cost_per_hour == pytest.approx(1.80)
    assert comparison.diff.cost_per_hour_before == pytest.approx(0.60)  # as published


def test_no_feasible_plan_tonight_keeps_the_published_one() -> None:
    infeasible = {"strategy": "exact", "status": "infeasible", "replicas": [], "message": "quota"}
    decision = decide(TWO_V100, ["pool gone"], infeasible)
    assert not decision.publish and decision.kind == "no-plan"
    assert "quota" in decision.reason


def test_solved_plans_round_trip_through_json() -> None:
    tonight = scenario()
    exact = solve(tonight, "exact").to_json()
    assert recheck_previous(exact, tonight) == []
    assert not diff_plans(exact, solve(tonight, "exact").to_json()).changed
    assert decide(exact, [], exact).reason == "unchanged"


def test_a_fleet_of_two_models_is_refused_rather_than_compared_without_its_models() -> None:
    one_model = scenario()
    document = {
        "models": [
            {"name": "tiny", "num_layers": 32, "layer_memory_gb": 0.4, "demand_tokens_per_s": 500},
            {"name": "other", "num_layers": 32, "layer_memory_gb": 0.4, "demand_tokens_per_s": 500},
        ],
        "pools": [
            {"id": V100, "cloud": "lab", "region": "east", "gpu": "V100", "available": 4,
             "price_per_gpu_hour": 0.30, "tokens_per_s": 1000, "max_tp": 4, "memory_gb": 16},
        ],
        "solver": {"tp_degrees": [1]},
    }  # fmt: skip
    fleet = scenario_from_dict(document)
    tonight = solve(fleet, "exact").to_json()
    with pytest.raises(ValueError, match="compare_fleet_to_published"):
        compare_to_published(tonight, tonight, fleet)
    assert compare_to_published(TWO_V100, TWO_V100, one_model).decision.kind == "unchanged"
