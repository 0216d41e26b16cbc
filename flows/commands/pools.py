"""`replan pools`: validate prices and inventory, join them into pools, write a scenario.

With `--model`, one model's scenario (price mode `spot` unless given), as before the fleet
model; without it, the whole fleet (every model, quotas as the inventory states them, price
mode `both` unless given) per `../shared/spec/fleet-model.md`."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from flows.commands.validate import add_validation_arguments

EXIT_OK = 0
EXIT_INVALID = 2
PRICE_MODES = ("spot", "on-demand", "cheapest", "both")
MODEL_PRICE_MODE = "spot"  # --model: the default from before the fleet model
FLEET_PRICE_MODE = "both"  # the whole fleet: one pool per offer and market


def register(subparsers: Any) -> None:
    """Add the `pools` subcommand."""
    parser = subparsers.add_parser(
        "pools",
        help="build the scenario's GPU pools from prices and the inventory",
        description="Validate a price CSV and an inventory, build one pool per (cloud, region, "
        "gpu) offer (and market, in price mode both), validate the pools and write a scenario "
        "that `replan solve` reads: the whole fleet (every model, per-model throughput maps, "
        "the inventory's quotas), or one model with --model. Nothing is written when a "
        "validation fails (exit 2, report on stderr).",
    )
    parser.add_argument("--prices", metavar="FILE", required=True, help="canonical price CSV")
    parser.add_argument("--inventory", metavar="FILE", required=True, help="inventory YAML")
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="one model's scenario (today's format); without it, the whole fleet",
    )
    parser.add_argument("--out", metavar="SCENARIO", required=True, help="scenario YAML to write")
    parser.add_argument(
        "--price-mode",
        choices=PRICE_MODES,
        default=None,
        help=f"which price makes a pool's price_per_gpu_hour; both = one pool per market "
        f"(default: {MODEL_PRICE_MODE} with --model, {FLEET_PRICE_MODE} for the fleet)",
    )
    add_validation_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Prices -> validate -> inventory -> validate -> pools -> validate -> scenario file."""
    from tasks.pools import PoolsError, build_pools, build_scenario, write_scenario
    from tasks.validation import validate_pools

    if args.model is None:
        return run_fleet(args)
    price_mode = args.price_mode or MODEL_PRICE_MODE
    checked = _checked_inputs(args)
    if checked is None:
        return EXIT_INVALID
    prices, inventory, reports = checked
    try:
        build = build_pools(prices, inventory, args.model, price_mode=price_mode)
    except PoolsError as exc:
        print(f"replan pools: {exc}", file=sys.stderr)
        return EXIT_INVALID
    pools_report = validate_pools(build.pools, args.model)
    reports.append(pools_report)
    if not pools_report.ok:
        _print_reports(reports, build.notes)
        return EXIT_INVALID
    scenario = build_scenario(build.pools, inventory.models[args.model])
    header = "\n".join(
        [
            f"Written by `replan pools` at {datetime.now(UTC).isoformat(timespec='seconds')}.",
            f"prices: {args.prices} (fetched_at {prices['fetched_at'].min().isoformat()} .. "
            f"{prices['fetched_at'].max().isoformat()}); price mode: {price_mode}",
            f"inventory: {args.inventory}; model: {args.model}",
            "solver: {} = the placement spec's defaults.",
        ]
    )
    write_scenario(scenario, args.out, header)
    _print_reports([r for r in reports if r.warnings], build.notes)
    print(f"wrote {args.out}: {len(scenario['pools'])} pools for {args.model} ({price_mode})")
    return EXIT_OK


def _checked_inputs(args: argparse.Namespace) -> tuple[Any, Any, list[Any]] | None:
    """The price table and inventory, with their validation reports; None (reports printed)
    when either is invalid."""
    from tasks.validation import check_inventory_file, check_price_file

    prices, price_report = check_price_file(
        args.prices,
        max_age_days=args.max_age_days,
        spot_tolerance=args.spot_tolerance,
        now=args.now,
    )
    inventory, inventory_report = check_inventory_file(args.inventory)
    reports = [price_report, inventory_report]
    if prices is None or inventory is None or not all(r.ok for r in reports):
        _print_reports(reports)
        return None
    return prices, inventory, reports


def run_fleet(args: argparse.Namespace) -> int:
    """Prices -> validate -> inventory -> validate -> fleet pools -> validate -> fleet file."""
    from tasks.pools import PoolsError, build_fleet, fleet_document, write_scenario
    from tasks.validation import validate_fleet_pools

    price_mode = args.price_mode or FLEET_PRICE_MODE
    checked = _checked_inputs(args)
    if checked is None:
        return EXIT_INVALID
    prices, inventory, reports = checked
    try:
        build = build_fleet(prices, inventory, price_mode=price_mode)
    except PoolsError as exc:
        print(f"replan pools: {exc}", file=sys.stderr)
        return EXIT_INVALID
    pools_report = validate_fleet_pools(
        build.per_model, subject=f"fleet pools of {args.inventory} and {args.prices}"
    )
    reports.append(pools_report)
    if not pools_report.ok:
        _print_reports(reports, build.notes)
        return EXIT_INVALID
    try:
        document = fleet_document(build, inventory)
    except PoolsError as exc:
        print(f"replan pools: {args.inventory}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    names = ", ".join(model.name for model in build.models)
    header = "\n".join(
        [
            f"Written by `replan pools` at {datetime.now(UTC).isoformat(timespec='seconds')}.",
            f"prices: {args.prices} (fetched_at {prices['fetched_at'].min().isoformat()} .. "
            f"{prices['fetched_at'].max().isoformat()}); price mode: {price_mode}",
            f"inventory: {args.inventory}; fleet: {names}",
            "A fleet scenario (fleet-model.md): quotas cap the GPUs summed over their pools.",
        ]
    )
    write_scenario(document, args.out, header)
    _print_reports([r for r in reports if r.warnings], build.notes)
    print(
        f"wrote {args.out}: {len(document['pools'])} pools, {len(document.get('quotas', []))} "
        f"shared quotas for {len(build.models)} models ({price_mode})"
    )
    return EXIT_OK


def _print_reports(reports: list[Any], notes: tuple[str, ...] = ()) -> None:
    for report in reports:
        print(report.render(), file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
