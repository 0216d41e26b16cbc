"""`replan run`: the nightly flow once, here and now, with a one-screen summary."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run the nightly re-planning flow once")
    parser.add_argument("--inventory", default="config/inventory.yaml")
    parser.add_argument(
        "--source",
        action="append",
        dest="sources",
        help="price source, tried in order (repeatable; default snapshot)",
    )
    parser.add_argument("--from", dest="location", help="base URL or path for the source")
    parser.add_argument("--model", action="append", dest="models", help="default: every model")
    parser.add_argument("--state", dest="state_url", help="state store URL (default SQLite file)")
    parser.add_argument("--reports", dest="reports_dir", default="reports")
    parser.add_argument("--threshold", type=float, default=0.02, help="switch threshold (0.02)")
    parser.add_argument(
        "--price-mode",
        choices=("both", "spot", "on-demand"),
        default="both",
        help="both: a pool per market, spot and on-demand (default); or one market",
    )
    parser.add_argument(
        "--max-price-age-days",
        type=float,
        help="freshness limit for prices (default: 7 for live sources, none for the snapshot)",
    )
    parser.add_argument(
        "--fallback-max-age-hours",
        type=float,
        default=48.0,
        help="when every source fails, use saved prices at most this old (48)",
    )
    parser.add_argument("--dry-run", action="store_true", help="report, but publish nothing")
    parser.set_defaults(func=run)


def check_arguments(
    inventory: str | None,
    sources: list[str] | None,
    location: str | None,
    models: list[str] | None,
) -> str | None:
    """Why the flow cannot start with these arguments (one line), or None: checked in
    well under a second, before Prefect or the flow starts."""
    from tasks.inventory import InventoryError, load_inventory
    from tasks.prices import SOURCE_NAMES, get_source
    from tasks.prices.errors import SourceConfigError
    from tasks.prices.file import FileSource

    for name in sources or ["snapshot"]:
        if name not in SOURCE_NAMES:
            return f"--source {name}: unknown price source; choose from {', '.join(SOURCE_NAMES)}"
        try:
            source = get_source(name, location)
        except SourceConfigError as exc:
            return f"--source {name}: {exc.reason}"
        if isinstance(source, FileSource) and not source.path.is_file():
            return f"--from {location}: no such price file (the file source reads a price CSV)"
    if inventory is None:
        return None
    try:
        fleet = load_inventory(inventory)
    except InventoryError as exc:
        return f"--inventory {exc}"
    unknown = [m for m in models or [] if m not in fleet.models]
    if unknown:
        return (
            f"--model {', '.join(unknown)}: not in the inventory {inventory}; "
            f"its models: {', '.join(fleet.models)}"
        )
    return None


def run(args: argparse.Namespace) -> int:
    problem = check_arguments(args.inventory, args.sources, args.location, args.models)
    if problem is not None:
        print(f"replan run: {problem}", file=sys.stderr)
        return EXIT_INVALID
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.prefect_api import ApiUnavailable, ensure_api
    from flows.run_log import new_log_path, tracebacks_to_file
    from flows.state_secret import export_state_password

    log_dir = Path(args.reports_dir) / "logs"
    try:
        ensure_api(log_dir)
    except ApiUnavailable as exc:
        print(f"replan run: {exc}", file=sys.stderr)
        return EXIT_FAILED
    from flows.replan import nightly_replan
    from tasks.validation import ValidationFailed

    log_path = new_log_path(log_dir)
    try:
        with tracebacks_to_file(log_path):
            summary = nightly_replan(
                inventory=args.inventory,
                sources=args.sources,
                source_location=args.location,
                models=args.models,
                switch_threshold=args.threshold,
                dry_run=args.dry_run,
                price_mode=args.price_mode,
                max_price_age_days=args.max_price_age_days,
                fallback_max_age_hours=args.fallback_max_age_hours,
                state_url=export_state_password(args.state_url),
                reports_dir=args.reports_dir,
            )
    except ValidationFailed as exc:
        print(exc.report.render(), file=sys.stderr)
        print("replan run: invalid data: nothing solved or published", file=sys.stderr)
        return EXIT_INVALID
    except Exception as exc:  # the flow recorded the failure; say it in one line
        message = (str(exc).strip().splitlines() or [""])[0]
        print(
            f"replan run: failed: {type(exc).__name__}: {message} (traceback: {log_path})",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(render_summary(summary))
    return EXIT_OK


def render_summary(summary: dict[str, Any]) -> str:
    """One screen: prices, the fleet's decision and figures, then one line a model."""
    prices = summary["prices"]
    lines = [
        f"run {summary['run_id']}: {summary['status']}"
        + (" (dry run)" if summary["dry_run"] else "")
        + f"  channel: {summary['channel']}",
        f"prices: {prices['rows']} rows from {prices['source']}, fetched {prices['fetched_at']}"
        + (f"  [{prices['fallback']}]" if prices["fallback"] else ""),
    ]
    result = summary["fleet"]
    gaps = ", ".join(f"{s} {g:+.1%}" for s, g in result["gap_to_exact"].items() if g is not None)
    done = "posted" if summary["channel"] == "slack" else "published (report only)"
    action = done if result["posted"] else ("publish" if result["publish"] else "quiet")
    lines += [
        f"fleet: {result['status']}  {result['tokens_per_s']:,.0f} tokens/s  "
        f"${result['cost_per_hour']:,.2f}/h  ${result['cost_per_token'] or 0:.3e}/token  "
        f"{result['gpus']} GPUs",
        f"  {action}: {result['reason']}",
        f"  gap to exact: {gaps or '-'}",
    ]
    if result.get("resilience"):
        lines.append(f"  resilience: {result['resilience']}")
    for model, figures in summary["models"].items():
        lines.append(
            f"  {model}: {figures['tokens_per_s'] or 0:,.0f} tokens/s  "
            f"${figures['cost_per_hour'] or 0:,.2f}/h  {figures['gpus'] or 0} GPUs"
        )
    export = summary.get("export")
    if export:
        written = export["folder"] if export["written"] else f"not written: {export['error']}"
        lines.append(f"export: {written}")
    lines.append(f"report: {summary['report']}")
    return "\n".join(lines)
