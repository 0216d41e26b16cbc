"""Solver benchmark on the real (bundled SkyPilot snapshot) prices: prints Markdown tables.

    python -m bench.solver_bench [--sizes 5,20,50,100,all] [--models llama-3.1-8b,llama-3.1-70b]
        [--max-stages 8] [--demand 20000] [--strategies exact,iterative,weighted]
        [--quick] [--out FILE.md]

Not a test: it measures and reports. See bench/README.md for the columns and the latest run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

import solver.lazy as lazy
import solver.strategies as strategies
from solver import Plan, Scenario, load_scenario, scenario_from_dict, solve
from solver.milp import PlacementMilp
from solver.replicas import ConfigLimitExceeded, search_size
from tasks.inventory import Inventory, Quota, load_inventory
from tasks.pools import build_pools, build_scenario
from tasks.prices import fetch_prices

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INVENTORY = ROOT / "config" / "inventory.yaml"
SEED_SCENARIO = ROOT / "scenarios" / "seed.yaml"
CLOUDS = ("aws", "gcp", "azure")
DEFAULT_SIZES = "5,20,50,100,all"
QUICK_SIZES = "5,20"
DEFAULT_MODELS = "llama-3.1-8b,llama-3.1-70b"
DEFAULT_STRATEGIES = "exact,iterative,weighted"
SECONDS_PER_HOUR = 3600.0
# targets of the issue
SEED_CLI_TARGET_S = 3.0
SEED_SOLVE_TARGET_S = 0.5
FLEET_EXACT_TARGET_S = 10.0
FLEET_RATIO_TARGET = 1.5
FLEET_MODEL_LAYERS = 80
FLEET_STAGES = 8
FLEET_DEMAND = 20_000.0


# --- inputs --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Options:
    sizes: tuple[str, ...]
    models: tuple[str, ...]
    strategies: tuple[str, ...]
    max_stages: int
    demand: float
    demand_cap: float
    quota: int
    price_mode: str
    seed: int
    inventory: Path
    seed_runs: int
    out: Path | None


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.solver_bench", description=__doc__)
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="pool counts, or 'all'")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="inventory model names")
    parser.add_argument("--strategies", default=DEFAULT_STRATEGIES)
    parser.add_argument("--max-stages", type=int, default=8)
    parser.add_argument("--demand", type=float, default=FLEET_DEMAND, help="tokens/s")
    parser.add_argument(
        "--demand-cap",
        type=float,
        default=0.5,
        help="cap the demand at this fraction of the subset's fluid capacity",
    )
    parser.add_argument("--quota", type=int, default=16, help="GPUs per pool, every cloud")
    parser.add_argument(
        "--price-mode", default="cheapest", choices=("spot", "on-demand", "cheapest")
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the pool sample")
    parser.add_argument("--inventory", type=Path, default=DEFAULT_INVENTORY)
    parser.add_argument("--seed-runs", type=int, default=3, help="runs of the seed CLI (0: skip)")
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} only")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else args.sizes
    return Options(
        sizes=_split(sizes),
        models=_split(args.models),
        strategies=_split(args.strategies),
        max_stages=args.max_stages,
        demand=args.demand,
        demand_cap=args.demand_cap,
        quota=args.quota,
        price_mode=args.price_mode,
        seed=args.seed,
        inventory=args.inventory,
        seed_runs=args.seed_runs,
        out=args.out,
    )


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def benchmark_inventory(inventory: Inventory, quota: int) -> Inventory:
    """The inventory's models and GPU profiles with one uniform per-pool quota per cloud."""
    quotas = tuple(Quota(cloud, quota, where=f"bench {cloud}") for cloud in CLOUDS)
    return dataclasses.replace(inventory, quotas=quotas)


def all_pools(
    prices: pd.DataFrame, inventory: Inventory, model: str, price_mode: str
) -> pd.DataFrame:
    """Every (cloud, region, GPU) pool of AWS, GCP and Azure of a GPU type the inventory knows."""
    pools = build_pools(prices, inventory, model, price_mode=price_mode).pools
    return pools[pools["cloud"].isin(CLOUDS)].sort_values("id").reset_index(drop=True)


