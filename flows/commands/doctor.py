"""`replan doctor`: check the set-up and say what to fix.

Checks the Prefect API (reachable; the deployments and their shared concurrency limit), the
state store (writable), the Slack webhook (present; never printed), the inventory (valid) and
the price sources (answer with a table). Exit 1 when a check fails; warnings exit 0.
`--fix` links the re-planning deployments to the shared concurrency limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
OK, WARN, FAIL = "ok", "warn", "FAIL"
API_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    """One line of the doctor's answer: what, how it went, and what to do about it."""

    name: str
    status: str  # OK, WARN or FAIL
    detail: str
    fix: str = ""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check the Prefect API, state store, Slack, inventory and price sources",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--inventory", default="config/inventory.yaml")
    parser.add_argument(
        "--source", action="append", dest="sources", help="price source (repeatable; snapshot)"
    )
    parser.add_argument("--from", dest="location", help="base URL or path for the source")
    parser.add_argument("--state", dest="state_url", help="state store URL ($REPLAN_STATE_URL)")
    parser.add_argument("--no-sources", action="store_true", help="skip fetching the sources")
    parser.add_argument(
        "--fix", action="store_true", help="link the deployments to the shared concurrency limit"
    )
    parser.set_defaults(func=run)


def check_prefect_api(fix: bool = False) -> list[Check]:
    """The API answers /health; the deployments exist and share the concurrency limit."""
    import requests

    url = (os.environ.get("PREFECT_API_URL") or "").rstrip("/")
    if not url:
        from prefect.settings import get_current_settings

        url = str(get_current_settings().api.url or "").rstrip("/")
    if not url:
        return [
            Check(
                "prefect api",
                WARN,
                "no PREFECT_API_URL: `replan serve` and `replan run` use a temporary API "
                "that ends with the process (no UI, no history across restarts)",
                "start `prefect server start` and `export PREFECT_API_URL="
                "http://127.0.0.1:4200/api`",
            )
        ]
    try:
        response = requests.get(f"{url}/health", timeout=API_TIMEOUT_S)
        response.raise_for_status()
    except requests.RequestException as exc:
        return [
            Check(
                "prefect api",
                FAIL,
                f"{url} did not answer /health: {type(exc).__name__}",
                "start the server (`prefect server start`) or correct PREFECT_API_URL",
            )
        ]
    return [Check("prefect api", OK, f"{url} answered /health"), _check_deployments(fix)]


def _check_deployments(fix: bool) -> Check:
    from prefect.client.orchestration import get_client

    from flows.deployments import (
        REPLAN_DEPLOYMENTS,
        SHARED_LIMIT_NAME,
        replan_deployment_ids,
        share_concurrency_limit,
    )

    async def inspect() -> Check:
        async with get_client() as client:
            ids = await replan_deployment_ids(client)
            if not ids:
                return Check(
                    "deployments",
                    WARN,
                    "no nightly-replan deployments on this API",
                    "`replan serve` (one machine) or `prefect deploy --all` (work pool)",
                )
            if fix:
                await share_concurrency_limit(client, ids)
            linked = 0
            for deployment_id in ids:
                limit = (await client.read_deployment(deployment_id)).global_concurrency_limit
                linked += bool(limit and limit.name == SHARED_LIMIT_NAME)
        detail = f"{len(ids)} of {len(REPLAN_DEPLOYMENTS)} re-planning deployments"
        if linked < len(ids):
            return Check(
                "deployments",
                WARN,
                f"{detail}; {len(ids) - linked} not on the shared limit {SHARED_LIMIT_NAME!r}: "
                "a triggered run may overlap the nightly one",
                "`replan doctor --fix`",
            )
        return Check("deployments", OK, f"{detail}, sharing the limit {SHARED_LIMIT_NAME!r}")

    try:
        return asyncio.run(inspect())
    except Exception as exc:
        return Check("deployments", FAIL, f"could not read them: {type(exc).__name__}: {exc}")


