"""What an operator sees of a failed `replan run`: one line on stderr, the engine's traceback
in the run's log file and the Prefect UI only, and no state-store password anywhere Prefect
keeps or shows it (issue 13).

`replan run` runs as a subprocess (Prefect's console handler writes to the real stderr) against
the session's test server, whose API the test then reads.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.flows.conftest import FLOW_DATA, INVENTORY

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
REPLAN = str(Path(sys.executable).with_name("replan"))
PASSWORD = "pw-Zx81-never-shown"


def closed_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def flow_run_parameters() -> list[dict[str, Any]]:
    """The parameters Prefect stored for every nightly-replan flow run of the session."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["nightly-replan"]))
        )
    return [run.parameters for run in runs]


def test_a_failed_run_prints_one_line_and_keeps_its_traceback_and_password_out_of_sight(
    tmp_path: Path,
) -> None:
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REPLAN_"))}
    env.update(
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_HOME=str(tmp_path / "prefect-home"),
    )
    state_url = f"postgresql+psycopg://replan:{PASSWORD}@127.0.0.1:{closed_port()}/replan"
    reports = tmp_path / "reports"
    before = len(asyncio.run(flow_run_parameters()))
    done = subprocess.run(
        [
            REPLAN, "run", "--inventory", str(INVENTORY), "--source", "file",
            "--from", str(FLOW_DATA / "prices-baseline.csv"), "--reports", str(reports),
            "--state", state_url,
        ],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=200, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    # the engine's own lines may show; its traceback and the password may not
    assert "Traceback" not in done.stderr, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("replan run:")]
    assert line.startswith("replan run: failed: ")
    [log] = list((reports / "logs").glob("run-*.log"))
    assert line.endswith(f"(traceback: {log})")
    assert "Traceback (most recent call last)" in log.read_text()
    assert PASSWORD not in log.read_text()

    parameters = asyncio.run(flow_run_parameters())
    assert len(parameters) == before + 1, "the run reached Prefect"
    stored = [p for p in parameters if "127.0.0.1" in str(p.get("state_url"))]
    assert [p["state_url"] for p in stored] == [state_url.replace(PASSWORD, "***")]
    assert all(PASSWORD not in str(p) for p in parameters)