def sample_order(pool_ids: Sequence[str], seed: int) -> list[str]:
    """A seeded permutation of the pool ids: size n is its first n, so subsets are nested."""
    order = sorted(pool_ids)
    random.Random(seed).shuffle(order)
    return order


def subset(pools: pd.DataFrame, order: Sequence[str], size: str) -> pd.DataFrame:
    count = len(order) if size == "all" else min(int(size), len(order))
    chosen = set(order[:count])
    return pools[pools["id"].isin(chosen)].reset_index(drop=True)


def fluid_capacity(pools: pd.DataFrame) -> float:
    """Tokens/s all GPUs of the subset would deliver at TP 1 with memory ignored."""
    return float((pools["available"] * pools["tokens_per_s"]).sum())


def lower_bound_formula(pools: pd.DataFrame) -> float:
    """Best $/token of any single GPU: min price_per_gpu_hour / (3600 * tokens_per_s)."""
    return float((pools["price_per_gpu_hour"] / (SECONDS_PER_HOUR * pools["tokens_per_s"])).min())


# --- one solve, with a look inside ---------------------------------------------------------


@dataclasses.dataclass
class Captured:
    """What one `solve` did inside: its model object and the time in HiGHS MILP solves."""

    milp: Any = None
    setup_seconds: float = 0.0
    milp_seconds: float = 0.0
    tie_break_seconds: float = 0.0  # MILP solves under a ratio cap (exact's tie-break)
    pricing_seconds: float = 0.0  # column searches of the on-demand model, aborted ones too
    pricing_searches: int = 0
    node_budget_hits: int = 0  # searches stopped by the node budget (ConfigLimitExceeded)


