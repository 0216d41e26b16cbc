"""Shared parts of the flow tests: one Prefect test server, fixture files, a fake Slack.

`prefect_test_harness()` starts a Prefect server in a subprocess (~11 s), so it is started
once per session (`prefect_harness`) and only by the modules that run the flow.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.http_server import LoopbackServer, RecordedRequest, Reply

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

FLOW_DATA = Path(__file__).resolve().parents[1] / "data" / "flow"
INVENTORY = FLOW_DATA / "inventory.yaml"
MODEL = "tiny"
V100_POOL = "aws/us-east-1/V100/spot"  # fleet pools name their market
T4_POOL = "aws/us-east-1/T4/spot"
WEBHOOK_PATH = "/services/T000/B000/SECRETxyz"
SECRET = "SECRETxyz"  # the part of the webhook that must never be printed


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server (and database) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


def stamped_prices(name: str, directory: Path, fetched_at: datetime | None = None) -> Path:
    """A copy of `tests/data/flow/<name>` in `directory` with every `fetched_at` set (default:
    one hour ago), so freshness checks see the age the test wants."""
    when = fetched_at or datetime.now(UTC) - timedelta(hours=1)
    rows = list(csv.DictReader(io.StringIO((FLOW_DATA / name).read_text())))
    for row in rows:
        row["fetched_at"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    target = directory / f"{when:%Y%m%dT%H%M%S}-{name}"
    target.write_text(out.getvalue())
    return target


class RecordingHandler(logging.Handler):
    """Keeps every formatted record, whatever its logger (attached to root and `prefect`)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()}")
        if record.exc_info and record.exc_info[1] is not None:
            self.lines.append(f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}")


@dataclass
class Deployment:
    """One test's installation: a state file, a reports folder and a fake Slack webhook."""

    root: Path
    slack: LoopbackServer
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def state_url(self) -> str:
        return f"sqlite:///{self.root / 'state.sqlite'}"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def prices(self, name: str, fetched_at: datetime | None = None) -> Path:
        return stamped_prices(name, self.root, fetched_at)

    def slack_answers(self, *replies: Reply) -> None:
        """Program the webhook's answers from now on (the last one repeats)."""
        self.slack.route(WEBHOOK_PATH, *replies, method="POST")

    def posts(self) -> list[RecordedRequest]:
        """Every POST the webhook received, delivered or not."""
        return self.slack.requests_to(WEBHOOK_PATH, method="POST")

    def run(self, prices: Path | str, **options: Any) -> dict[str, Any]:
        """`nightly_replan` on these prices (a `file` source) with the test's settings."""
        from flows.replan import nightly_replan

        arguments: dict[str, Any] = {
            "inventory": str(INVENTORY),
            "sources": ["file"],
            "source_location": str(prices),
            "state_url": self.state_url,
            "reports_dir": str(self.reports_dir),
            "slack_max_attempts": 3,
            "slack_backoff_s": 0.01,
            **self.defaults,
            **options,
        }
        return nightly_replan(**arguments)

    def cli_args(self, prices: Path | str) -> list[str]:
        return [
            "run",
            "--inventory",
            str(INVENTORY),
            "--source",
            "file",
            "--from",
            str(prices),
            "--state",
            self.state_url,
            "--reports",
            str(self.reports_dir),
        ]


@pytest.fixture
def deployment(
    tmp_path: Path, loopback_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    """A fresh state store and reports folder; Slack answers 200 unless told otherwise."""
    monkeypatch.setenv("REPLAN_SLACK_WEBHOOK_URL", loopback_server.url_for(WEBHOOK_PATH))
    monkeypatch.delenv("REPLAN_STATE_URL", raising=False)
    deployment = Deployment(root=tmp_path, slack=loopback_server)
    deployment.slack_answers(Reply.text("ok"))
    return deployment


@pytest.fixture
def all_logs() -> Iterator[RecordingHandler]:
    """Every log record of the test at DEBUG, including urllib3's and Prefect's own."""
    handler = RecordingHandler()
    # `prefect._internal` and `prefect.extra` do not propagate to the root logger
    loggers = [logging.getLogger(name) for name in ("", "prefect._internal", "prefect.extra")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    urllib3 = logging.getLogger("urllib3")
    urllib3_level = urllib3.level
    urllib3.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            if logger is loggers[0]:
                logger.setLevel(level)
        urllib3.setLevel(urllib3_level)
