"""The best layer split's rate is the contract's rate of its slowest stage, exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from solver import scenario_from_dict
from solver.replicas import best_split, stage_types
from tests.solver.strategies import small_scenarios
from tests.solver.test_properties import PROPERTY_SETTINGS


@PROPERTY_SETTINGS
@given(small_scenarios(draw_demand=False, draw_budget=False), st.data())
def test_split_rate_is_the_minimum_over_every_stage(document: dict, data: st.DataObject) -> None:
    """best_split rates only the stages near the bottleneck: the same float as rating all."""
    scenario = scenario_from_dict(document)
    types = stage_types(scenario)
    if not types:
        return
    chosen = data.draw(st.lists(st.sampled_from(types), min_size=1, max_size=6))
    split = best_split(scenario, chosen)
    if split is None:
        return
    layers, rate = split
    assert sum(layers) == scenario.model.num_layers
    every_stage = min(
        scenario.stage_tokens_per_s(t.pool, t.tp, n) for t, n in zip(chosen, layers, strict=True)
    )
    assert rate == every_stage  # bit for bit
