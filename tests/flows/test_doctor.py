"""`replan doctor`: each check on real parts (files, SQLite, a loopback HTTP server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main
from flows.commands.doctor import (
    FAIL,
    OK,
    WARN,
    check_inventory,
    check_prefect_api,
    check_slack,
    check_source,
    check_state_store,
)
from tests.support.http_server import LoopbackServer, Reply

DATA = Path(__file__).resolve().parents[1] / "data"
OPS = DATA / "ops"
SECRET = "T0/B0/doctor-secret-xyz"


@pytest.fixture(autouse=True)
def _no_prefect_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("REPLAN_SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("REPLAN_STATE_URL", raising=False)


def test_slack_present_is_ok_and_never_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("REPLAN_SLACK_WEBHOOK_URL", f"https://hooks.slack.com/services/{SECRET}")
    check = check_slack()
    assert check.status == OK and "not shown" in check.detail
    assert SECRET not in repr(check)
    code = main(_doctor_args(tmp_path))
    out = capsys.readouterr()
    assert code == 0, out.out
    assert SECRET not in out.out + out.err
    assert "webhook present" in out.out


def test_slack_missing_or_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_slack().status == WARN
    monkeypatch.setenv("REPLAN_SLACK_WEBHOOK_URL", f"hooks.slack.com/{SECRET}")
    check = check_slack()
    assert check.status == FAIL and SECRET not in repr(check)


def test_state_store_writable_or_not(tmp_path: Path) -> None:
    assert check_state_store(f"sqlite:///{tmp_path / 'state.db'}").status == OK
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    check = check_state_store(f"sqlite:///{blocked / 'state.db'}")
    assert check.status == FAIL and "REPLAN_STATE_URL" in check.fix


def test_state_store_password_is_hidden() -> None:
    check = check_state_store("postgresql+psycopg://replan:hunter2@127.0.0.1:1/replan")
    assert check.status == FAIL
    assert "hunter2" not in repr(check) and "***" in check.detail


def test_inventory_valid_or_not() -> None:
    assert check_inventory(str(OPS / "inventory.yaml")).status == OK
    check = check_inventory(str(DATA / "bad" / "inventory-empty.yaml"))
    assert check.status == FAIL and "replan validate" in check.fix


def test_sources(tmp_path: Path) -> None:
    assert check_source("file", str(OPS / "prices.csv")).status == OK
    missing = check_source("file", str(tmp_path / "none.csv"))
    assert missing.status == FAIL and "no such file" in missing.detail


def test_prefect_api_unset_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # the session's Prefect test harness, when other tests started it, sets an API URL
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        [check] = check_prefect_api()
    assert check.status == WARN and "prefect server start" in check.fix


def test_prefect_api_unreachable_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    with LoopbackServer() as server:
        url = server.url
    monkeypatch.setenv("PREFECT_API_URL", f"{url}/api")  # the server stopped: nothing listens
    [check] = check_prefect_api()
    assert check.status == FAIL and "did not answer" in check.detail


def test_prefect_api_without_deployments_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with LoopbackServer() as server:
        server.route("/api/health", Reply.json(True))
        monkeypatch.setenv("PREFECT_API_URL", server.url_for("/api"))
        with temporary_settings(updates={PREFECT_API_URL: server.url_for("/api")}):
            api, deployments = check_prefect_api()
    assert api.status == OK
    assert deployments.status == WARN and "replan serve" in deployments.fix


def test_failures_exit_one_and_say_what_to_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _doctor_args(tmp_path)
    args[args.index("--inventory") + 1] = str(DATA / "bad" / "inventory-empty.yaml")
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "FAIL  inventory" in out and "fix: run `replan validate" in out
    assert "1 failed" in out


def _doctor_args(tmp_path: Path) -> list[str]:
    return [
        "doctor",
        "--inventory",
        str(OPS / "inventory.yaml"),
        "--state",
        f"sqlite:///{tmp_path / 'state.db'}",
        "--source",
        "file",
        "--from",
        str(OPS / "prices.csv"),
    ]