@contextmanager
def capture_models() -> Iterator[Captured]:
    """Record the model `solve` builds, time its MILP solves and column searches, by wrapping
    `solver.strategies.placement_model`, `PlacementMilp.solve` and the on-demand model's
    `fleet_configs` for the duration."""
    original_model = strategies.placement_model
    original_solve = PlacementMilp.solve
    original_enumerate = lazy.fleet_configs
    captured = Captured()

    def model_wrapper(scenario: Scenario, columns_on_demand: bool | None = None) -> Any:
        started = time.perf_counter()
        captured.milp = original_model(scenario, columns_on_demand)
        captured.setup_seconds = time.perf_counter() - started
        return captured.milp

    def solve_wrapper(self: PlacementMilp, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_solve(self, **kwargs)
        finally:
            seconds = time.perf_counter() - started
            captured.milp_seconds += seconds
            if kwargs.get("max_ratio") is not None:
                captured.tie_break_seconds += seconds

    def enumerate_wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        captured.pricing_searches += 1
        try:
            return original_enumerate(*args, **kwargs)
        except ConfigLimitExceeded:
            captured.node_budget_hits += 1
            raise
        finally:
            captured.pricing_seconds += time.perf_counter() - started

    strategies.placement_model = model_wrapper
    PlacementMilp.solve = solve_wrapper  # type: ignore[method-assign]
    lazy.fleet_configs = enumerate_wrapper
    try:
        yield captured
    finally:
        strategies.placement_model = original_model
        PlacementMilp.solve = original_solve  # type: ignore[method-assign]
        lazy.fleet_configs = original_enumerate


@dataclasses.dataclass
class Run:
    strategy: str
    wall_seconds: float
    status: str
    cost_per_token: float | None = None
    tokens_per_s: float = 0.0
    gpus: int = 0
    iterations: int = 0
    milp_solves: int | None = None
    tie_break: str = ""
    lower_bound: float | None = None
    configurations: int | None = None
    constraints: int | None = None
    setup_seconds: float | None = None
    pyomo_build_seconds: float | None = None
    on_demand: bool = False
    lp_solves: int | None = None
    pricing_seconds: float | None = None
    solver_pricing_seconds: float | None = None
    node_budget_hits: int | None = None
    milp_seconds: float | None = None
    tie_break_seconds: float | None = None
    message: str = ""


def run_strategy(scenario: Scenario, strategy: str) -> Run:
    """Wall clock of `solve`, the plan's figures and the model's size."""
    with capture_models() as captured:
        started = time.perf_counter()
        try:
            plan = solve(scenario, strategy)
        except Exception as exc:  # a benchmark reports errors, it does not stop on them
            return Run(strategy, time.perf_counter() - started, "error", message=repr(exc))
        wall = time.perf_counter() - started
    run = _run_from_plan(plan, wall)
    if captured.milp is not None:
        _add_model_figures(run, captured, scenario)
    return run


def _run_from_plan(plan: Plan, wall: float) -> Run:
    data = plan.to_json()
    return Run(
        strategy=plan.strategy,
        wall_seconds=wall,
        status=plan.status,
        cost_per_token=plan.cost_per_token,
        tokens_per_s=plan.tokens_per_s,
        gpus=plan.gpus,
        iterations=plan.iterations,
        milp_solves=data.get("milp_solves"),
        tie_break=str(data.get("tie_break", "")),
        lower_bound=data.get("lower_bound_cost_per_token"),
        configurations=data.get("configurations"),
        pyomo_build_seconds=data.get("build_seconds"),
        message=plan.message,
    )


def _add_model_figures(run: Run, captured: Captured, scenario: Scenario) -> None:
    milp = captured.milp
    run.setup_seconds = captured.setup_seconds
    run.milp_seconds = captured.milp_seconds
    run.tie_break_seconds = captured.tie_break_seconds
    run.on_demand = hasattr(milp, "lp_solves")
    if run.on_demand:
        run.lp_solves = milp.lp_solves
        run.pricing_seconds = captured.pricing_seconds
        run.solver_pricing_seconds = milp.pricing_seconds
        run.node_budget_hits = captured.node_budget_hits
    run.configurations = len(milp.configs)
    model = milp.settled().model if run.on_demand and milp.configs else milp.model
    if model is not None:
        run.constraints = count_constraints(model, scenario)


def count_constraints(model: Any, scenario: Scenario) -> int:
    """Rows of the main solve: one availability row per pool used, demand, budget, one replica."""
    options = scenario.solver
    rows = len(model.POOLS) + 1
    rows += 1 if options.demand_tokens_per_s > 0 else 0
    rows += 1 if options.budget_per_hour is not None else 0
    return rows


# --- one scenario --------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    model: str
    layers: int
    size: str
    pools: int
    regions: int
    gpus: int
    demand: float
    demand_capped: bool
    search_space: int
    lower_bound: float
    runs: dict[str, Run]


def make_case_scenario(
    pools: pd.DataFrame, inventory: Inventory, model: str, options: Options
) -> tuple[Scenario, float, bool]:
    cap = options.demand_cap * fluid_capacity(pools)
    demand = min(options.demand, cap)
    document = build_scenario(
        pools,
        inventory.models[model],
        {"max_stages": options.max_stages, "demand_tokens_per_s": round(demand, 3)},
    )
    return (
        scenario_from_dict(document, source=f"bench {model} {len(pools)} pools"),
        demand,
        (demand < options.demand),
    )


def run_case(
    pools: pd.DataFrame,
    inventory: Inventory,
    model: str,
    size: str,
    options: Options,
    log: Callable[[str], None],
) -> Case:
    scenario, demand, capped = make_case_scenario(pools, inventory, model, options)
    case = Case(
        model=model,
        layers=scenario.model.num_layers,
        size=size,
        pools=len(pools),
        regions=pools[["cloud", "region"]].drop_duplicates().shape[0],
        gpus=int(pools["available"].sum()),
        demand=demand,
        demand_capped=capped,
        search_space=search_size(scenario),
        lower_bound=lower_bound_formula(pools),
        runs={},
    )
    for strategy in options.strategies:
        run = run_strategy(scenario, strategy)
        case.runs[strategy] = run
        log(
            f"[{model} {size}: {case.pools} pools] {strategy}: {run.wall_seconds:.2f} s "
            f"{run.status} {run.message}".rstrip()
        )
    return case


# --- the seed scenario ---------------------------------------------------------------------


@dataclasses.dataclass
class SeedTiming:
    cli_seconds: list[float]
    cli_solve_seconds: list[float]
    inprocess_solve_seconds: list[float]
    status: str


def replan_command() -> list[str]:
    script = Path(sys.executable).parent / "replan"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "flows.cli"]


