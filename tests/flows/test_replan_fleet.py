"""The nightly flow on a fleet (issues 8 and 10) through Prefect's engine, a SQLite state file and
a loopback Slack webhook: one fleet plan a run on shared quotas, the price of resilience, one
Slack message per fleet change, and a store from before the fleet change read as the union of
its per-model plans."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.state import FLEET_MODEL, StateStore, publish_once
from tests.flows.conftest import FLOW_DATA, MODEL, V100_POOL, Deployment
from tests.flows.test_replan_flow import assert_block_kit, slack_text, store_of

pytestmark = pytest.mark.usefixtures("prefect_harness")

CHANNEL = "slack"
FLEET_INVENTORY = FLOW_DATA / "fleet-inventory.yaml"
EAST_V100_SPOT = "aws/us-east-1/V100/spot"
WEST_V100_SPOT = "aws/us-west-2/V100/spot"


def gpus_by_pool(plan: dict) -> dict[str, int]:
    used: dict[str, int] = {}
    for replica in plan["replicas"]:
        for stage in replica["stages"]:
            used[stage["pool"]] = used.get(stage["pool"], 0) + replica["count"] * stage["tp"]
    return used


def test_one_fleet_plan_shares_the_quotas_and_prices_its_resilience(
    deployment: Deployment,
) -> None:
    prices = deployment.prices("fleet-prices.csv")
    summary = deployment.run(prices, inventory=str(FLEET_INVENTORY))
    fleet = summary["fleet"]
    assert (fleet["decision"], fleet["posted"]) == ("initial", True)
    assert set(summary["models"]) == {"small", "big"}

    store = store_of(deployment)
    published = store.last_published(FLEET_MODEL, CHANNEL)
    assert published is not None and published.run_id == summary["run_id"]
    plan = published.plan
    # both models on the V100s, every quota of 4 V100 a region respected (spot + on-demand)
    used = gpus_by_pool(plan)
    for region in ("us-east-1", "us-west-2"):
        assert sum(n for p, n in used.items() if p.startswith(f"aws/{region}/V100/")) <= 4
    assert {r["model"] for r in plan["replicas"]} == {"small", "big"}
    for quota in plan["capacity"]["quotas"]:
        assert quota["used_gpus"] <= quota["max_gpus"]
    # the loss of either region's spot leaves each model its demand
    for domain in plan["resilience"]["domains"]:
        for model in domain["models"]:
            assert model["tokens_per_s_left"] >= model["required_tokens_per_s"]
    # the same fleet without the constraint is recorded, and cheaper: everything in us-east-1
    (unconstrained,) = [
        p for p in store.run_plans(summary["run_id"]) if p.strategy == "exact-without-resilience"
    ]
    assert set(gpus_by_pool(unconstrained.plan)) == {EAST_V100_SPOT}
    assert unconstrained.plan["cost_per_hour"] == pytest.approx(4.0)
    assert plan["cost_per_hour"] == pytest.approx(8.4)

    report = Path(summary["report"]).read_text()
    for section in ("## Fleet", "## Capacity", "## Price of resilience", "## Launch specs"):
        assert section in report
    assert "| fleet (total) | 2,500 |" in report
    # the quota both models share binds (Markdown escapes the label's `*`)
    assert r"quota aws/us-east-1/V100/\* (4 of 4 GPUs)" in report
    assert r"| difference |  | +\$4.40 | +110.0% |" in report
    assert "spot capacity costs +$4.40/h" in summary["fleet"]["resilience"]

    (post,) = deployment.posts()  # one message for the whole fleet
    assert_block_kit(post)
    text = slack_text(post)
    assert "Surviving the loss of any region's spot capacity costs +$4.40/h" in text
    assert "Launch 2 replicas of big on aws/us-east-1/V100/spot" in text
    assert f"{summary['export']['folder']}" in text

    again = deployment.run(prices, inventory=str(FLEET_INVENTORY))
    assert (again["fleet"]["decision"], again["fleet"]["posted"]) == ("unchanged", False)
    assert len(deployment.posts()) == 1


def pre_fleet_plan(pool: str, count: int) -> dict:
    """A plan as the flow published it before the fleet change: no model, no market."""
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
                "tokens_per_s": 1000.0,
                "cost_per_hour": 1.0,
                "stages": [{"pool": pool, "gpu": pool.split("/")[2], "tp": 1, "layers": 4}],
            }
        ],
    }


def publish_pre_fleet(deployment: Deployment, plan: dict) -> None:
    store = StateStore.from_url(deployment.state_url)
    store.create_all()
    run_id = store.start_run("pre-fleet", "", {"price_mode": "spot"})
    plan_id = store.record_plans(run_id, MODEL, {"exact": plan})["exact"]
    assert publish_once(store, plan_id=plan_id, channel=CHANNEL, post=lambda _: None).posted
    store.finish_run(run_id, "completed")


def test_the_first_fleet_run_compares_against_the_pre_fleet_plans(
    deployment: Deployment,
) -> None:
    publish_pre_fleet(deployment, pre_fleet_plan("aws/us-east-1/V100", 2))
    same = deployment.run(deployment.prices("prices-baseline.csv"))
    # the pre-fleet plan ran 2 x V100 on spot: tonight's fleet plan is that placement
    assert (same["fleet"]["decision"], same["fleet"]["posted"]) == ("unchanged", False)
    assert deployment.posts() == []
    assert store_of(deployment).last_published(FLEET_MODEL, CHANNEL) is None

    moved = deployment.run(deployment.prices("prices-above-threshold.csv"))
    assert (moved["fleet"]["decision"], moved["fleet"]["posted"]) == ("saving", True)
    (post,) = deployment.posts()
    text = slack_text(post)
    assert f"Drain 2 replicas of {MODEL} on {V100_POOL}: " in text
    published = store_of(deployment).last_published(FLEET_MODEL, CHANNEL)
    assert published is not None and published.run_id == moved["run_id"]
    readme = (Path(moved["export"]["folder"]) / "README.md").read_text()
    assert "2 to stop" in Path(moved["report"]).read_text() or "stop" in readme
