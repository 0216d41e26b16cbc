"""The `replan` command line: one subcommand per module in `flows.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes `register(subparsers)` and sets `func(args) -> int` on its parser.
COMMAND_MODULES = (
    "flows.commands.solve",
    "flows.commands.compare",
    "flows.commands.prices",
    "flows.commands.validate",
    "flows.commands.pools",
    "flows.commands.run",
    "flows.commands.history",
    "flows.commands.serve",
    "flows.commands.doctor",
    "flows.commands.export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replan", description="Re-plan an LLM serving fleet onto the cheapest GPUs."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a command still being built
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
