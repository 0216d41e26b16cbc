"""`replan compare SCENARIO`: every strategy side by side, with its gap to exact."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flows.commands.render import (
    describe_plan,
    format_cost_per_token,
    format_table,
    is_fleet_plan,
    model_rows,
)
from solver import STRATEGIES, Scenario, ScenarioError, load_scenario, solve
from solver.diff import gap_to_exact

EXIT_BAD_INPUT = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare", help="run every strategy on a scenario", description=__doc__
    )
    parser.add_argument("scenario", help="scenario file (YAML or JSON)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def applicable_strategies(scenario: Scenario) -> list[str]:
    """Strategies the scenario has inputs for (min-cost needs a demand, max-throughput a budget)."""
    skip = set()
    if scenario.demand_tokens_per_s <= 0:
        skip.add("min-cost")
    if scenario.solver.budget_per_hour is None:
        skip.add("max-throughput")
    return [s for s in STRATEGIES if s not in skip]


def compare(scenario: Scenario) -> list[dict[str, Any]]:
    plans = [solve(scenario, strategy).to_json() for strategy in applicable_strategies(scenario)]
    exact = plans[0]
    for plan in plans:
        plan["gap_to_exact"] = gap_to_exact(plan, exact)
    return plans


def run(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"replan compare: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    plans = compare(scenario)
    if args.format == "json":
        print(json.dumps(plans))
        return 0
    rows = []
    for plan in plans:
        gap = plan["gap_to_exact"]
        rows.append(
            (
                plan["strategy"],
                plan["status"],
                describe_plan(plan),
                f"{plan['tokens_per_s']:,.0f}",
                f"${plan['cost_per_hour']:,.2f}",
                format_cost_per_token(plan["cost_per_token"]),
                "-" if gap is None else f"{gap:+.1%}",
            )
        )
        if is_fleet_plan(plan):  # one line per model under the strategy's fleet line
            for name, tokens, cost, per_token, _ in model_rows(plan):
                rows.append(("", "", f"  {name}", tokens, cost, per_token, ""))
    headers = ("method", "status", "solution", "tokens/s", "cost/h", "$/token", "vs exact")
    print(format_table(headers, rows))
    return 0
