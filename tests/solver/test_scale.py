"""Issue 12's solver changes: column dominance on the same pools, the LP ratio as a bound."""

from __future__ import annotations

from pathlib import Path

from bench.heavy_scenarios import base_pools, grow, heavy_scenario
from solver.dominance import undominated
from solver.milp import KTOKENS
from solver.replicas import ReplicaConfig, lower_bound_ratio
from solver.scenario import Scenario, load_scenario, scenario_from_dict
from solver.strategies import placement_model, solve

SEED = Path(__file__).resolve().parents[2] / "scenarios" / "seed.yaml"


def _config(gpus_by_pool: tuple[tuple[int, int], ...], tokens_per_s: float) -> ReplicaConfig:
    gpus = sum(g for _, g in gpus_by_pool)
    return ReplicaConfig("c0", "r0", (), tokens_per_s, 1.0 * gpus, gpus_by_pool)


def test_a_pipeline_beaten_on_the_same_pools_is_dropped_and_equal_ones_stay() -> None:
    configs = [
        _config(((0, 2), (1, 2)), 100.0),  # beaten by the next: fewer GPUs, more tokens/s
        _config(((0, 1), (1, 2)), 120.0),
        _config(((0, 4), (1, 4)), 300.0),  # two equal ones: neither beats the other
        _config(((0, 4), (1, 4)), 300.0),
        _config(((0, 1), (2, 1)), 50.0),  # other pools: not comparable
    ]
    assert undominated(configs) == [1, 2, 3, 4]


def _lp_ratio_and_optimum(scenario: Scenario) -> tuple[float, float, float]:
    """(physical bound, LP ratio, exact optimum) in USD/h per ktokens/s, columns on demand."""
    lazy = placement_model(scenario, columns_on_demand=True)
    physical = (lower_bound_ratio(scenario) or 0.0) * KTOKENS
    found = lazy.lp_ratio(physical, 1e-12)
    assert found is not None
    plan = solve(scenario, "exact", columns_on_demand=True)
    assert plan.status == "optimal"
    return physical, found[0], plan.cost_per_hour / (plan.useful_tokens_per_s / KTOKENS)


def test_the_lp_ratio_lies_between_the_physical_bound_and_the_exact_optimum() -> None:
    physical, lp_ratio, optimum = _lp_ratio_and_optimum(load_scenario(SEED))
    assert physical * (1 - 1e-12) <= lp_ratio <= optimum * (1 + 1e-9)


def test_under_heavy_demand_the_lp_ratio_is_far_above_the_physical_bound() -> None:
    document = heavy_scenario(grow(base_pools(), 25), num_layers=80, demand_share=0.25)
    physical, lp_ratio, optimum = _lp_ratio_and_optimum(scenario_from_dict(document))
    assert lp_ratio <= optimum * (1 + 1e-9)
    assert lp_ratio - physical > 0.9 * (optimum - physical)  # 5.53 vs 4.18, optimum 5.56
