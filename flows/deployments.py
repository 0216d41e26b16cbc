"""The deployments of replan, built from settings: `replan serve` serves them in one process,
and `prefect.yaml` points workers at `configured_nightly_replan` below.

Settings (environment):
- `REPLAN_NIGHTLY_CRON` (default `0 2 * * *`) and `REPLAN_TIMEZONE` (default `UTC`);
- `REPLAN_WATCH_CRON` (default `30 * * * *`, hourly, half past, away from the nightly run);
- `REPLAN_TASK_RUNNER`: `threads` (default, Prefect's thread pool) or `dask`; with `dask`,
  `REPLAN_DASK_ADDRESS` names a running scheduler (`tcp://host:8786`), else a `LocalCluster`
  of `REPLAN_DASK_WORKERS` (default 2) worker processes starts with each run.

The three re-planning deployments share one Prefect concurrency limit, `replan-state` (1 slot),
so a triggered run, the nightly run and a manual run never hold the state store at once; each
keeps its own collision strategy (ENQUEUE: wait for the slot).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from flows.replan import nightly_replan
from flows.watch import EVENT_NAME, RESOURCE_PREFIX, watch_prices

SHARED_LIMIT_NAME = "replan-state"
REPLAN_DEPLOYMENTS = ("nightly", "manual", "on-price-change")
WATCH_DEPLOYMENT = "watch-prices"
TRIGGER_WITHIN_S = 300  # one re-plan for the burst of events one watch run emits
TASK_RUNNERS = ("threads", "dask")
# Parameters the watch flow shares with the nightly flow.
WATCH_PARAMETERS = (
    "inventory",
    "sources",
    "source_location",
    "models",
    "price_mode",
    "max_price_age_days",
    "state_url",
)


@dataclass(frozen=True)
class DeploymentSettings:
    """Schedules and task runner, from `REPLAN_*` environment variables."""

    nightly_cron: str = "0 2 * * *"
    timezone: str = "UTC"
    watch_cron: str = "30 * * * *"
    task_runner: str = "threads"
    dask_address: str | None = None
    dask_workers: int = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DeploymentSettings:
        """Read the settings; unset or empty variables keep the defaults."""
        env = os.environ if env is None else env
        defaults = cls()

        def get(name: str, default: str) -> str:
            return (env.get(name) or "").strip() or default

        settings = cls(
            nightly_cron=get("REPLAN_NIGHTLY_CRON", defaults.nightly_cron),
            timezone=get("REPLAN_TIMEZONE", defaults.timezone),
            watch_cron=get("REPLAN_WATCH_CRON", defaults.watch_cron),
            task_runner=get("REPLAN_TASK_RUNNER", defaults.task_runner).lower(),
            dask_address=get("REPLAN_DASK_ADDRESS", "") or None,
            dask_workers=int(get("REPLAN_DASK_WORKERS", str(defaults.dask_workers))),
        )
        if settings.task_runner not in TASK_RUNNERS:
            raise ValueError(
                f"REPLAN_TASK_RUNNER must be one of {', '.join(TASK_RUNNERS)}, "
                f"not {settings.task_runner!r}"
            )
        return settings


def task_runner_from_settings(settings: DeploymentSettings) -> Any | None:
    """A `DaskTaskRunner` when configured, else None (the flow's own thread pool)."""
    if settings.task_runner != "dask":
        return None
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": settings.dask_workers, "threads_per_worker": 1}
    )


def configured_flow(settings: DeploymentSettings | None = None) -> Flow[..., Any]:
    """`nightly_replan` with the task runner the settings select."""
    runner = task_runner_from_settings(settings or DeploymentSettings.from_env())
    return nightly_replan if runner is None else nightly_replan.with_options(task_runner=runner)


# The entrypoint of prefect.yaml's re-planning deployments: the task runner is read from the
# environment of the process that loads it (the worker's flow-run process).
configured_nightly_replan = configured_flow()


def one_at_a_time(strategy: ConcurrencyLimitStrategy) -> ConcurrencyLimitConfig:
    """A deployment concurrency limit of 1 with a collision strategy."""
    return ConcurrencyLimitConfig(limit=1, collision_strategy=strategy)


