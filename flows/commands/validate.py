"""`replan validate`: check a price CSV and/or an inventory YAML; exit 2 with a short report."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

EXIT_OK = 0
EXIT_INVALID = 2


def register(subparsers: Any) -> None:
    """Add the `validate` subcommand."""
    parser = subparsers.add_parser(
        "validate",
        help="validate a price table and/or an inventory file",
        description="Run the Great Expectations suites in expectations/ on a canonical price "
        "CSV and/or an inventory YAML. Prints a short report; exit 0 when clean (warnings "
        "allowed), 2 when a critical expectation fails or a file cannot be read.",
    )
    add_validation_arguments(parser)
    parser.add_argument("--prices", metavar="FILE", help="canonical price CSV")
    parser.add_argument("--inventory", metavar="FILE", help="inventory YAML")
    parser.set_defaults(func=run)


def add_validation_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `validate` and `pools`: freshness, spot tolerance, the clock."""
    parser.add_argument(
        "--max-age-days",
        type=float,
        default=None,
        help="fail prices whose fetched_at is older than this many days (default: 7; the "
        "bundled snapshot is dated: its age is stated in a warning, as `replan run` does)",
    )
    parser.add_argument(
        "--spot-tolerance",
        type=float,
        default=0.05,
        help="warn when spot exceeds on-demand by more than this fraction (default: %(default)s)",
    )
    parser.add_argument(
        "--now",
        type=_utc_time,
        default=None,
        metavar="ISO_TIME",
        help="the time freshness is measured from (default: the current time)",
    )


def _utc_time(text: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (a time without offset is taken as UTC)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def run(args: argparse.Namespace) -> int:
    """Validate the given files; print every report; 0 when all are clean, else 2."""
    from tasks.validation import check_inventory_file, check_price_file

    if not args.prices and not args.inventory:
        print("replan validate: give --prices FILE and/or --inventory FILE")
        return EXIT_INVALID
    reports = []
    if args.prices:
        _, report = check_price_file(
            args.prices,
            max_age_days=args.max_age_days,
            spot_tolerance=args.spot_tolerance,
            now=args.now,
        )
        reports.append(report)
    if args.inventory:
        _, report = check_inventory_file(args.inventory)
        reports.append(report)
    print("\n".join(report.render() for report in reports))
    return EXIT_OK if all(report.ok for report in reports) else EXIT_INVALID