def time_seed(runs: int) -> SeedTiming:
    """`replan solve scenarios/seed.yaml --strategy exact` as a user runs it, and solve alone."""
    command = [*replan_command(), "solve", str(SEED_SCENARIO), "--strategy", "exact"]
    walls, solves, status = [], [], ""
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        walls.append(time.perf_counter() - started)
        if done.returncode != 0:
            status = f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
            continue
        result = json.loads(done.stdout)
        solves.append(float(result["solve_seconds"]))
        status = str(result["status"])
    scenario = load_scenario(SEED_SCENARIO)
    inprocess = []
    for _ in range(max(runs, 1)):
        started = time.perf_counter()
        solve(scenario, "exact")
        inprocess.append(time.perf_counter() - started)
    return SeedTiming(walls, solves, inprocess, status)


# --- tables --------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _per_mtok(value: float | None) -> str:
    return "—" if value is None else f"{value * 1e6:.6f}"


def _gap(value: float | None, reference: float | None) -> str:
    if value is None or reference is None or reference <= 0:
        return "—"
    return f"{100 * (value - reference) / reference:+.4f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def scenarios_table(cases: Sequence[Case]) -> str:
    header = [
        "model (L)",
        "size",
        "pools",
        "regions",
        "GPUs",
        "demand tok/s",
        "search space (multisets)",
        "listing",
        "LB $/Mtok",
    ]
    rows = []
    for case in cases:
        exact = case.runs.get("exact")
        listing = "—" if exact is None else ("on demand" if exact.on_demand else "full")
        demand = f"{case.demand:,.0f}" + (" (capped)" if case.demand_capped else "")
        rows.append(
            [
                f"{case.model} ({case.layers})",
                case.size,
                str(case.pools),
                str(case.regions),
                str(case.gpus),
                demand,
                f"{case.search_space:,}",
                listing,
                _per_mtok(case.lower_bound),
            ]
        )
    return markdown_table(header, rows)


def model_table(cases: Sequence[Case], strategy: str) -> str:
    header = [
        "model",
        "size",
        "status",
        "variables (columns)",
        "constraints",
        "setup s",
        "pyomo build s",
        "pricing s (solver's own)",
        "node-budget hits",
        "LP solves",
        "MILP s",
        "tie-break MILP s",
        "solve s",
        "Dinkelbach/loop iterations",
        "milp_solves",
        "tie_break",
    ]
    rows = []
    for case in cases:
        run = case.runs.get(strategy)
        if run is None:
            continue
        rows.append(
            [
                case.model,
                case.size,
                run.status,
                _count(run.configurations),
                _count(run.constraints),
                _num(run.setup_seconds),
                _num(run.pyomo_build_seconds),
                _pricing(run),
                _count(run.node_budget_hits),
                _count(run.lp_solves),
                _num(run.milp_seconds),
                _num(run.tie_break_seconds),
                _num(run.wall_seconds),
                str(run.iterations),
                _count(run.milp_solves),
                run.tie_break or "—",
            ]
        )
    return markdown_table(header, rows)


def _pricing(run: Run) -> str:
    if run.pricing_seconds is None:
        return "—"
    return f"{run.pricing_seconds:.2f} ({_num(run.solver_pricing_seconds)})"


def _count(value: int | None) -> str:
    return "—" if value is None else str(value)


