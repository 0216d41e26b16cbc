"""Property tests: every exact strategy on tiny random fleets against the exhaustive reference.

Issues 8 and 10: fleets of 1-2 models with shared availability, quotas, both markets, useful
caps, and `survive_spot_loss` (region or cloud, fractions below and at 1.0). Both ways of
building the model (every configuration listed, or columns generated on demand) must reach
the reference optimum; every returned plan must pass `recheck_fleet_plan` from its stages,
and its printed figures (totals, `models`, `capacity`, `resilience`) must match its stages.
"""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import HealthCheck, given, settings

from solver import scenario_from_dict, solve
from tests.solver.fleet_reference import (
    fleet_objective,
    fleet_reference_optimum,
    plan_capacity,
    plan_model_figures,
    recheck_fleet_plan,
    resilience_left,
)
from tests.solver.fleet_strategies import fleet_strategy_scenarios

REL_TOL = 1e-9
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("REPLAN_FLEET_PROPERTY_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

MODES = pytest.mark.parametrize("columns_on_demand", [False, True], ids=["listed", "on-demand"])
EXACT_FAMILY = pytest.mark.parametrize(
    "strategy", ["exact", "min-cost", "max-throughput", "weighted"]
)


def _check_figures(document: dict, plan: dict) -> tuple[float, float, float]:
    """Re-check the plan; its printed totals and per-model figures match its stages."""
    cost, tokens, useful = recheck_fleet_plan(document, plan)
    assert math.isclose(plan["cost_per_hour"], cost, rel_tol=1e-9), (plan["cost_per_hour"], cost)
    assert math.isclose(plan["tokens_per_s"], tokens, rel_tol=1e-9), (plan["tokens_per_s"], tokens)
    assert math.isclose(plan["useful_tokens_per_s"], useful, rel_tol=1e-9), (
        plan["useful_tokens_per_s"],
        useful,
    )
    assert math.isclose(plan["cost_per_token"], cost / (3600 * useful), rel_tol=1e-9), plan
    _check_capacity_block(document, plan)
    _check_resilience_block(document, plan)
    figures = plan_model_figures(document, plan)
    printed = {entry["name"]: entry for entry in plan["models"]}
    assert set(printed) == set(figures), (sorted(printed), sorted(figures))
    for name, mine in figures.items():
        entry = printed[name]
        assert math.isclose(entry["tokens_per_s"], mine.tokens_per_s, abs_tol=1e-9), (name, entry)
        assert math.isclose(entry["useful_tokens_per_s"], mine.useful_tokens_per_s, abs_tol=1e-9)
        assert math.isclose(entry["cost_per_hour"], mine.cost_per_hour, abs_tol=1e-9), entry
        assert entry["gpus"] == mine.gpus, (entry, mine)
    return cost, tokens, useful


def _check_capacity_block(document: dict, plan: dict) -> None:
    """The `capacity` block: GPUs used per pool and per quota, as the stages add up."""
    used, quotas = plan_capacity(document, plan)
    block = plan["capacity"]
    printed = {row["pool"]: (row["used_gpus"], row["available_gpus"]) for row in block["pools"]}
    pools = {p["id"]: p for p in document["pools"]}
    assert printed == {p: (n, pools[p]["available"]) for p, n in used.items()}, block["pools"]
    rows = [(row["label"], row["used_gpus"], row["max_gpus"]) for row in block["quotas"]]
    assert rows == quotas, (block["quotas"], quotas)


def _check_resilience_block(document: dict, plan: dict) -> None:
    """The `resilience` block: per domain, per model, what is left matches the stages."""
    kind = document["solver"].get("survive_spot_loss", "none")
    if kind == "none":
        return
    block = plan["resilience"]
    assert block["domain_kind"] == kind
    left = resilience_left(document, plan)
    assert math.isclose(block["fraction"], document["solver"].get("survive_fraction", 1.0))
    printed = {domain["domain"]: domain["models"] for domain in block["domains"]}
    assert set(printed) == {"/".join(domain) for domain in left}, (sorted(printed), left)
    demands = {m["name"]: m.get("demand_tokens_per_s", 0) for m in document["models"]}
    for domain, models in left.items():
        rows = {row["name"]: row for row in printed["/".join(domain)]}
        assert set(rows) == set(models), (domain, rows)
        for name, value in models.items():
            row = rows[name]
            assert math.isclose(row["tokens_per_s_left"], value, abs_tol=1e-6), (domain, row)
            assert math.isclose(row["demand_tokens_per_s"], demands[name]), (domain, row)
            required = block["fraction"] * demands[name]
            assert math.isclose(row["required_tokens_per_s"], required, abs_tol=1e-9), row


def _check_against_reference(document: dict, strategy: str, columns_on_demand: bool) -> None:
    reference = fleet_reference_optimum(document, strategy)
    scenario = scenario_from_dict(document)  # every model has a pool: never bad input
    plan = solve(scenario, strategy, columns_on_demand=columns_on_demand).to_json()
    if reference is None:
        assert plan["status"] == "infeasible", plan
        assert plan["replicas"] == []
        return
    assert plan["status"] == "optimal", (plan, reference)
    cost, tokens, useful = _check_figures(document, plan)
    got = fleet_objective(document, strategy, cost, tokens, useful)
    assert math.isclose(got, reference.objective, rel_tol=REL_TOL, abs_tol=1e-12), (
        f"{strategy}: solver {got!r} vs reference {reference.objective!r}; "
        f"reference plan {reference.to_json()}"
    )
    if strategy == "exact":  # the contract's tie order: lower cost, then fewer GPUs
        assert math.isclose(cost, reference.cost_per_hour, rel_tol=REL_TOL), (
            cost,
            reference.cost_per_hour,
        )
        assert plan["gpus"] == reference.gpus, (plan["gpus"], reference.gpus)


@MODES
@EXACT_FAMILY
def test_fleet_strategy_matches_reference(strategy: str, columns_on_demand: bool) -> None:
    """Fleets without resilience: shared availability, quotas, markets, useful caps."""

    @PROPERTY_SETTINGS
    @given(fleet_strategy_scenarios(strategy, resilience=False))
    def check(document: dict) -> None:
        _check_against_reference(document, strategy, columns_on_demand)

    check()


@MODES
@EXACT_FAMILY
def test_resilient_fleet_strategy_matches_reference(strategy: str, columns_on_demand: bool) -> None:
    """survive_spot_loss region or cloud, fractions below and at 1.0."""

    @PROPERTY_SETTINGS
    @given(fleet_strategy_scenarios(strategy, resilience=True))
    def check(document: dict) -> None:
        _check_against_reference(document, strategy, columns_on_demand)

    check()


@PROPERTY_SETTINGS
@given(fleet_strategy_scenarios("iterative", resilience=False))
def test_fleet_iterative_is_feasible_and_never_beats_exact(document: dict) -> None:
    _check_iterative(document)


@PROPERTY_SETTINGS
@given(fleet_strategy_scenarios("iterative", resilience=True))
def test_resilient_fleet_iterative_never_beats_exact(document: dict) -> None:
    _check_iterative(document)


def _check_iterative(document: dict) -> None:
    scenario = scenario_from_dict(document)  # every model has a pool: never bad input
    exact = solve(scenario, "exact").to_json()
    iterative = solve(scenario, "iterative").to_json()
    if exact["status"] == "infeasible":
        assert iterative["status"] == "infeasible", iterative
        return
    assert iterative["status"] == "feasible", iterative
    cost, _, useful = _check_figures(document, iterative)
    exact_ratio = exact["cost_per_hour"] / exact["useful_tokens_per_s"]
    assert cost / useful >= exact_ratio * (1 - 1e-9), (cost / useful, exact_ratio)
