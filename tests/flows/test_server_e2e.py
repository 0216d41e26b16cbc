"""End to end on a real `prefect server start`: deploy from prefect.yaml, a process worker, a
manual run, then a price change that watch-prices reports and the trigger re-plans.

The server's database is SQLite in a temporary PREFECT_HOME, or, when REPLAN_TEST_POSTGRES_URL
is set (CI), a fresh PostgreSQL database (asyncpg), as in production; the state store likewise.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import yaml

from tests.support.http_server import LoopbackServer, Reply

pytestmark = [pytest.mark.server, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "tests" / "data" / "ops"
PREFECT = str(Path(sys.executable).with_name("prefect"))
REPLAN = str(Path(sys.executable).with_name("replan"))
POSTGRES_URL = os.environ.get("REPLAN_TEST_POSTGRES_URL")
WEBHOOK_PATH = "/services/T0/B0/e2e-secret"
SERVER_START_S = 120.0
RUN_WAIT_S = 150.0
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path.name})"


@dataclass
class Processes:
    """Subprocesses started by the test, each in its own session; stopped in reverse order."""

    started: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(
                args, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.started.append((process, log))
        return process

    def stop_all(self) -> None:
        for process, _log in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)


@dataclass
class Server:
    """A running Prefect server and the environment that points at it."""

    url: str
    env: dict[str, str]
    logs: Path

    def get(self, path: str) -> Any:
        response = requests.get(f"{self.url}{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = requests.post(f"{self.url}{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def cli(self, *args: str, timeout_s: float = 90.0) -> str:
        """Run `prefect ...` or `replan ...`; fail with its output when it fails."""
        done = subprocess.run(
            list(args), env=self.env, cwd=REPO, capture_output=True, text=True,
            timeout=timeout_s, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def flow_runs(self, deployment_id: str | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"sort": "START_TIME_ASC", "limit": 50}
        if deployment_id:
            body["deployments"] = {"id": {"any_": [deployment_id]}}
        return self.post("/flow_runs/filter", body)

    def deployment(self, name: str) -> dict[str, Any]:
        return self.get(f"/deployments/name/{name}")

    def run_deployment(self, name: str) -> str:
        """What `prefect deployment run NAME` asks the API for, without its ~10 s start-up
        (the first manual run goes through the CLI itself); the flow run's id."""
        deployment_id = self.deployment(name)["id"]
        return str(self.post(f"/deployments/{deployment_id}/create_flow_run", {})["id"])

    def wait_for(self, what: str, probe: Callable[[], Any], timeout_s: float = RUN_WAIT_S) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            time.sleep(1.0)
        pytest.fail(
            f"timed out after {timeout_s:.0f} s waiting for {what}\n"
            + "\n".join(f"--- {log.name}\n{tail(log)}" for log in sorted(self.logs.glob("*.log")))
        )

    def wait_finished(self, flow_run_id: str) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            run = self.get(f"/flow_runs/{flow_run_id}")
            return run if run["state_type"] in TERMINAL else None

        run = self.wait_for(f"flow run {flow_run_id} to finish", finished)
        assert run["state_type"] == "COMPLETED", (
            f"flow run {run['name']} ended {run['state_type']}: {run['state']['message']}\n"
            + tail(self.logs / "worker.log", 80)
        )
        return run


def _admin_engine() -> sa.Engine:
    assert POSTGRES_URL
    return sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture
