"""`replan prices`: fetch a price table, optionally save it, and summarise it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pandas as pd

from tasks.prices import DEFAULT_SOURCE, SOURCE_NAMES, get_source
from tasks.prices.errors import MalformedResponse, PriceSourceError, SourceConfigError
from tasks.prices.table import write_price_csv

EXIT_OK = 0
EXIT_SOURCE_FAILURE = 1
EXIT_BAD_INPUT = 2


def register(subparsers: Any) -> None:
    """Add the `prices` subcommand."""
    parser = subparsers.add_parser(
        "prices",
        help="fetch GPU prices from one source and summarise them",
        description="Fetch GPU prices into the canonical price table, print counts per cloud "
        "and the cheapest spot price per GPU, and optionally write the table as CSV.",
    )
    parser.add_argument(
        "--source",
        choices=SOURCE_NAMES,
        default=DEFAULT_SOURCE,
        help="price source (default: %(default)s)",
    )
    parser.add_argument(
        "--from",
        dest="location",
        metavar="LOCATION",
        help="base URL for a live source (a mirror or test server), or the CSV path for 'file'",
    )
    parser.add_argument("--out", metavar="FILE", help="write the canonical price CSV here (atomic)")
    parser.set_defaults(func=run)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cheapest_spot_per_gpu(table: pd.DataFrame) -> pd.DataFrame:
    """One row per GPU: the lowest spot USD per GPU-hour and where it is offered."""
    spot = table[table["spot_price_per_hour"].notna()].copy()
    spot["spot_price_per_gpu_hour"] = spot["spot_price_per_hour"] / spot["gpus_per_instance"]
    best = spot.sort_values(["spot_price_per_gpu_hour", "cloud", "region"], kind="stable")
    best = best.drop_duplicates("gpu").sort_values("gpu", kind="stable")
    return best.loc[
        :, ["gpu", "spot_price_per_gpu_hour", "cloud", "region", "zone", "instance_type"]
    ].reset_index(drop=True)


def counts_per_cloud(table: pd.DataFrame) -> pd.DataFrame:
    """Rows, rows with a spot price and distinct GPU types per cloud."""
    grouped = table.groupby("cloud", sort=True)
    return pd.DataFrame(
        {
            "rows": grouped.size(),
            "with_spot": grouped["spot_price_per_hour"].count(),
            "gpu_types": grouped["gpu"].nunique(),
        }
    ).reset_index()


def format_summary(table: pd.DataFrame) -> str:
    """The text printed by `replan prices`."""
    lines = [f"{len(table)} price rows from {', '.join(sorted(table['source'].unique()))}", ""]
    lines.append(counts_per_cloud(table).to_string(index=False))
    cheapest = cheapest_spot_per_gpu(table)
    lines.append("")
    if cheapest.empty:
        lines.append("no spot prices")
    else:
        lines.append("cheapest spot price per GPU (USD per GPU-hour):")
        lines.append(
            cheapest.to_string(index=False, formatters={"spot_price_per_gpu_hour": "{:.4f}".format})
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Fetch, write and summarise; 0 ok, 2 bad input/data, 1 source failure."""
    options: dict[str, Any] = {"progress": _progress}
    try:
        table = get_source(args.source, args.location, **options).fetch()
    except (SourceConfigError, MalformedResponse) as exc:
        print(f"replan prices: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except PriceSourceError as exc:
        print(f"replan prices: {exc}", file=sys.stderr)
        return EXIT_SOURCE_FAILURE
    if table.empty:
        print(f"replan prices: {args.source}: no GPU price rows", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.out:
        try:
            path = write_price_csv(table, args.out)
        except OSError as exc:
            print(f"replan prices: cannot write {args.out}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"wrote {len(table)} rows to {path}", file=sys.stderr)
    print(format_summary(table))
    return EXIT_OK
