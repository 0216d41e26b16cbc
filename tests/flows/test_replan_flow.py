"""The nightly flow end to end: Prefect's engine (test server), a SQLite state file and a real
HTTP server standing in for the Slack webhook. Nothing is mocked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.pipeline import NoPrices
from tasks.slack import MAX_SECTION_CHARS, SlackPermanentError, SlackTransientError
from tasks.state import FLEET_MODEL, StateStore
from tasks.validation import ValidationFailed
from tests.flows.conftest import (
    MODEL,
    SECRET,
    T4_POOL,
    V100_POOL,
    Deployment,
    RecordingHandler,
)
from tests.support.http_server import RecordedRequest, Reply

pytestmark = pytest.mark.usefixtures("prefect_harness")

CHANNEL = "slack"


def store_of(deployment: Deployment) -> StateStore:
    return StateStore.from_url(deployment.state_url)


def exact_plan_hash(store: StateStore, run_id: int) -> str:
    (plan,) = [p for p in store.run_plans(run_id) if p.strategy == "exact"]
    return plan.plan_hash


def pools_used(store: StateStore, run_id: int) -> set[str]:
    (plan,) = [p for p in store.run_plans(run_id) if p.strategy == "exact"]
    return {stage["pool"] for replica in plan.plan["replicas"] for stage in replica["stages"]}


def slack_text(request: RecordedRequest) -> str:
    """Every mrkdwn/plain text of a posted Block Kit message, joined."""
    payload = request.json()
    texts = [payload["text"]]
    for block in payload["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts += [f["text"] for f in block.get("fields", [])]
        texts += [e["text"] for e in block.get("elements", [])]
    return "\n".join(texts)


def assert_block_kit(request: RecordedRequest) -> None:
    payload = request.json()
    assert isinstance(payload["text"], str) and payload["text"].strip()
    blocks = payload["blocks"]
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["type"] == "plain_text"
    sections = [b for b in blocks if b["type"] == "section"]
    assert sections, "a message without sections"
    for section in sections:
        texts = ([section["text"]] if "text" in section else []) + section.get("fields", [])
        assert texts and all(len(text["text"]) <= MAX_SECTION_CHARS for text in texts)


def newest_run_id(deployment: Deployment, status: str) -> int:
    """The id of the newest run, which must have ended with `status`."""
    newest = store_of(deployment).recent_runs(1)[0]
    assert newest.status == status, newest
    return newest.run_id


# -- publishing once ----------------------------------------------------------------------


def test_first_run_posts_once_and_an_identical_rerun_posts_nothing(
    deployment: Deployment,
) -> None:
    prices = deployment.prices("prices-baseline.csv")
    first = deployment.run(prices)
    result = first["fleet"]
    assert (first["status"], first["channel"]) == ("completed", CHANNEL)
    assert (result["decision"], result["posted"]) == ("initial", True)
    assert result["gpus"] == 2 and result["cost_per_hour"] == pytest.approx(2.0)

    (post,) = deployment.posts()
    assert_block_kit(post)
    assert V100_POOL in slack_text(post) and MODEL in slack_text(post)
    store = store_of(deployment)
    published = store.last_published(FLEET_MODEL, CHANNEL)
    assert published is not None and published.run_id == first["run_id"]
    assert published.plan_hash == exact_plan_hash(store, first["run_id"])
    assert Path(first["report"]).is_file()

    second = deployment.run(prices)
    assert second["run_id"] != first["run_id"] and second["status"] == "completed"
    assert (second["fleet"]["decision"], second["fleet"]["posted"]) == (
        "unchanged",
        False,
    )
    assert len(deployment.posts()) == 1
    assert store.last_published(FLEET_MODEL, CHANNEL) == published
    assert store.pending_publication(FLEET_MODEL, CHANNEL) is None
    assert Path(second["report"]).is_file() and second["report"] != first["report"]


def test_price_move_above_the_threshold_posts_a_diff_naming_the_moved_pools(
    deployment: Deployment,
) -> None:
    deployment.run(deployment.prices("prices-baseline.csv"))
    moved = deployment.run(deployment.prices("prices-above-threshold.csv"))
    result = moved["fleet"]
    assert (result["decision"], result["posted"]) == ("saving", True)
    assert "20.0%" in result["reason"]

    first_post, diff_post = deployment.posts()
    assert_block_kit(diff_post)
    text = slack_text(diff_post)
    assert (
        f"1. Launch 4 replicas of {MODEL} on {T4_POOL}: " in text
        and f"Drain 2 replicas of {MODEL} on {V100_POOL}: " in text
    )
    assert text.index("1. Launch") < text.index("Drain 2")  # launch before drain
    assert f"Price moves* {V100_POOL} +50.0%" in text
    assert T4_POOL not in slack_text(first_post)

    store = store_of(deployment)
    assert pools_used(store, moved["run_id"]) == {T4_POOL}
    published = store.last_published(FLEET_MODEL, CHANNEL)
    assert published is not None and published.run_id == moved["run_id"]


def test_price_move_below_the_threshold_posts_nothing(deployment: Deployment) -> None:
    first = deployment.run(deployment.prices("prices-baseline.csv"))
    moved = deployment.run(deployment.prices("prices-below-threshold.csv"))
    result = moved["fleet"]
    assert (result["decision"], result["publish"], result["posted"]) == (
        "below-threshold",
        False,
        False,
    )
    store = store_of(deployment)
    # tonight's exact plan did move (so only the threshold kept it back)
    assert pools_used(store, moved["run_id"]) == {T4_POOL}
    assert pools_used(store, first["run_id"]) == {V100_POOL}
    assert len(deployment.posts()) == 1
    published = store.last_published(FLEET_MODEL, CHANNEL)
    assert published is not None and published.run_id == first["run_id"]
    assert store.pending_publication(FLEET_MODEL, CHANNEL) is None


# -- Slack failures -----------------------------------------------------------------------


def test_slack_500_then_200_posts_once(deployment: Deployment) -> None:
    deployment.slack_answers(Reply.status_only(500), Reply.text("ok"))
    summary = deployment.run(deployment.prices("prices-baseline.csv"))
    assert summary["status"] == "completed" and summary["fleet"]["posted"] is True
    first_try, second_try = deployment.posts()
    assert first_try.body == second_try.body  # the same message, retried
    store = store_of(deployment)
    published = store.last_published(FLEET_MODEL, CHANNEL)
    assert published is not None and published.run_id == summary["run_id"]
    assert store.pending_publication(FLEET_MODEL, CHANNEL) is None
    (publication,) = store.recent_publications()
    assert publication.status == "published" and publication.error is None


def test_slack_always_500_fails_the_run_and_the_next_healthy_run_posts_once(
    deployment: Deployment,
) -> None:
    prices = deployment.prices("prices-baseline.csv")
    deployment.slack_answers(Reply.status_only(500))
    with pytest.raises(SlackTransientError, match="answered 500"):
        deployment.run(prices, slack_max_attempts=3)
    assert len(deployment.posts()) == 3
    store = store_of(deployment)
    failed = store.recent_runs(1)[0]
    assert failed.status == "failed" and failed.error is not None
    assert "SlackTransientError" in failed.error and "500" in failed.error
    pending = store.pending_publication(FLEET_MODEL, CHANNEL)
    assert pending is not None and pending.run_id == failed.run_id
    assert pending.error is not None and "500" in pending.error
    assert store.last_published(FLEET_MODEL, CHANNEL) is None
    (report_dir,) = deployment.reports_dir.glob(f"*-run{failed.run_id}")
    assert "Publish the first plan" in (report_dir / "report.md").read_text()

    deployment.slack_answers(Reply.text("ok"))
    healthy = deployment.run(prices)
    assert healthy["fleet"]["posted"] is True
    assert len(deployment.posts()) == 4
    assert store.pending_publication(FLEET_MODEL, CHANNEL) is None
    published = store.last_published(FLEET_MODEL, CHANNEL)
    assert published is not None and published.run_id == healthy["run_id"]
    assert published.plan_hash == pending.plan_hash
    statuses = {p.publication_id: p.status for p in store.recent_publications()}
    assert statuses == {pending.publication_id: "superseded", published.publication_id: "published"}

    again = deployment.run(prices)
    assert again["fleet"]["posted"] is False and len(deployment.posts()) == 4


def test_slack_404_is_a_permanent_failure_reported_without_retrying(
    deployment: Deployment,
) -> None:
    deployment.slack_answers(Reply.status_only(404))
    with pytest.raises(SlackPermanentError, match="answered 404"):
        deployment.run(deployment.prices("prices-baseline.csv"), slack_max_attempts=3)
    assert len(deployment.posts()) == 1
    store = store_of(deployment)
    failed = store.recent_runs(1)[0]
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.startswith("SlackPermanentError")
    pending = store.pending_publication(FLEET_MODEL, CHANNEL)
    assert pending is not None and pending.error is not None and "404" in pending.error
    assert store.last_published(FLEET_MODEL, CHANNEL) is None


# -- bad data -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prices_file", "named"),
    [
        ("prices-negative.csv", "column price_per_hour has negative prices"),  # the reader
        ("prices-above-ceiling.csv", "306"),  # Great Expectations
    ],
)
def test_invalid_prices_solve_and_post_nothing_and_keep_the_previous_plan(
    deployment: Deployment, prices_file: str, named: str
) -> None:
    good = deployment.run(deployment.prices("prices-baseline.csv"))
    store = store_of(deployment)
    saved_before = store.last_good_prices(timedelta(days=1))
    assert saved_before is not None

    with pytest.raises(ValidationFailed) as raised:
        deployment.run(deployment.prices(prices_file))
    assert named in str(raised.value)
    run_id = newest_run_id(deployment, "invalid")
    invalid = store.get_run(run_id)
    assert invalid.error is not None and "INVALID" in invalid.error and named in invalid.error
    assert store.run_plans(run_id) == []
    assert len(deployment.posts()) == 1
    published = store.last_published(FLEET_MODEL, CHANNEL)
    assert published is not None and published.run_id == good["run_id"]
    saved_after = store.last_good_prices(timedelta(days=1))
    assert saved_after is not None and saved_after.prices_hash == saved_before.prices_hash
    assert len(list(deployment.reports_dir.iterdir())) == 1  # only the good run's report


# -- a run stopped half-way ---------------------------------------------------------------


def test_a_run_interrupted_while_posting_leaves_the_store_consistent(
    deployment: Deployment,
) -> None:
    """Ctrl-C (a real SIGINT to the thread running the flow) arrives while Slack is being
    posted to, after the plans were solved and recorded."""
    first = deployment.run(deployment.prices("prices-baseline.csv"))
    flow_thread = threading.get_ident()

    def interrupt(_request: RecordedRequest) -> Reply:
        signal.pthread_kill(flow_thread, signal.SIGINT)
        return Reply.status_only(503)

    deployment.slack_answers(interrupt)
    moved_prices = deployment.prices("prices-above-threshold.csv")
    with pytest.raises(KeyboardInterrupt):
        deployment.run(moved_prices)
    store = store_of(deployment)
    killed = store.recent_runs(1)[0]
    assert killed.status == "failed" and killed.error is not None
    assert killed.error.startswith("KeyboardInterrupt")
    assert {p.strategy for p in store.run_plans(killed.run_id)} == {
        "exact",
        "iterative",
        "weighted",
    }
    pending = store.pending_publication(FLEET_MODEL, CHANNEL)
    assert pending is not None and pending.run_id == killed.run_id
    published = store.last_published(FLEET_MODEL, CHANNEL)
    assert published is not None and published.run_id == first["run_id"]
    assert len(deployment.posts()) == 2

    deployment.slack_answers(Reply.text("ok"))
    healthy = deployment.run(moved_prices)
    assert healthy["fleet"]["posted"] is True
    assert len(deployment.posts()) == 3
    assert T4_POOL in slack_text(deployment.posts()[-1])
    published = store.last_published(FLEET_MODEL, CHANNEL)
    assert published is not None and published.run_id == healthy["run_id"]
    assert published.plan_hash == pending.plan_hash
    assert store.pending_publication(FLEET_MODEL, CHANNEL) is None


def test_a_run_killed_while_posting_leaves_the_store_consistent(deployment: Deployment) -> None:
    """SIGKILL to a `replan run` process while Slack holds its post: nothing half-written."""
    from prefect.settings import PREFECT_API_URL

    first = deployment.run(deployment.prices("prices-baseline.csv"))
    deployment.slack_answers(Reply.text("ok", delay_s=60))  # Slack hangs on the post
    moved_prices = deployment.prices("prices-above-threshold.csv")
    environment = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *deployment.cli_args(moved_prices)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(deployment.posts()) < 2 and process.poll() is None:
            assert time.monotonic() < deadline, "the run never reached Slack"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait(timeout=10)
    assert len(deployment.posts()) == 2, "the process ended before it posted"

    store = store_of(deployment)
    killed = store.recent_runs(1)[0]
    assert killed.run_id != first["run_id"]
    assert killed.status == "running" and killed.finished_at is None  # nobody left to say
    assert {p.strategy for p in store.run_plans(killed.run_id)} == {
        "exact",
        "iterative",
        "weighted",
    }
    # the decision lived in the publish lock's transaction, which died with the process
    assert store.pending_publication(FLEET_MODEL, CHANNEL) is None
    published = store.last_published(FLEET_MODEL, CHANNEL)
    assert published is not None and published.run_id == first["run_id"]

    deployment.slack_answers(Reply.text("ok"))
    healthy = deployment.run(moved_prices)  # would wait for the lock if it had survived
    assert healthy["fleet"]["posted"] is True
    assert len(deployment.posts()) == 3
    published = store.last_published(FLEET_MODEL, CHANNEL)
    assert published is not None and published.run_id == healthy["run_id"]
    assert published.plan_hash == exact_plan_hash(store, killed.run_id)


# -- price fallback -----------------------------------------------------------------------


def test_every_source_failing_falls_back_to_young_saved_prices(deployment: Deployment) -> None:
    deployment.run(deployment.prices("prices-baseline.csv"))
    missing = deployment.root / "no-such-prices.csv"
    summary = deployment.run(missing, fallback_max_age_hours=48)
    assert summary["status"] == "completed"
    assert summary["prices"]["source"] == "state-store"
    note = summary["prices"]["fallback"]
    assert "using the last good prices, 1.0 h old" in note
    assert summary["fleet"]["decision"] == "unchanged"
    assert note in Path(summary["report"]).read_text()
    assert len(deployment.posts()) == 1


def test_every_source_failing_with_only_old_saved_prices_fails(deployment: Deployment) -> None:
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    deployment.run(deployment.prices("prices-baseline.csv", fetched_at=three_days_ago))
    with pytest.raises(NoPrices, match="no saved prices are younger than 48 h: file: no such file"):
        deployment.run(deployment.root / "no-such-prices.csv", fallback_max_age_hours=48)
    run_id = newest_run_id(deployment, "failed")
    assert store_of(deployment).run_plans(run_id) == []
    assert len(deployment.posts()) == 1


# -- the secret ---------------------------------------------------------------------------


def _api_texts() -> list[str]:
    """Every log line, flow run and task run the Prefect server holds, as text."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    texts: list[str] = []
    with get_client(sync_client=True) as client:
        page = 200
        while batch := client.read_logs(limit=page, offset=len(texts)):
            texts += [log.message for log in batch]
        texts += [run.model_dump_json() for run in client.read_flow_runs(limit=200)]
        texts += [run.model_dump_json() for run in client.read_task_runs(limit=200)]
    return texts