def fresh_databases() -> Iterator[dict[str, str]]:
    """Two fresh PostgreSQL databases (Prefect server, state store) when CI names one."""
    if not POSTGRES_URL:
        yield {}
        return
    names = {kind: f"replan_e2e_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("server", "state")}
    engine = _admin_engine()
    base = sa.make_url(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            for name in names.values():
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield {
            "server": base.set(
                drivername="postgresql+asyncpg", database=names["server"]
            ).render_as_string(hide_password=False),
            "state": base.set(database=names["state"]).render_as_string(hide_password=False),
        }
    finally:
        with engine.connect() as conn:
            for name in names.values():
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


@pytest.fixture
def slack() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        server.route(WEBHOOK_PATH, Reply.text("ok"), method="POST")
        yield server


@pytest.fixture
def prefect_server(
    tmp_path: Path, fresh_databases: dict[str, str], slack: LoopbackServer
) -> Iterator[Server]:
    """`prefect server start` on a free loopback port; everything stopped afterwards."""
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "REPLAN_"))
    }
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS="2",
        PREFECT_WORKER_QUERY_SECONDS="2",
        PREFECT_CLI_WRAP_LINES="false",
        GX_ANALYTICS_ENABLED="false",
        REPLAN_STATE_URL=fresh_databases.get("state") or f"sqlite:///{tmp_path / 'state.db'}",
        REPLAN_SLACK_WEBHOOK_URL=slack.url_for(WEBHOOK_PATH),
        COLUMNS="250",
    )
    server_env = dict(env)
    if "server" in fresh_databases:
        server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = fresh_databases["server"]
    processes = Processes()
    try:
        server_process = processes.start(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
            server_env,
            logs / "server.log",
        )
        server = Server(url=env["PREFECT_API_URL"], env=env, logs=logs)
        server.processes = processes  # type: ignore[attr-defined]

        def healthy() -> bool:
            assert server_process.poll() is None, "prefect server exited:\n" + tail(
                logs / "server.log"
            )
            try:
                return requests.get(f"{server.url}/health", timeout=2).ok
            except requests.RequestException:
                return False

        server.wait_for("the Prefect server to answer /health", healthy, SERVER_START_S)
        yield server
    finally:
        processes.stop_all()


def flow_run_id(cli_output: str) -> str:
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", cli_output)
    assert match, f"no flow run id in:\n{cli_output}"
    return match.group(1)


