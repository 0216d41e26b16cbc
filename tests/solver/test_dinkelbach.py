"""Dinkelbach's step choice: a quick step that cannot find a better plan is skipped."""

from __future__ import annotations

import pytest

from solver.strategies import QUICK_REL_GAP, _quick_step_futile, _RatioBounds


class _Bounds(_RatioBounds):
    def __init__(self, demand_k: float) -> None:  # no scenario: only the demand floor is read
        self.best = 0.0
        self.max_tokens_k = 0.0
        self.demand_k = demand_k


# 237 pools, 80 layers, S = 8, 25 % demand: the second quick step (ratio 5.8751, its MILP bound
# -0.1767) moved the ratio to 5.8739; the third quick step found nothing better (measured)
MEASURED = dict(bound=-0.17669695773543104, ratio=5.875111555326492, next_ratio=5.87390800398823)
DEMAND_K = 36.20975
COST = 212.92


def test_the_measured_futile_step_is_skipped() -> None:
    floor = MEASURED["bound"] + (MEASURED["ratio"] - MEASURED["next_ratio"]) * DEMAND_K
    assert floor > -QUICK_REL_GAP * COST  # the floor the rule computes, by hand: -0.133 > -0.213
    assert _quick_step_futile(**MEASURED, bounds=_Bounds(DEMAND_K), cost=COST)


@pytest.mark.parametrize(
    "change",
    [
        {"bound": -0.5065},  # the LP's bound at that step: room for a quick improvement
        {"bound": None},
        {"bound": float("-inf")},
        {"next_ratio": 5.8752},  # the ratio went up (first step from below): no floor
    ],
)
def test_a_step_with_room_to_improve_is_kept(change: dict) -> None:
    assert not _quick_step_futile(**{**MEASURED, **change}, bounds=_Bounds(DEMAND_K), cost=COST)


def test_without_a_demand_floor_only_the_bound_counts() -> None:
    assert _quick_step_futile(**{**MEASURED, "bound": -0.1}, bounds=_Bounds(0.0), cost=COST)
    assert not _quick_step_futile(**{**MEASURED, "bound": -0.3}, bounds=_Bounds(0.0), cost=COST)