def check_state_store(state_url: str | None) -> Check:
    """The store opens and takes a write transaction (creating its tables if missing)."""
    from tasks.state import STATE_URL_ENV, StateStore, default_state_url, redact_url

    shown = "the default store"
    with contextlib.suppress(Exception):
        shown = redact_url(state_url or os.environ.get(STATE_URL_ENV) or default_state_url())
    try:
        store = StateStore.from_url(state_url, create=False)
        shown = store.url
        store.create_all()  # a write transaction: BEGIN IMMEDIATE on SQLite, DDL lock on PG
        store.dispose()
    except Exception as exc:
        return Check(
            "state store",
            FAIL,
            f"{shown} is not writable: {type(exc).__name__}",
            "check REPLAN_STATE_URL (or --state), that the database runs and the user may "
            "write; for SQLite that the folder is writable",
        )
    return Check("state store", OK, f"{shown} is writable")


def check_slack() -> Check:
    """A webhook is configured (env or Secret block); its URL is never shown."""
    from tasks.slack import WEBHOOK_SECRET_BLOCK, WEBHOOK_URL_ENV, webhook_url_from_settings

    try:
        webhook = webhook_url_from_settings()
    except Exception as exc:  # the message of SlackWebhookUrl's errors holds no URL
        return Check(
            "slack",
            FAIL,
            f"the webhook setting is unusable: {type(exc).__name__}",
            f"set {WEBHOOK_URL_ENV} or the Secret block {WEBHOOK_SECRET_BLOCK!r} to an "
            "https:// URL",
        )
    if webhook is None:
        return Check(
            "slack",
            WARN,
            "no webhook: plans are recorded on the 'report' channel, nothing is posted",
            f"`prefect block create secret` named {WEBHOOK_SECRET_BLOCK!r}, or set "
            f"{WEBHOOK_URL_ENV} in the worker's environment",
        )
    where = "environment" if os.environ.get(WEBHOOK_URL_ENV, "").strip() else "Secret block"
    return Check("slack", OK, f"webhook present ({where}; not shown)")


def check_inventory(path: str) -> Check:
    """The inventory reads and passes its validation."""
    from tasks.validation import check_inventory_file

    inventory, report = check_inventory_file(path)
    if inventory is None or not report.ok:
        first = report.render().splitlines()
        return Check(
            "inventory",
            FAIL,
            f"{path} is invalid: " + " / ".join(line.strip() for line in first[:4]),
            f"run `replan validate --inventory {path}` for every finding",
        )
    return Check(
        "inventory",
        OK,
        f"{path}: {len(inventory.models)} models, {len(inventory.gpus)} GPU types, "
        f"{len(inventory.quotas)} quotas",
    )


def check_source(name: str, location: str | None) -> Check:
    """The source answers with a canonical price table."""
    from tasks.prices import PriceSourceError, fetch_prices

    started = time.monotonic()
    try:
        table = fetch_prices(name, location, progress=lambda _message: None)
    except PriceSourceError as exc:
        return Check(
            f"source {name}", FAIL, str(exc), "check --from / the network, or pick another source"
        )
    seconds = time.monotonic() - started
    return Check(f"source {name}", OK, f"{len(table)} price rows in {seconds:.1f} s")


def run_checks(args: argparse.Namespace) -> list[Check]:
    """Every check, in order; one failing does not stop the others."""
    steps: list[Callable[[], list[Check] | Check]] = [
        lambda: check_prefect_api(args.fix),
        lambda: check_state_store(args.state_url),
        check_slack,
        lambda: check_inventory(args.inventory),
    ]
    if not args.no_sources:
        for source in args.sources or ["snapshot"]:
            steps.append(lambda source=source: check_source(source, args.location))
    checks: list[Check] = []
    for step in steps:
        result = step()
        checks += result if isinstance(result, list) else [result]
    return checks


def render(checks: list[Check]) -> str:
    """One line a check, then an indented `fix:` line where there is something to do."""
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        lines.append(f"{check.status:<4}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status != OK:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {check.fix}")
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    lines.append(f"{failed} failed, {warned} warnings, {len(checks) - failed - warned} ok")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    checks = run_checks(args)
    print(render(checks))
    return EXIT_FAILED if any(c.status == FAIL for c in checks) else EXIT_OK