def comparison_table(cases: Sequence[Case], strategies_run: Sequence[str]) -> str:
    others = [s for s in strategies_run if s != "exact"]
    header = ["model", "size", "exact $/Mtok", "exact vs LB %"]
    for name in others:
        header += [f"{name} $/Mtok", f"{name} gap %"]
    header += ["exact s"] + [f"{name} s" for name in others]
    if "iterative" in others:
        header.append("exact/iterative time")
    rows = []
    for case in cases:
        exact = case.runs.get("exact")
        exact_cpt = exact.cost_per_token if exact else None
        row = [case.model, case.size, _per_mtok(exact_cpt), _gap(exact_cpt, case.lower_bound)]
        for name in others:
            run = case.runs.get(name)
            cpt = run.cost_per_token if run else None
            row += [_per_mtok(cpt), _gap(cpt, exact_cpt)]
        row.append(_num(exact.wall_seconds) if exact else "—")
        row += [_num(case.runs[name].wall_seconds) if name in case.runs else "—" for name in others]
        if "iterative" in others:
            row.append(_ratio(exact, case.runs.get("iterative")))
        rows.append(row)
    return markdown_table(header, rows)


def _ratio(exact: Run | None, iterative: Run | None) -> str:
    if exact is None or iterative is None or iterative.wall_seconds <= 0:
        return "—"
    return f"{exact.wall_seconds / iterative.wall_seconds:.2f}"


def seed_table(seed: SeedTiming) -> str:
    header = ["measure", "runs (s)", "best (s)", "target (s)"]
    rows = [
        _seed_row(
            "`replan solve scenarios/seed.yaml --strategy exact` wall",
            seed.cli_seconds,
            SEED_CLI_TARGET_S,
        ),
        _seed_row(
            "solve_seconds printed by that command", seed.cli_solve_seconds, SEED_SOLVE_TARGET_S
        ),
        _seed_row(
            "in-process `solve(seed, 'exact')` wall",
            seed.inprocess_solve_seconds,
            SEED_SOLVE_TARGET_S,
        ),
    ]
    return markdown_table(header, rows)


def _seed_row(label: str, values: Sequence[float], target: float) -> list[str]:
    runs = ", ".join(f"{v:.3f}" for v in values) or "—"
    best = f"{min(values):.3f}" if values else "—"
    return [label, runs, best, f"< {target:g}"]


# --- verdicts ------------------------------------------------------------------------------


def verdicts(cases: Sequence[Case], seed: SeedTiming | None, options: Options) -> list[str]:
    lines = []
    if seed is not None:
        lines.append(
            _below("seed CLI whole process (best of runs)", seed.cli_seconds, SEED_CLI_TARGET_S)
        )
        lines.append(
            _below(
                "seed solve (solve_seconds, best of runs)",
                seed.cli_solve_seconds,
                SEED_SOLVE_TARGET_S,
            )
        )
    else:
        lines.append("- seed targets: not run (--seed-runs 0)")
    fleet = _fleet_case(cases, options)
    if fleet is None:
        lines.append(
            f"- fleet targets: not run (need size all, a {FLEET_MODEL_LAYERS}-layer model, "
            f"max_stages {FLEET_STAGES}, demand {FLEET_DEMAND:,.0f} uncapped, exact and iterative)"
        )
        return lines
    exact, iterative = fleet.runs["exact"], fleet.runs["iterative"]
    proven = exact.status == "optimal"
    fast = exact.wall_seconds < FLEET_EXACT_TARGET_S
    lines.append(
        f"- fleet ({fleet.pools} pools, {fleet.model}, {options.max_stages} stages, "
        f"{fleet.demand:,.0f} tok/s): exact proven optimal in < {FLEET_EXACT_TARGET_S:g} s: "
        f"**{'met' if proven and fast else 'NOT met'}** "
        f"(status {exact.status}, {exact.wall_seconds:.2f} s)"
    )
    ratio = exact.wall_seconds / iterative.wall_seconds if iterative.wall_seconds > 0 else math.inf
    lines.append(
        f"- fleet: exact <= {FLEET_RATIO_TARGET:g} x iterative: "
        f"**{'met' if ratio <= FLEET_RATIO_TARGET else 'NOT met'}** "
        f"({exact.wall_seconds:.2f} s / {iterative.wall_seconds:.2f} s = {ratio:.2f})"
    )
    return lines


