"""One machine, as the README's "Operate it" says: `replan serve` with the temporary Prefect API,
a manual run asked for through that API, the run completes and writes its report.

The run's subprocess must use the server `replan serve` started (its exported PREFECT_API_URL):
with a second temporary server of its own it lost its deployment concurrency slot and was
cancelled. With REPLAN_TEST_POSTGRES_URL set, the state store is PostgreSQL with a password,
and no parameter Prefect stores holds the password.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

pytestmark = [pytest.mark.server, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "tests" / "data" / "ops"
REPLAN = str(Path(sys.executable).with_name("replan"))
POSTGRES_URL = os.environ.get("REPLAN_TEST_POSTGRES_URL")
SERVE_START_S = 240.0
RUN_WAIT_S = 180.0
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
SERVING = re.compile(r"replan serve: 4 deployments on (http://127\.0\.0\.1:\d+/api) \(temporary")


@pytest.fixture
def state_url(tmp_path: Path) -> Iterator[str]:
    """A SQLite file, or (CI) a fresh PostgreSQL database reached with a password."""
    if not POSTGRES_URL:
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    name = f"replan_serve_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def wait_for(what: str, probe: Any, timeout_s: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{log.read_text()[-6000:]}")


def api_call(method: str, url: str, **options: Any) -> Any:
    """One API request, retried on 503 as Prefect's own client does (SQLite busy)."""
    for _ in range(10):
        response = requests.request(method, url, timeout=10, **options)
        if response.status_code != 503:
            break
        time.sleep(1.0)
    response.raise_for_status()
    return response.json()


def test_serve_on_the_temporary_api_runs_a_manual_run_to_its_report(
    tmp_path: Path, state_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REPLAN_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        GX_ANALYTICS_ENABLED="false",
    )
    reports = tmp_path / "reports"
    log = tmp_path / "serve.log"
    command = [
        REPLAN, "serve", "--inventory", str(OPS / "inventory.yaml"), "--source", "file",
        "--from", str(OPS / "prices.csv"), "--model", "tiny", "--max-price-age-days", "100000",
        "--reports", str(reports), "--state", state_url,
    ]  # fmt: skip
    with log.open("wb") as out:
        serve = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:

        def serving() -> str | None:
            assert serve.poll() is None, f"replan serve exited:\n{log.read_text()[-6000:]}"
            match = SERVING.search(log.read_text(errors="replace"))
            return match.group(1) if match else None

        api = wait_for("replan serve to serve", serving, SERVE_START_S, log)
        deployment = api_call("GET", f"{api}/deployments/name/nightly-replan/manual")
        # what `prefect deployment run nightly-replan/manual` asks the API for
        created = api_call("POST", f"{api}/deployments/{deployment['id']}/create_flow_run", json={})
        run_id = created["id"]

        def finished() -> dict[str, Any] | None:
            run = api_call("GET", f"{api}/flow_runs/{run_id}")
            return run if run["state_type"] in TERMINAL else None

        run = wait_for("the manual run to finish", finished, RUN_WAIT_S, log)
        assert run["state_type"] == "COMPLETED", (
            f"{run['state_type']}: {run['state']['message']}\n{log.read_text()[-6000:]}"
        )
        [report] = list(reports.glob("*-run*/report.md"))
        assert "tiny" in report.read_text()
        # no second temporary server: the run's process used the one serve started
        assert log.read_text().count("Starting temporary server") == 0

        password = sa.make_url(state_url).password
        if password:
            parameters = [run["parameters"], deployment["parameters"]]
            assert all(str(password) not in str(p) for p in parameters), parameters
            assert ":***@" in run["parameters"]["state_url"]
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGINT)
            try:
                serve.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(serve.pid, signal.SIGKILL)
                serve.wait(timeout=10)
