"""The pricing search by bottleneck rate against brute force over every multiset of stages."""

from __future__ import annotations

import itertools
import math
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solver import lazy, scenario_from_dict
from solver.pricing_dp import best_fleet_configs, least_multiset
from solver.replicas import (
    PricingBound,
    SearchBudget,
    best_split,
    enumerate_configs,
    location_groups,
    stage_types,
)
from solver.scenario import Scenario
from tests.solver.strategies import small_scenarios, strategy_scenarios
from tests.solver.test_properties import PROPERTY_SETTINGS, _check_against_reference

TOL = 1e-9


def _all_reduced_costs(scenario: Scenario, types: list, bound: PricingBound) -> list[float]:
    """Reduced cost of every feasible multiset of stage types of one location (no prune)."""
    layers_total = scenario.model.num_layers
    max_stages = min(scenario.solver.max_stages, layers_total)
    costs = []
    for size in range(1, max_stages + 1):
        for combo in itertools.combinations_with_replacement(types, size):
            used: dict[int, int] = {}
            for t in combo:
                used[t.pool_index] = used.get(t.pool_index, 0) + t.tp
            if any(g > scenario.pools[p].available for p, g in used.items()):
                continue
            split = best_split(scenario, list(combo))
            if split is None:
                continue
            values = sum(bound.stage_values[(t.pool_index, t.tp)] for t in combo)
            costs.append(values - bound.tokens_gain * split[1] + bound.constant)
    return costs


@st.composite
def _priced(draw: st.DrawFn) -> tuple[dict, dict, float, float, float]:
    document = draw(small_scenarios(draw_demand=False, draw_budget=False))
    document["solver"]["max_stages"] = draw(st.integers(1, 5))
    values = draw(st.lists(st.integers(0, 40), min_size=64, max_size=64))
    gain = draw(st.integers(1, 50)) * 1e-4
    constant = -draw(st.integers(0, 30)) * 0.1
    threshold = draw(st.integers(-30, 10)) * 0.1 + 0.0123  # off the values' grid: no ties
    return document, {"values": values}, gain, constant, threshold


def _bound(
    scenario: Scenario, drawn: dict, gain: float, constant: float, threshold: float, per_gpu: bool
) -> PricingBound:
    """Stage values drawn per (pool, tp), or per GPU of a pool as pricing makes them."""
    values = {
        (t.pool_index, t.tp): (
            0.1 * t.tp * drawn["values"][t.pool_index % 64]
            if per_gpu
            else 0.1 * drawn["values"][(t.pool_index * 4 + t.tp.bit_length()) % 64]
        )
        for t in stage_types(scenario)
    }
    return PricingBound(values, gain, constant, threshold)


@PROPERTY_SETTINGS
@given(_priced())
def test_least_multiset_is_the_least_reduced_cost_of_any_multiset(case) -> None:
    document, drawn, gain, constant, threshold = case
    scenario = scenario_from_dict(document)
    bound = _bound(scenario, drawn, gain, constant, threshold, per_gpu=False)
    for _, _, types in location_groups(scenario):
        costs = _all_reduced_costs(scenario, types, bound)
        least = least_multiset(scenario, types, bound, math.inf)
        if not costs:
            assert least is None
            continue
        assert least is not None
        value, chosen = least
        assert math.isclose(value, min(costs), rel_tol=TOL, abs_tol=TOL)
        split = best_split(scenario, [types[i] for i in chosen])
        assert split is not None
        found = sum(bound.stage_values[(types[i].pool_index, types[i].tp)] for i in chosen)
        assert found - gain * split[1] + constant <= value + TOL


@PROPERTY_SETTINGS
@given(_priced())
def test_best_fleet_configs_finds_a_listed_column_below_the_threshold_iff_one_exists(
    case,
) -> None:
    document, drawn, gain, constant, threshold = case
    scenario = scenario_from_dict(document)
    bound = _bound(scenario, drawn, gain, constant, threshold, per_gpu=True)
    listed = enumerate_configs(scenario)
    keys = {(c.cloud, c.region, c.gpus_by_pool, c.tokens_per_s) for c in listed}
    below = [c for c in listed if bound.reduced_cost(c) <= threshold]
    found = best_fleet_configs(scenario, [bound], SearchBudget(None), 3)
    assert bool(found) == bool(below)
    for config in found:
        assert (config.cloud, config.region, config.gpus_by_pool, config.tokens_per_s) in keys
        assert bound.reduced_cost(config) <= threshold
    if below:
        best = min(bound.reduced_cost(c) for c in below)
        by_location = {(c.cloud, c.region) for c in below if bound.reduced_cost(c) <= best + TOL}
        assert by_location & {(c.cloud, c.region) for c in found}


@pytest.mark.parametrize("strategy", ["exact", "min-cost", "max-throughput", "weighted"])
def test_columns_priced_by_rate_match_the_exhaustive_reference(strategy: str) -> None:
    """Column generation seeking the best columns (as beyond BEST_PRICING_MULTISETS)."""

    @PROPERTY_SETTINGS
    @given(strategy_scenarios(strategy))
    def check(document: dict) -> None:
        with patch.object(lazy, "BEST_PRICING_MULTISETS", -1):
            _check_against_reference(document, strategy, columns_on_demand=True)

    check()
