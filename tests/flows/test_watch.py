"""The price comparison of `watch-prices`: which moves matter to a published plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.watch import (
    EVENT_NAME,
    PoolPrice,
    detect_price_changes,
    model_plan,
    not_yet_planned,
    plan_pool_ids,
    pool_prices,
    price_change_events,
    relative_change,
)
from tasks.inventory import load_inventory
from tasks.prices import fetch_prices

OPS = Path(__file__).resolve().parents[1] / "data" / "ops"
USED = "aws/us-west-2/T4"
OTHER = "aws/us-east-1/V100"
PLAN_COST_PER_TOKEN = 0.19 / (500 * 3600)  # one T4 in us-west-2 at 0.19 $/h, 500 tokens/s

BASELINE = {
    USED: PoolPrice(0.19, 500.0),
    OTHER: PoolPrice(0.918, 1000.0),
    "aws/us-east-1/T4": PoolPrice(0.21, 500.0),
}


def changes(current: dict[str, PoolPrice], threshold: float = 0.05):
    return detect_price_changes("tiny", BASELINE, current, {USED}, PLAN_COST_PER_TOKEN, threshold)


def test_relative_change() -> None:
    assert relative_change(2.0, 3.0) == pytest.approx(0.5)
    assert relative_change(None, 3.0) is None
    assert relative_change(0.0, 1.0) is None


def test_no_move_no_change() -> None:
    assert changes(dict(BASELINE)) == []


def test_small_move_of_a_used_pool_is_below_the_threshold() -> None:
    assert changes({**BASELINE, USED: PoolPrice(0.195, 500.0)}) == []  # +2.6 %


def test_used_pool_moving_up_or_down_matters() -> None:
    for new_price in (0.30, 0.10):
        [change] = changes({**BASELINE, USED: PoolPrice(new_price, 500.0)})
        assert (change.pool, change.reason) == (USED, "in-plan")
        assert change.old_price_per_gpu_hour == 0.19
        assert change.new_price_per_gpu_hour == new_price


def test_used_pool_gone_matters() -> None:
    current = {k: v for k, v in BASELINE.items() if k != USED}
    [change] = changes(current)
    assert (change.reason, change.new_price_per_gpu_hour) == ("gone", None)


def test_unused_pool_that_would_beat_the_plan_matters() -> None:
    # V100 at 0.30 $/h and 1000 tokens/s: 0.30/1000 < 0.19/500 per token
    [change] = changes({**BASELINE, OTHER: PoolPrice(0.30, 1000.0)})
    assert (change.pool, change.reason) == (OTHER, "would-beat")
    assert change.relative_change == pytest.approx(0.30 / 0.918 - 1)


def test_unused_pool_that_moved_but_still_loses_does_not_matter() -> None:
    assert changes({**BASELINE, OTHER: PoolPrice(0.50, 1000.0)}) == []  # 0.5/1000 > 0.19/500


def test_unused_pool_already_cheaper_but_unmoved_does_not_matter() -> None:
    # cheaper per token at both prices, but the plan did not take it: only a move re-plans
    baseline = {**BASELINE, OTHER: PoolPrice(0.10, 1000.0)}
    current = dict(baseline)
    assert detect_price_changes("tiny", baseline, current, {USED}, PLAN_COST_PER_TOKEN, 0.05) == []


def test_new_pool_that_would_beat_the_plan_matters() -> None:
    new_pool = "aws/us-east-2/V100"
    [change] = changes({**BASELINE, new_pool: PoolPrice(0.2, 1000.0)})
    assert (change.pool, change.reason, change.old_price_per_gpu_hour) == (
        new_pool,
        "would-beat",
        None,
    )


def test_already_planned_moves_are_dropped() -> None:
    current = {**BASELINE, USED: PoolPrice(0.30, 500.0)}
    found = changes(current)
    assert not_yet_planned(found, current, current, 0.05) == []  # last run saw 0.30
    assert not_yet_planned(found, BASELINE, current, 0.05) == found  # last run saw 0.19
    assert not_yet_planned(found, None, current, 0.05) == found  # no run yet


def test_plan_pool_ids() -> None:
    plan = {
        "replicas": [
            {"count": 1, "stages": [{"pool": USED}, {"pool": OTHER}]},
            {"count": 0, "stages": [{"pool": "aws/us-east-1/T4"}]},
        ]
    }
    assert plan_pool_ids(plan) == {USED, OTHER}
    assert plan_pool_ids({"replicas": []}) == set()


def test_one_event_a_pool_with_old_and_new_price() -> None:
    found = detect_price_changes(
        "tiny", BASELINE, {**BASELINE, USED: PoolPrice(0.3, 500.0)}, {USED}, None, 0.05
    ) + detect_price_changes(
        "small", BASELINE, {**BASELINE, USED: PoolPrice(0.3, 300.0)}, {USED}, None, 0.05
    )
    [event] = price_change_events(found, "spot")
    assert event["event"] == EVENT_NAME
    assert event["resource"]["prefect.resource.id"] == f"replan.pool.{USED}"
    assert event["resource"]["replan.gpu"] == "T4"
    assert event["payload"]["old_price_per_gpu_hour"] == 0.19
    assert event["payload"]["new_price_per_gpu_hour"] == 0.3
    assert event["payload"]["models"] == {"tiny": "in-plan", "small": "in-plan"}


def test_pool_prices_from_a_price_table() -> None:
    table = fetch_prices("file", str(OPS / "prices.csv"), progress=lambda _m: None)
    prices = pool_prices(table, load_inventory(OPS / "inventory.yaml"), "tiny", "spot")
    assert prices[USED] == PoolPrice(0.19, 500.0)
    assert prices[OTHER] == PoolPrice(0.918, 1000.0)
    assert prices[USED].cost_per_token == pytest.approx(PLAN_COST_PER_TOKEN)


def test_a_models_part_of_a_fleet_plan_on_the_watched_market() -> None:
    def replica(model: str, pool: str) -> dict:
        return {"count": 1, "model": model, "stages": [{"pool": pool}]}

    fleet = {
        "replicas": [
            replica("tiny", f"{USED}/spot"),
            replica("tiny", f"{OTHER}/on-demand"),
            replica("small", f"{OTHER}/spot"),
        ],
        "models": [{"name": "tiny", "cost_per_token": 1e-7}, {"name": "small"}],
    }
    tiny = model_plan(fleet, "tiny", "spot")
    assert tiny is not None and plan_pool_ids(tiny) == {USED}
    assert tiny["cost_per_token"] == 1e-7
    assert plan_pool_ids(model_plan(fleet, "tiny", "on-demand") or {}) == {OTHER}
    assert model_plan(fleet, "big", "spot") is None
    pre_fleet = {"replicas": [{"count": 2, "stages": [{"pool": USED}]}], "cost_per_token": 2e-7}
    assert model_plan(pre_fleet, "tiny", "spot") == {
        "replicas": pre_fleet["replicas"],
        "cost_per_token": 2e-7,
    }