def test_the_webhook_url_appears_in_no_log_report_error_or_exception(
    deployment: Deployment, all_logs: RecordingHandler
) -> None:
    prices = deployment.prices("prices-baseline.csv")
    texts: list[str] = []
    deployment.slack_answers(Reply.status_only(500))
    with pytest.raises(SlackTransientError) as transient:
        deployment.run(prices, slack_max_attempts=2)
    deployment.slack_answers(Reply.status_only(404))
    with pytest.raises(SlackPermanentError) as permanent:
        deployment.run(prices)
    deployment.slack_answers(Reply.status_only(500), Reply.text("ok"))
    summary = deployment.run(prices)
    assert summary["fleet"]["posted"] is True
    for raised in (transient, permanent):
        texts += [str(raised.value), repr(raised.value)]
        texts += traceback.format_exception(raised.value)
    texts.append(json.dumps(summary, default=str))

    store = store_of(deployment)
    texts += [run.error or "" for run in store.recent_runs()]
    texts += [json.dumps(run.parameters) for run in store.recent_runs()]
    texts += [p.error or "" for p in store.recent_publications()]
    run_dirs = sorted(deployment.reports_dir.iterdir())
    assert len(run_dirs) == 3  # every run that solved wrote its report, failed posts too
    report_files = [p for p in deployment.reports_dir.rglob("*") if p.is_file()]
    # the report, its chart and the export beside it (YAML, plan.json, README, its marker)
    assert {p.suffix for p in report_files} == {".md", ".html", ".png", ".yaml", ".json", ""}
    texts += [p.read_bytes().decode("utf-8", "replace") for p in report_files]
    api_texts = _api_texts()
    texts += api_texts
    texts += all_logs.lines

    # the capture did see the posts and the failures, so the check below is not vacuous
    assert len(deployment.posts()) == 5
    assert any("answered 500" in line for line in api_texts)
    assert any("urllib3" in line and '"POST ' in line for line in all_logs.lines)
    assert any("Slack accepted the message" in line for line in all_logs.lines)
    leaks = [text for text in texts if SECRET in text]
    assert leaks == []