def deploy_all(
    server: Server, folder: Path, replan: dict[str, Any], watch: dict[str, Any], timezone: str
) -> None:
    """`prefect --no-prompt deploy --all` as docs/operations.md says, from a copy of prefect.yaml
    whose parameters are the test's and whose nightly schedule is edited to `timezone`: one
    CLI start-up instead of one per deployment."""
    document = yaml.safe_load((REPO / "prefect.yaml").read_text())
    for deployment in document["deployments"]:
        defaults = deployment["parameters"]
        extra = watch if deployment["name"] == "watch-prices" else replan
        deployment["parameters"] = {**defaults, **extra}
        if deployment["name"] == "nightly":
            deployment["schedules"] = [{**s, "timezone": timezone} for s in deployment["schedules"]]
    copy = folder / "prefect.yaml"
    copy.write_text(yaml.safe_dump(document, sort_keys=False))
    server.cli(PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", str(copy))


def test_deploy_run_manual_then_price_change_triggers_a_replan(
    prefect_server: Server,
    slack: LoopbackServer,
    tmp_path: Path,
    fresh_databases: dict[str, str],
) -> None:
    from tasks.state import FLEET_MODEL, StateStore

    server = prefect_server
    prices = tmp_path / "prices.csv"
    shutil.copy(OPS / "prices.csv", prices)
    common = {
        "inventory": str(OPS / "inventory.yaml"),
        "sources": ["file"],
        "source_location": str(prices),
        "models": ["tiny"],
        "max_price_age_days": 100_000,
    }
    replan_parameters = {**common, "reports_dir": str(tmp_path / "reports")}

    # -- deploy from prefect.yaml, link the shared limit, start a process worker ---------------
    server.cli(PREFECT, "work-pool", "create", "replan", "--type", "process")
    deploy_all(server, tmp_path, replan_parameters, common, "Europe/Berlin")
    doctor = server.cli(
        REPLAN, "doctor", "--fix", "--no-sources", "--inventory", common["inventory"]
    )
    assert "sharing the limit 'replan-state'" in doctor, doctor
    assert "e2e-secret" not in doctor and "webhook present" in doctor
    nightly = server.deployment("nightly-replan/nightly")
    [schedule] = nightly["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * *"
    assert schedule["schedule"]["timezone"] == "Europe/Berlin"
    limits = {
        name: server.deployment(f"nightly-replan/{name}")["global_concurrency_limit"]["name"]
        for name in ("nightly", "manual", "on-price-change")
    }
    assert set(limits.values()) == {"replan-state"}, limits
    trigger_deployment = server.deployment("nightly-replan/on-price-change")
    processes: Processes = server.processes  # type: ignore[attr-defined]
    processes.start(
        [PREFECT, "worker", "start", "--pool", "replan", "--type", "process", "--limit", "2"],
        server.env,
        server.logs / "worker.log",
    )

    # -- a manual run publishes the first plan ---------------------------------------------------
    manual = flow_run_id(
        server.cli(
            PREFECT, "deployment", "run", "nightly-replan/manual", "--param", "dry_run=false"
        )
    )
    server.wait_finished(manual)
    store = StateStore.from_url(server.env["REPLAN_STATE_URL"])
    try:
        first = store.last_published(FLEET_MODEL, "slack")
        assert first is not None, "the manual run published nothing"
        assert {s["pool"] for r in first.plan["replicas"] for s in r["stages"]} == {
            "aws/us-west-2/T4/spot"
        }
        assert len(slack.requests_to(WEBHOOK_PATH, method="POST")) == 1

        # -- prices move: the plan's pool up, an unused V100 pool down enough to beat it ---------
        text = prices.read_text()
        text = text.replace("T4,1,0.526,0.19,", "T4,1,0.526,0.30,")
        text = text.replace("V100,1,3.06,0.918,", "V100,1,3.06,0.30,")
        prices.write_text(text)
        watch = server.run_deployment("watch-prices/watch-prices")
        server.wait_finished(watch)
        # A manual run asked for at the same moment must wait for the triggered one (or the
        # other way round): they share the `replan-state` limit.
        manual_again = server.run_deployment("nightly-replan/manual")
        triggered = server.wait_for(
            "the trigger to start an on-price-change run",
            lambda: server.flow_runs(trigger_deployment["id"]),
            60,
        )
        assert len(triggered) == 1, "one re-plan for the burst of two pool events"
        server.wait_finished(triggered[0]["id"])
        server.wait_finished(manual_again)

        events = server.post(
            "/events/filter",
            {"filter": {"event": {"name": ["replan.prices.changed"]}}, "limit": 50},
        )["events"]
        pools = {e["resource"]["prefect.resource.id"]: e["payload"] for e in events}
        assert pools["replan.pool.aws/us-west-2/T4"]["old_price_per_gpu_hour"] == 0.19
        assert pools["replan.pool.aws/us-west-2/T4"]["new_price_per_gpu_hour"] == 0.30
        assert pools["replan.pool.aws/us-east-1/V100"]["models"] == {"tiny": "would-beat"}

        second = store.last_published(FLEET_MODEL, "slack")
        assert second is not None and second.publication_id != first.publication_id
        assert {s["pool"] for r in second.plan["replicas"] for s in r["stages"]} == {
            "aws/us-east-1/V100/spot"
        }
        assert len(slack.requests_to(WEBHOOK_PATH, method="POST")) == 2, "one post per change"

        # -- the re-planning runs never overlapped ---------------------------------------------
        runs = [
            server.get(f"/flow_runs/{run_id}")
            for run_id in (manual, triggered[0]["id"], manual_again)
        ]
        spans = sorted((r["start_time"], r["end_time"]) for r in runs)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, f"re-planning runs overlapped: {spans}"
        if "server" in fresh_databases:  # the server really kept its runs in PostgreSQL
            engine = sa.create_engine(
                sa.make_url(fresh_databases["server"]).set(drivername="postgresql+psycopg")
            )
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT count(*) FROM flow_run").scalar_one() >= 4
            engine.dispose()
    finally:
        store.dispose()