def price_change_trigger() -> DeploymentEventTrigger:
    """Run the deployment once for a burst of `replan.prices.changed` events."""
    return DeploymentEventTrigger(
        name="replan-on-price-change",
        description="re-plan when watch-prices reports a pool that matters moved",
        expect={EVENT_NAME},
        match={"prefect.resource.id": f"{RESOURCE_PREFIX}*"},
        posture="Reactive",
        threshold=1,
        within=TRIGGER_WITHIN_S,
    )


def build_deployments(
    parameters: Mapping[str, Any] | None = None,
    settings: DeploymentSettings | None = None,
) -> list[Any]:
    """nightly (cron), manual, on-price-change (event trigger) and watch-prices (hourly)."""
    settings = settings or DeploymentSettings.from_env()
    parameters = {k: v for k, v in (parameters or {}).items() if v is not None}
    watch_parameters = {k: v for k, v in parameters.items() if k in WATCH_PARAMETERS}
    replan = configured_flow(settings)
    enqueue = one_at_a_time(ConcurrencyLimitStrategy.ENQUEUE)
    tags = ["replan"]
    return [
        replan.to_deployment(
            name="nightly",
            description="re-plan every model nightly",
            schedule=Cron(settings.nightly_cron, timezone=settings.timezone),
            parameters=parameters,
            concurrency_limit=enqueue,
            tags=tags,
        ),
        replan.to_deployment(
            name="manual",
            description="re-plan on demand: `prefect deployment run nightly-replan/manual`",
            parameters=parameters,
            concurrency_limit=enqueue,
            tags=tags,
        ),
        replan.to_deployment(
            name="on-price-change",
            description=f"re-plan when a `{EVENT_NAME}` event arrives",
            parameters=parameters,
            triggers=[price_change_trigger()],
            concurrency_limit=enqueue,
            tags=tags,
        ),
        watch_prices.to_deployment(
            name=WATCH_DEPLOYMENT,
            description="hourly: compare prices with the published plans' prices",
            schedule=Cron(settings.watch_cron, timezone=settings.timezone),
            parameters=watch_parameters,
            concurrency_limit=one_at_a_time(ConcurrencyLimitStrategy.CANCEL_NEW),
            tags=tags,
        ),
    ]


async def share_concurrency_limit(
    client: Any, deployment_ids: Iterable[UUID], name: str = SHARED_LIMIT_NAME
) -> UUID:
    """Point every deployment at one global concurrency limit of 1 slot (created if missing).

    Prefect gives each deployment with `concurrency_limit` its own limit, `deployment:<id>`;
    the server also accepts `global_concurrency_limit_id` on a deployment (not in the Python
    client's schema, so this PATCHes the API). The deployments' own limits are then deleted.
    Each deployment keeps its collision strategy. Idempotent; a re-deploy with limit 1 keeps
    the link. Deleting a linked deployment deletes the shared limit: run this again.
    """
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    try:
        shared = await client.read_global_concurrency_limit_by_name(name)
        shared_id = shared.id
    except ObjectNotFound:
        shared_id = await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=1)
        )
    for deployment_id in deployment_ids:
        deployment = await client.read_deployment(deployment_id)
        current = deployment.global_concurrency_limit
        if current is not None and current.id == shared_id:
            continue
        response = await client._client.patch(
            f"/deployments/{deployment_id}",
            json={"global_concurrency_limit_id": str(shared_id)},
        )
        response.raise_for_status()
        if current is not None and current.name == f"deployment:{deployment_id}":
            await client.delete_global_concurrency_limit_by_name(current.name)
    return shared_id


async def replan_deployment_ids(client: Any, flow_name: str = "nightly-replan") -> list[UUID]:
    """The ids of the re-planning deployments that exist on the API."""
    from prefect.exceptions import ObjectNotFound

    ids = []
    for name in REPLAN_DEPLOYMENTS:
        try:
            ids.append((await client.read_deployment_by_name(f"{flow_name}/{name}")).id)
        except ObjectNotFound:
            continue
    return ids
