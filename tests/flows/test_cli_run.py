"""`replan run` and `replan history` as an operator runs them (in-process, on the test server)."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

import pytest

from flows.cli import main
from tasks.state import FLEET_MODEL
from tests.flows.conftest import MODEL, SECRET, V100_POOL, Deployment
from tests.support.http_server import Reply

pytestmark = pytest.mark.usefixtures("prefect_harness")

SCREEN_LINES = 24


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def replan(*arguments: str) -> Outcome:
    """`replan <arguments>` in-process. Output is caught with redirect_* rather than capsys:
    Prefect's console log handler keeps the stream it first saw, and capsys closes its own at
    the end of each test."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(arguments))
    return Outcome(code, out.getvalue(), err.getvalue())


def test_run_prints_a_one_screen_summary_and_exits_0_changed_or_not(deployment: Deployment) -> None:
    arguments = deployment.cli_args(deployment.prices("prices-baseline.csv"))
    done = replan(*arguments)
    assert done.code == 0, done.err
    first = done.out
    lines = first.splitlines()
    assert len(lines) <= SCREEN_LINES
    assert lines[0].startswith("run ") and "completed" in lines[0] and "channel: slack" in lines[0]
    assert "2 rows from file" in lines[1]
    assert "fleet: optimal  2,000 tokens/s  $2.00/h" in first
    assert f"  {MODEL}: 2,000 tokens/s  $2.00/h  2 GPUs" in first and "2 GPUs" in first
    assert "posted: initial plan" in first
    assert "gap to exact: iterative +0.0%, weighted +0.0%" in first
    assert lines[-1].startswith("report: ") and lines[-1].endswith("report.md")
    assert V100_POOL in deployment.posts()[0].text()

    again = replan(*arguments)
    assert again.code == 0, again.err
    second = again.out
    assert "quiet: unchanged" in second and "posted" not in second
    assert len(deployment.posts()) == 1


def test_run_exits_2_on_invalid_prices_and_solves_nothing(deployment: Deployment) -> None:
    captured = replan(*deployment.cli_args(deployment.prices("prices-above-ceiling.csv")))
    assert captured.code == 2
    assert captured.out == ""
    assert "INVALID" in captured.err and "306" in captured.err
    assert "replan run: invalid data: nothing solved or published" in captured.err
    assert deployment.posts() == []


def test_run_exits_1_when_slack_refuses_and_does_not_print_the_webhook(
    deployment: Deployment,
) -> None:
    deployment.slack_answers(Reply.status_only(404))
    captured = replan(*deployment.cli_args(deployment.prices("prices-baseline.csv")))
    assert captured.code == 1
    assert "replan run: failed: SlackPermanentError: the Slack webhook answered 404" in captured.err
    assert SECRET not in captured.out + captured.err
    assert len(deployment.posts()) == 1


def test_run_exits_1_when_no_prices_can_be_had(deployment: Deployment) -> None:
    arguments = deployment.cli_args(deployment.root / "unused.csv")
    source = arguments.index("--source")
    # the price server answers 404 to everything (the fake Slack's server, on loopback)
    arguments[source + 1 : source + 4] = ["skypilot-catalog", "--from", deployment.slack.url]
    captured = replan(*arguments, "--fallback-max-age-hours", "0")
    assert captured.code == 1
    assert "replan run: failed: NoPrices: every price source failed" in captured.err
    assert "no saved prices are younger than 0 h: skypilot-catalog" in captured.err


def test_history_lists_recent_runs_and_publications(deployment: Deployment) -> None:
    baseline = deployment.prices("prices-baseline.csv")
    deployment.slack_answers(Reply.status_only(404))
    assert replan(*deployment.cli_args(baseline)).code == 1
    deployment.slack_answers(Reply.text("ok"))
    assert replan(*deployment.cli_args(baseline)).code == 0
    assert replan(*deployment.cli_args(deployment.prices("prices-negative.csv"))).code == 2

    history = replan("history", "--state", deployment.state_url)
    assert history.code == 0
    out = history.out
    runs_part, publications_part = out.split("\npublications:")
    run_rows = [line.split() for line in runs_part.splitlines()[3:] if line.strip()]
    assert [row[:2] for row in run_rows] == [["3", "invalid"], ["2", "completed"], ["1", "failed"]]
    assert "SlackPermanentError" in runs_part and SECRET not in out
    publication_rows = [line.split() for line in publications_part.splitlines()[3:] if line]
    assert [row[:5] for row in publication_rows] == [
        ["2", FLEET_MODEL, "slack", "published", "2"],
        ["1", FLEET_MODEL, "slack", "superseded", "1"],
    ]

    newest = replan("history", "--state", deployment.state_url, "--limit", "1")
    assert newest.code == 0 and "invalid" in newest.out and "completed" not in newest.out
