"""`replan solve SCENARIO --strategy S --format {json,table}`: the contract's command."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flows.commands.render import plan_table
from solver import STRATEGIES, ScenarioError, StrategyError, load_scenario, solve
from solver.replicas import ConfigLimitExceeded

EXIT_OK = 0
EXIT_NO_ANSWER = 1
EXIT_BAD_INPUT = 2
EXIT_INFEASIBLE = 3


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("solve", help="solve a placement scenario", description=__doc__)
    parser.add_argument("scenario", help="scenario file (YAML or JSON)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="exact")
    parser.add_argument("--format", choices=("json", "table"), default="json")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario)
        plan = solve(scenario, args.strategy).to_json()
    except (ScenarioError, StrategyError, ConfigLimitExceeded) as exc:
        message = str(exc)
        if args.format == "json":
            error = {"strategy": args.strategy, "status": "error", "message": message}
            print(json.dumps({**error, "replicas": []}))
        print(f"replan solve: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(plan) if args.format == "json" else plan_table(plan))
    if plan["status"] == "infeasible":
        print(f"replan solve: infeasible: {plan.get('message', '')}", file=sys.stderr)
        return EXIT_INFEASIBLE
    if plan["status"] == "unknown":
        print(f"replan solve: {plan.get('message', '')}", file=sys.stderr)
        return EXIT_NO_ANSWER
    return EXIT_OK
