"""Heavy-demand benchmark (issue 12): `replan solve --strategy exact` as a whole process.

    python -m bench.heavy_bench [--quick] [--large] [--time-limit 120] [--out FILE.md]

Not a test: it measures and reports (bench/README.md, "Heavy-demand bench"). Each row builds a
scenario with `bench.heavy_scenarios` (bundled prices, a few GPUs per pool, demand a share of
the fleet's fluid capacity, `solver.time_limit_s` set), writes it to a temporary JSON file and
times the whole `replan solve` subprocess: start-up, listing, pricing, every MILP, the proof,
the tie-break. The promise holds when the wall time is within the limit plus 10 %.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.heavy_scenarios import base_pools, grow, heavy_scenario

ROOT = Path(__file__).resolve().parent.parent
PROMISE_SLACK = 1.10  # an answer within the limit plus 10 %
KILL_FACTOR = 3.0  # a run still going at 3 x its limit (+ 30 s) is killed and reported
KILL_EXTRA_S = 30.0


@dataclass(frozen=True)
class Row:
    """One scenario of the table."""

    pools: int
    layers: int
    max_stages: int
    demand_share: float


# issue 12's rows: 2 % and 25 % of capacity at 80 layers, S = 8; then 126 layers and S = 16
ISSUE_ROWS = (
    *(Row(n, 80, 8, share) for n in (50, 100, 237) for share in (0.02, 0.25)),
    *(Row(n, 126, 8, 0.25) for n in (100, 237)),
    *(Row(n, 80, 16, 0.25) for n in (100, 237)),
)
LARGE_ROWS = (Row(474, 80, 8, 0.02), Row(474, 80, 8, 0.25))
QUICK_ROWS = (Row(25, 80, 8, 0.25), Row(50, 80, 8, 0.02), Row(50, 80, 8, 0.25))

HEADER = (
    "pools",
    "layers",
    "S",
    "demand",
    "columns",
    "MILP solves",
    "wall s",
    "status",
    "gap",
    "$/Mtok",
    "limit s",
    "promise",
)


def run_row(row: Row, time_limit_s: float, workdir: Path) -> list[str]:
    """Solve one row in a `replan solve` subprocess; its table cells."""
    pools = grow(base_pools(), row.pools)
    doc = heavy_scenario(
        pools,
        num_layers=row.layers,
        max_stages=row.max_stages,
        demand_share=row.demand_share,
        time_limit_s=time_limit_s,
    )
    path = workdir / f"heavy-{row.pools}-{row.layers}-{row.max_stages}-{row.demand_share}.json"
    path.write_text(json.dumps(doc))
    command = [sys.executable, "-m", "flows.cli", "solve", str(path), "--strategy", "exact"]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=KILL_FACTOR * time_limit_s + KILL_EXTRA_S,
        )
        output = done.stdout
    except subprocess.TimeoutExpired:
        output = ""
    wall_s = time.perf_counter() - started
    plan = _plan(output)
    held = wall_s <= PROMISE_SLACK * time_limit_s and plan.get("status") in ("optimal", "feasible")
    gap = plan.get("mip_gap")
    cost_per_token = plan.get("cost_per_token")
    return [
        str(row.pools),
        str(row.layers),
        str(row.max_stages),
        f"{100 * row.demand_share:g} %",
        str(plan.get("configurations", "-")),
        str(plan.get("milp_solves", "-")),
        f"{wall_s:.1f}",
        plan.get("status", "killed" if not output else "no JSON"),
        "-" if gap is None else f"{100 * gap:.3g} %",
        "-" if cost_per_token is None else f"{1e6 * cost_per_token:.4f}",
        f"{time_limit_s:g}",
        "yes" if held else "**no**",
    ]


def _plan(output: str) -> dict:
    """The plan JSON of `replan solve` (last line of its output), or {} if none."""
    for line in reversed(output.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return {}


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def chosen_rows(args: argparse.Namespace) -> list[Row]:
    """The rows to run: --quick, the issue's (plus --large), or a --pools x ... cross product."""
    if args.pools:
        return [
            Row(n, layers, stages, share)
            for n in args.pools
            for layers in args.layers
            for stages in args.max_stages
            for share in args.shares
        ]
    if args.quick:
        return list(QUICK_ROWS)
    return [*ISSUE_ROWS, *(LARGE_ROWS if args.large else ())]


def _numbers(kind: Callable[[str], float]) -> Callable[[str], list]:
    return lambda text: [kind(part) for part in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="25 and 50 pools, 80 layers only")
    parser.add_argument("--large", action="store_true", help="add the 474-pool rows")
    parser.add_argument("--time-limit", type=float, default=120.0, help="time_limit_s per row")
    parser.add_argument("--pools", type=_numbers(int), help="custom rows: pool counts")
    parser.add_argument("--layers", type=_numbers(int), default=[80], help="with --pools")
    parser.add_argument("--max-stages", type=_numbers(int), default=[8], help="with --pools")
    parser.add_argument("--shares", type=_numbers(float), default=[0.25], help="with --pools")
    parser.add_argument("--out", metavar="FILE", help="also write the table to FILE")
    args = parser.parse_args(argv)
    cells = []
    with tempfile.TemporaryDirectory(prefix="heavy-bench-") as tmp:
        for row in chosen_rows(args):
            cells.append(run_row(row, args.time_limit, Path(tmp)))
            print(" | ".join(cells[-1]), file=sys.stderr, flush=True)
    held = sum(row[-1] == "yes" for row in cells)
    report = (
        f"## Heavy demand: `replan solve --strategy exact`, whole process\n\n"
        f"{markdown(HEADER, cells)}\n\n"
        f"Promise (answer within limit + 10 %) held in {held} of {len(cells)} rows.\n"
    )
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
