"""`replan serve`: serve the deployments and their schedules from this one process.

Against `$PREFECT_API_URL` (e.g. a local `prefect server start`), or, when it is unset, a
temporary Prefect API started here (120 s to come up, 3 tries; its URL is printed and exported
as PREFECT_API_URL, so each run's subprocess uses it), which lives as long as this process.
A password in --state is passed to the runs in $REPLAN_STATE_PASSWORD, never as a parameter.
Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from flows.commands.run import EXIT_FAILED, EXIT_INVALID, EXIT_OK, check_arguments

FLOW_DEFAULT_INVENTORY = "config/inventory.yaml"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the nightly, manual, on-price-change and watch-prices deployments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--inventory", help="inventory YAML (flow default config/inventory.yaml)")
    parser.add_argument(
        "--source", action="append", dest="sources", help="price source (repeatable)"
    )
    parser.add_argument("--from", dest="source_location", help="base URL or path for the source")
    parser.add_argument("--model", action="append", dest="models", help="default: every model")
    parser.add_argument("--state", dest="state_url", help="state store URL ($REPLAN_STATE_URL)")
    parser.add_argument("--reports", dest="reports_dir", help="reports folder (default reports)")
    parser.add_argument("--threshold", dest="switch_threshold", type=float)
    parser.add_argument("--price-mode", choices=("spot", "on-demand", "cheapest"))
    parser.add_argument("--max-price-age-days", type=float)
    parser.add_argument("--dry-run", action="store_true", default=None, help="publish nothing")
    parser.add_argument(
        "--limit", type=int, default=None, help="at most this many runs at once in this process"
    )
    parser.set_defaults(func=run)


def deployment_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The flow parameters given on the command line (the rest keep the flow's defaults)."""
    names = (
        "inventory",
        "sources",
        "source_location",
        "models",
        "state_url",
        "reports_dir",
        "switch_threshold",
        "price_mode",
        "max_price_age_days",
        "dry_run",
    )
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


async def _register(deployments: list[Any]) -> list[Any]:
    """Create the deployments and link the re-planning ones to the shared concurrency limit."""
    from prefect.client.orchestration import get_client

    from flows.deployments import REPLAN_DEPLOYMENTS, share_concurrency_limit

    ids = [await deployment.aapply() for deployment in deployments]
    async with get_client() as client:
        replan_ids = [
            i for d, i in zip(deployments, ids, strict=True) if d.name in REPLAN_DEPLOYMENTS
        ]
        await share_concurrency_limit(client, replan_ids)
    return ids


def run(args: argparse.Namespace) -> int:
    problem = check_arguments(
        args.inventory or FLOW_DEFAULT_INVENTORY, args.sources, args.source_location, args.models
    )
    if problem is not None:
        print(f"replan serve: {problem}", file=sys.stderr)
        return EXIT_INVALID
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.prefect_api import ApiUnavailable, configured_api_url, ensure_api
    from flows.state_secret import export_state_password

    temporary = configured_api_url() is None
    try:
        # exported as PREFECT_API_URL: each run's subprocess uses this server, not its own
        api = ensure_api(Path(args.reports_dir or "reports") / "logs")
    except ApiUnavailable as exc:
        print(f"replan serve: {exc}", file=sys.stderr)
        return EXIT_FAILED
    from prefect import serve

    from flows.deployments import DeploymentSettings, build_deployments

    try:
        settings = DeploymentSettings.from_env()
    except ValueError as exc:
        print(f"replan serve: {exc}", file=sys.stderr)
        return EXIT_INVALID
    args.state_url = export_state_password(args.state_url)  # the password never a parameter
    deployments = build_deployments(deployment_parameters(args), settings)
    asyncio.run(_register(deployments))
    print(
        f"replan serve: {len(deployments)} deployments on {api}"
        + (" (temporary API, stops with this process)" if temporary else "")
        + f"; nightly at '{settings.nightly_cron}' {settings.timezone}, watch-prices at "
        f"'{settings.watch_cron}', task runner {settings.task_runner}",
        flush=True,
    )
    serve(*deployments, limit=args.limit)
    return EXIT_OK
