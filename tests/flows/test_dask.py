"""The nightly flow on a `DaskTaskRunner`, selected by settings, on a two-worker LocalCluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.deployments import DeploymentSettings, configured_flow, task_runner_from_settings

pytestmark = pytest.mark.timeout(180)

OPS = Path(__file__).resolve().parents[1] / "data" / "ops"


def test_settings_select_the_task_runner() -> None:
    from prefect_dask import DaskTaskRunner

    assert task_runner_from_settings(DeploymentSettings.from_env({})) is None
    remote = task_runner_from_settings(
        DeploymentSettings.from_env(
            {"REPLAN_TASK_RUNNER": "dask", "REPLAN_DASK_ADDRESS": "tcp://127.0.0.1:8786"}
        )
    )
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://127.0.0.1:8786"
    local = task_runner_from_settings(
        DeploymentSettings.from_env({"REPLAN_TASK_RUNNER": "dask", "REPLAN_DASK_WORKERS": "3"})
    )
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 3
    with pytest.raises(ValueError, match="REPLAN_TASK_RUNNER"):
        DeploymentSettings.from_env({"REPLAN_TASK_RUNNER": "ray"})


def test_schedule_settings() -> None:
    settings = DeploymentSettings.from_env(
        {"REPLAN_TIMEZONE": "Europe/Berlin", "REPLAN_NIGHTLY_CRON": "15 3 * * *"}
    )
    assert (settings.nightly_cron, settings.timezone) == ("15 3 * * *", "Europe/Berlin")
    assert DeploymentSettings.from_env({}).nightly_cron == "0 2 * * *"


@pytest.fixture
def cluster() -> Iterator[object]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local:
        yield local


def test_a_two_model_fleet_on_a_local_cluster_of_two_workers(
    prefect_harness: None, cluster: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import Client, get_task_stream

    monkeypatch.delenv("REPLAN_SLACK_WEBHOOK_URL", raising=False)
    address = cluster.scheduler_address  # type: ignore[attr-defined]
    flow = configured_flow(
        DeploymentSettings.from_env({"REPLAN_TASK_RUNNER": "dask", "REPLAN_DASK_ADDRESS": address})
    )
    with Client(address) as client, get_task_stream(client) as stream:
        assert len(client.scheduler_info()["workers"]) == 2
        summary = flow(
            inventory=str(OPS / "inventory.yaml"),
            sources=["file"],
            source_location=str(OPS / "prices.csv"),
            max_price_age_days=100_000,
            strategies=["exact", "weighted"],
            state_url=f"sqlite:///{tmp_path / 'state.db'}",
            reports_dir=str(tmp_path / "reports"),
        )
    assert summary["status"] == "completed"
    assert summary["fleet"]["status"] == "optimal"
    assert set(summary["models"]) == {"tiny", "small"}  # one fleet plan serves both
    ran = [t for t in stream.data if t.get("status") == "OK"]
    # the fleet's scenario, its two strategies and its frontier ran on the cluster
    assert len(ran) >= 4, [t.get("key") for t in stream.data]
    assert {t["worker"] for t in ran} <= set(client_workers(address))


def client_workers(address: str) -> list[str]:
    from distributed import Client

    with Client(address) as client:
        return list(client.scheduler_info()["workers"])
