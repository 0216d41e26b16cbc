"""Fleet plans in the state: placement hash and diff keyed on model and market, pre-fleet plans
still hash and read as before, and the published fleet of a pre-fleet store is their union."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from solver.diff import decide, diff_plans
from tasks.report import build_report
from tasks.state import (
    FLEET_MODEL,
    StateStore,
    plan_hash,
    publish_once,
    published_fleet,
)
from tasks.state.diff import fleet_decide, fleet_diff_plans

CHANNEL = "slack"
V100 = "aws/us-east-1/V100"
# what `plan_hash` gave this pre-fleet plan before the fleet change (main at 3d92eb0)
PRE_FLEET_HASH = "95e53033f22f6e52e01401685a2f9b3ac1e4bfcf57fe92380844584cf15e2858"


def pre_fleet_plan(count: int = 2, pool: str = V100, layers: int = 4) -> dict[str, Any]:
    return {
        "strategy": "exact",
        "status": "optimal",
        "tokens_per_s": 1000.0 * count,
        "cost_per_hour": 1.0 * count,
        "cost_per_token": 1.0 / 3_600_000,
        "gpus": count,
        "replicas": [
            {
                "count": count,
                "cloud": "aws",
                "region": "us-east-1",
                "tokens_per_s": 1.0,
                "cost_per_hour": 1.0,
                "stages": [{"pool": pool, "gpu": pool.split("/")[2], "tp": 1, "layers": layers}],
            }
        ],
    }


def fleet_plan(*groups: tuple[str, str, int]) -> dict[str, Any]:
    """(model, market, count) groups on V100 in aws/us-east-1, 1,000 tokens/s at $1/h each."""
    replicas = [
        {
            "count": count,
            "model": model,
            "cloud": "aws",
            "region": "us-east-1",
            "tokens_per_s": 1000.0,
            "cost_per_hour": 1.0,
            "stages": [
                {"pool": f"{V100}/{market}", "gpu": "V100", "tp": 1, "layers": 4, "market": market}
            ],
        }
        for model, market, count in groups
    ]
    count = sum(c for _, _, c in groups)
    return {
        "strategy": "exact",
        "status": "optimal",
        "tokens_per_s": 1000.0 * count,
        "useful_tokens_per_s": 1000.0 * count,
        "cost_per_hour": 1.0 * count,
        "cost_per_token": 1.0 / 3_600_000,
        "gpus": count,
        "replicas": replicas,
    }


def test_a_pre_fleet_plan_hashes_as_it_did_before_the_fleet_change() -> None:
    assert plan_hash(pre_fleet_plan()) == PRE_FLEET_HASH


def test_the_hash_keys_on_model_and_market() -> None:
    plan = fleet_plan(("a", "spot", 2), ("b", "on-demand", 1))
    other_model = copy.deepcopy(plan)
    other_model["replicas"][0]["model"] = "b"
    other_market = copy.deepcopy(plan)
    other_market["replicas"][0]["stages"][0]["market"] = "on-demand"
    regrouped = fleet_plan(("b", "on-demand", 1), ("a", "spot", 1), ("a", "spot", 1))
    assert plan_hash(regrouped) == plan_hash(plan)
    assert len({plan_hash(plan), plan_hash(other_model), plan_hash(other_market)}) == 3


def test_the_diff_names_the_model_and_sees_a_model_swap() -> None:
    before = fleet_plan(("a", "spot", 2))
    after = fleet_plan(("b", "spot", 2))
    # without the model, both plans place the same GPUs the same way
    assert not diff_plans(before, after).changed
    assert decide(before, (), after).kind == "unchanged"
    diff = fleet_diff_plans(before, after)
    assert diff.changed
    ((added,), (removed,)) = diff.added, diff.removed
    assert (added.model, added.count, removed.model) == ("b", 2, "a")
    assert added.describe() == f"b: {V100}/spot tp1 4L" and added.markets == ("spot",)
    assert diff.gpus_by_type_before == diff.gpus_by_type_after == {"V100": 2}
    assert fleet_decide(before, (), after, 0.02).kind == "below-threshold"
    assert fleet_decide(before, (), copy.deepcopy(before), 0.02).kind == "unchanged"


def test_a_pre_fleet_diff_is_unchanged_by_the_fleet_keys() -> None:
    before, after = pre_fleet_plan(2), pre_fleet_plan(3)
    fleet, plain = fleet_diff_plans(before, after), diff_plans(before, after)
    assert [(c.count, c.stages) for c in fleet.added] == [(c.count, c.stages) for c in plain.added]
    assert fleet.gpus_by_pool_after == plain.gpus_by_pool_after == {V100: 3}


def test_report_steps_name_the_model_of_each_replica() -> None:
    before = fleet_plan(("a", "spot", 2))
    after = fleet_plan(("a", "spot", 1), ("b", "on-demand", 1))
    report = build_report(
        "fleet",
        {"exact": after},
        before,
        fleet_diff_plans(before, after),
        decide(None, (), after),
        [],
        None,
        {},
        2000.0,
    )
    assert f"Launch 1 replica of b on {V100}/on-demand: 1 GPU (TP 1), 4 layers" in report.markdown
    assert f"Drain 1 replica of a on {V100}/spot: 1 GPU (TP 1), 4 layers" in report.markdown


def publish(store: StateStore, run_id: int, model: str, plan: dict[str, Any]) -> None:
    plan_id = store.record_plans(run_id, model, {"exact": plan})["exact"]
    assert publish_once(store, plan_id=plan_id, channel=CHANNEL, post=lambda _: None).posted


def test_the_published_fleet_of_a_pre_fleet_store_is_the_union_then_the_fleet_plan(
    tmp_path: Path,
) -> None:
    store = StateStore.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    store.create_all()
    assert published_fleet(store, CHANNEL) is None
    spot_run = store.start_run("h1", "", {"price_mode": "spot"})
    publish(store, spot_run, "small", pre_fleet_plan(2))
    cheapest_run = store.start_run("h2", "", {"price_mode": "cheapest"})
    publish(store, cheapest_run, "large", pre_fleet_plan(4, "aws/us-east-1/A100", 8))
    publish(store, cheapest_run, "small", pre_fleet_plan(3))  # newer than run 1's

    union = published_fleet(store, CHANNEL)
    assert union is not None and union.model == FLEET_MODEL and union.run_id == cheapest_run
    by_model = {(r["model"], r["count"]): r for r in union.plan["replicas"]}
    assert set(by_model) == {("large", 4), ("small", 3)}
    # the spot run's market is known; a `cheapest` run mixed markets, so none is assumed
    assert "market" not in by_model[("small", 3)]["stages"][0]
    assert union.plan["gpus"] == 7 and union.plan["cost_per_hour"] == 7.0
    assert union.plan_hash == plan_hash(union.plan)
    assert store.last_published("small", CHANNEL).plan["replicas"][0]["count"] == 3

    fleet_run = store.start_run("h3", "", {"price_mode": "both"})
    fleet = fleet_plan(("small", "spot", 2), ("large", "on-demand", 1))
    publish(store, fleet_run, FLEET_MODEL, fleet)
    published = published_fleet(store, CHANNEL)
    assert published is not None and published.run_id == fleet_run
    assert published.plan == fleet and published.plan_hash == plan_hash(fleet)
    assert published_fleet(store, "another channel") is None


def test_a_spot_run_gives_its_pre_fleet_stages_the_spot_market(tmp_path: Path) -> None:
    store = StateStore.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    store.create_all()
    run = store.start_run("h", "", {"price_mode": "spot"})
    publish(store, run, "small", pre_fleet_plan(2))
    union = published_fleet(store, CHANNEL)
    assert union is not None
    (replica,) = union.plan["replicas"]
    assert replica["model"] == "small" and replica["stages"][0]["market"] == "spot"