def _below(label: str, values: Sequence[float], target: float) -> str:
    if not values:
        return f"- {label} < {target:g} s: **NOT met** (no successful run)"
    best = min(values)
    verdict = "met" if best < target else "NOT met"
    return f"- {label} < {target:g} s: **{verdict}** ({best:.3f} s)"


def _fleet_case(cases: Sequence[Case], options: Options) -> Case | None:
    for case in cases:
        if (
            case.size == "all"
            and case.layers == FLEET_MODEL_LAYERS
            and options.max_stages == FLEET_STAGES
            and not case.demand_capped
            and case.demand == FLEET_DEMAND
            and {"exact", "iterative"} <= set(case.runs)
        ):
            return case
    return None


# --- report --------------------------------------------------------------------------------


def report(
    cases: Sequence[Case], seed: SeedTiming | None, options: Options, notes: Sequence[str]
) -> str:
    parts = [
        "# Solver benchmark",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"CPUs: {_cpus()}",
        "",
        *notes,
        "",
        "## Scenarios",
        "",
        scenarios_table(cases),
    ]
    for strategy in options.strategies:
        parts += ["", f"## Model and solve: {strategy}", "", model_table(cases, strategy)]
    parts += [
        "",
        "## $/token against exact (gap % = (strategy - exact) / exact)",
        "",
        comparison_table(cases, options.strategies),
    ]
    if seed is not None:
        parts += ["", "## Seed scenario", "", seed_table(seed)]
    parts += ["", "## Verdicts", "", *verdicts(cases, seed, options), ""]
    return "\n".join(parts)


def _cpus() -> str:
    return str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())


def setup_notes(options: Options, total_pools: dict[str, int]) -> list[str]:
    counts = ", ".join(f"{model}: {count}" for model, count in total_pools.items())
    return [
        f"- Prices: bundled SkyPilot snapshot (`fetch_prices('snapshot')`), price mode "
        f"`{options.price_mode}` (per instance row the lower of spot and on-demand: spot where "
        "present, else on-demand; this mode gives the most pools).",
        f"- Pools: every (cloud, region, GPU) offer of AWS, GCP and Azure of a GPU type in "
        f"`{_relative(options.inventory)}`, each with a uniform quota of {options.quota} GPUs "
        f"(benchmark inventory, not the team's quotas). 'all' = {counts} pools.",
        f"- Sizes: nested seeded sample (seed {options.seed}): the pool ids sorted, shuffled "
        "once, size n = the first n.",
        f"- Solver options: max_stages {options.max_stages}, demand "
        f"min({options.demand:,.0f}, {options.demand_cap:.0%} x sum of available x "
        "tokens_per_s) tokens/s (capped marks a smaller subset), other options the spec's "
        "defaults (no budget, no target_cost_per_token, w 0.95, max_iterations 5, no time "
        "limit). One run per configuration; wall clock of `solve` (model build included).",
        "- LB = best $/token of any single GPU, min price_per_gpu_hour / (3600 x tokens_per_s).",
    ]


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    prices = fetch_prices("snapshot")
    inventory = benchmark_inventory(load_inventory(options.inventory), options.quota)
    cases: list[Case] = []
    total_pools: dict[str, int] = {}
    for model in options.models:
        pools = all_pools(prices, inventory, model, options.price_mode)
        total_pools[model] = len(pools)
        order = sample_order(list(pools["id"]), options.seed)
        for size in options.sizes:
            cases.append(run_case(subset(pools, order, size), inventory, model, size, options, log))
    seed = None
    if options.seed_runs > 0:
        seed = time_seed(options.seed_runs)
        log(f"[seed] CLI {min(seed.cli_seconds):.2f} s")
    text = report(cases, seed, options, setup_notes(options, total_pools))
    print(text)
    if options.out is not None:
        options.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
