"""Two runs race to publish: the second's report is made against what the channel shows when
it publishes, not against what it read before solving. Real solver, real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from flows.replan import _publish_model, _report
from solver import scenario_from_dict
from solver.diff import placement_of
from solver.strategies import solve
from tasks.inventory import load_inventory
from tasks.pipeline import PriceInputs
from tasks.pools import fleet_scenario
from tasks.prices import fetch_prices
from tasks.state import FLEET_MODEL as MODEL
from tasks.state import StateStore, publish_once
from tests.flows.conftest import INVENTORY, stamped_prices

CHANNEL = "report"  # no webhook: the report is the publication


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    inventory = load_inventory(INVENTORY)
    folder = tmp_path_factory.mktemp("prices")

    def scenario_of(prices_name: str) -> tuple[Any, dict[str, Any]]:
        table = fetch_prices("file", str(stamped_prices(prices_name, folder)))
        return table, fleet_scenario(table, inventory)[0]

    table, document = scenario_of("prices-baseline.csv")
    scenario = scenario_from_dict(document)
    plans = {s: solve(scenario, s).to_json() for s in ("exact", "iterative", "weighted")}
    # another night's exact plan (the V100 dearer): what a concurrent run may have posted
    _, moved = scenario_of("prices-above-threshold.csv")
    other = solve(scenario_from_dict(moved), "exact").to_json()
    prices = PriceInputs(table, "file", datetime.now(UTC) - timedelta(hours=1), "")
    return {"document": document, "plans": plans, "prices": prices, "other": other}


def run(store: StateStore, night: dict[str, Any], plans: dict[str, Any]) -> tuple[int, Any]:
    """A run's stored plans and its report builder (the flow's `_report`, as the flow binds it)."""
    run_id = store.start_run(f"inputs-{datetime.now(UTC).timestamp()}", "", {})
    plan_ids = store.record_plans(run_id, MODEL, plans)
    rebuild = partial(
        _report,
        night["document"],
        plans,
        frontier=[],
        prices=night["prices"],
        previous_prices=None,
        price_mode="both",
        threshold=0.02,
    )
    return plan_ids["exact"], rebuild


def store_at(tmp_path: Path) -> StateStore:
    store = StateStore.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")
    store.create_all()
    return store


def test_the_loser_of_a_race_does_not_report_publishing_what_the_winner_posted(
    tmp_path: Path, night: dict[str, Any]
) -> None:
    store = store_at(tmp_path)
    first_plan, _ = run(store, night, night["plans"])
    second_plan, second_rebuild = run(store, night, night["plans"])
    read_before = store.last_published(MODEL, CHANNEL)  # both runs read: nothing published
    report, comparison = second_rebuild(read_before)
    assert comparison.decision.kind == "initial" and "publish the first plan" in report.title

    assert publish_once(store, plan_id=first_plan, channel=CHANNEL, post=lambda _: None).posted
    reports = {MODEL: report}
    posted, decision = _publish_model(
        store, MODEL, second_plan, CHANNEL, reports, second_rebuild, read_before, None, 1, 0.0
    )
    assert not posted
    assert decision is not None and decision.kind == "unchanged" and not decision.publish
    title = reports[MODEL].title
    assert "publish" not in title and "first plan" not in title
    assert "keep the running plan" in title
    assert "First run" not in reports[MODEL].markdown


def test_a_run_posting_after_another_reports_against_the_other_runs_plan(
    tmp_path: Path, night: dict[str, Any]
) -> None:
    store = store_at(tmp_path)
    other = {**night["plans"], "exact": night["other"]}
    assert placement_of(other["exact"]) != placement_of(night["plans"]["exact"])
    first_plan, _ = run(store, night, other)
    second_plan, second_rebuild = run(store, night, night["plans"])
    reports = {MODEL: second_rebuild(None)[0]}

    assert publish_once(store, plan_id=first_plan, channel=CHANNEL, post=lambda _: None).posted
    posted, decision = _publish_model(
        store, MODEL, second_plan, CHANNEL, reports, second_rebuild, None, None, 1, 0.0
    )
    assert posted and decision is not None and decision.kind != "initial"
    assert "first plan" not in reports[MODEL].title
    assert "First run" not in reports[MODEL].markdown
    published = store.last_published(MODEL, CHANNEL)
    assert published is not None and published.plan_id == second_plan


def test_a_report_built_against_the_current_publication_stands(
    tmp_path: Path, night: dict[str, Any]
) -> None:
    store = store_at(tmp_path)
    plan_id, rebuild = run(store, night, night["plans"])
    report = rebuild(None)[0]
    reports = {MODEL: report}
    posted, decision = _publish_model(
        store, MODEL, plan_id, CHANNEL, reports, rebuild, None, None, 1, 0.0
    )
    assert posted and decision is None and reports[MODEL] is report
