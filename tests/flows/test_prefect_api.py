"""The temporary Prefect API: time to start, three tries, then one line with the fix.

The failing start is forced rather than hoped for: each try gets 1 s and the server's database
is a PostgreSQL port where nothing listens, so no try can answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.prefect_api import (
    DEFAULT_STARTUP_TIMEOUT_S,
    STARTUP_TIMEOUT_ENV,
    ApiUnavailable,
    startup_timeout_s,
)
from tests.flows.conftest import FLOW_DATA, INVENTORY

REPO = Path(__file__).resolve().parents[2]
REPLAN = str(Path(sys.executable).with_name("replan"))


def test_the_start_up_limit_is_long_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STARTUP_TIMEOUT_ENV, raising=False)
    assert startup_timeout_s() == DEFAULT_STARTUP_TIMEOUT_S >= 120  # Prefect's own: 20 s
    monkeypatch.setenv(STARTUP_TIMEOUT_ENV, "300")
    assert startup_timeout_s() == 300
    monkeypatch.setenv(STARTUP_TIMEOUT_ENV, "soon")
    with pytest.raises(ApiUnavailable, match=f"fix: e.g. {STARTUP_TIMEOUT_ENV}=120"):
        startup_timeout_s()


@pytest.mark.timeout(180)
def test_a_temporary_api_that_never_answers_is_tried_three_times_then_one_line(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REPLAN_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_DATABASE_CONNECTION_URL="postgresql+asyncpg://replan@127.0.0.1:9/none",
        **{STARTUP_TIMEOUT_ENV: "1"},
    )
    reports = tmp_path / "reports"
    done = subprocess.run(
        [
            REPLAN, "run", "--inventory", str(INVENTORY), "--source", "file",
            "--from", str(FLOW_DATA / "prices-baseline.csv"), "--reports", str(reports),
            "--state", f"sqlite:///{tmp_path / 'state.db'}",
        ],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    log = reports / "logs" / "prefect-server.log"
    assert line == (
        f"replan run: the temporary Prefect API did not answer within 1 s in 3 tries (its log: "
        f"{log}); fix: give it longer ({STARTUP_TIMEOUT_ENV}=3) or run a server (`prefect "
        "server start`) and set PREFECT_API_URL=http://127.0.0.1:4200/api"
    )
    tries = [t for t in log.read_text().splitlines() if "replan: try " in t]
    assert [t.split("replan: ")[1][:13] for t in tries] == [
        "try 1/3 faile",
        "try 2/3 faile",
        "try 3/3 faile",
    ]
    assert not (tmp_path / "state.db").exists(), "no flow ran"
