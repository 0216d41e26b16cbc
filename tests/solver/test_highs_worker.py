"""MILP solves in the worker process: the same answers, and a limit HiGHS cannot stretch."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator

import highspy
import pytest
from hypothesis import given, settings

from solver import highs_worker, load_scenario, milp, scenario_from_dict, solve
from solver.milp import PlacementMilp
from solver.replicas import enumerate_configs
from tests.solver.reference import recheck_plan, reference_optimum
from tests.solver.strategies import strategy_scenarios
from tests.solver.test_properties import PROPERTY_SETTINGS, _check_against_reference
from tests.solver.test_seed import SEED

# A worker that takes a request, reports what `send` says and then never answers: HiGHS stuck
# where it does not look at its clock (measured: 18 s past a 5 s limit on 27,403 columns).
STALLING_WORKER = """
import pickle, struct, sys, time
size, = struct.unpack(">Q", sys.stdin.buffer.read(8))
request = pickle.loads(sys.stdin.buffer.read(size))
for message in {send}:
    body = pickle.dumps(message)
    sys.stdout.buffer.write(struct.pack(">Q", len(body)) + body)
    sys.stdout.buffer.flush()
time.sleep(3600)
"""


def _stalling(send: str = "[]") -> tuple[str, ...]:
    return (sys.executable, "-c", STALLING_WORKER.format(send=send))


@pytest.fixture(autouse=True)
def _fresh_worker() -> Iterator[None]:
    yield
    highs_worker.shutdown()


def _knapsack(items: int = 25) -> highspy.Highs:
    """max sum v_i x_i s.t. sum w_i x_i <= W, x binary (as a minimisation), with a side row."""
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    values = [float((7 * i) % 11 + 1) for i in range(items)]
    weights = [float((5 * i) % 13 + 2) for i in range(items)]
    highs.addVars(items, [0.0] * items, [1.0] * items)
    highs.changeColsCost(items, list(range(items)), [-v for v in values])
    highs.changeColsIntegrality(items, list(range(items)), [highspy.HighsVarType.kInteger] * items)
    highs.addRow(-highspy.kHighsInf, sum(weights) / 3, items, list(range(items)), weights)
    highs.addRow(
        -highspy.kHighsInf, items / 2, items // 2, list(range(items // 2)), [1.0] * (items // 2)
    )
    return highs


def test_isolated_solve_matches_in_process() -> None:
    highs = _knapsack()
    isolated = highs_worker.solve_isolated(highs, {"mip_rel_gap": 0.0}, start=None, time_limit_s=60)
    highs.setOptionValue("mip_rel_gap", 0.0)
    highs.run()
    assert isolated.status == highspy.HighsModelStatus.kOptimal == highs.getModelStatus()
    assert not isolated.killed
    assert isolated.objective == pytest.approx(highs.getInfo().objective_function_value, abs=1e-9)
    assert isolated.dual_bound == pytest.approx(isolated.objective, abs=1e-6)
    assert isolated.col_value is not None
    model = highs_worker.model_arrays(highs)
    assert highs_worker._objective(model, isolated.col_value) == pytest.approx(isolated.objective)


def test_worker_is_reused_between_solves() -> None:
    highs = _knapsack(12)
    highs_worker.solve_isolated(highs, {}, start=None, time_limit_s=60)
    first = highs_worker._workers[0].process.pid
    highs_worker.solve_isolated(highs, {}, start=None, time_limit_s=60)
    assert highs_worker._workers[0].process.pid == first


def test_a_worker_past_its_limit_is_killed_and_its_best_plan_kept() -> None:
    highs = _knapsack(10)
    plan = [1.0] * 3 + [0.0] * 7
    command = _stalling(f"[('plan', -9.0, {plan!r}), ('bound', -20.0), ('bound', -15.0)]")
    started = time.monotonic()
    outcome = highs_worker.solve_isolated(highs, {}, start=None, time_limit_s=1.5, command=command)
    elapsed = time.monotonic() - started
    assert elapsed <= 1.5 + highs_worker.grace_s(1.5) + 0.2, elapsed
    assert outcome.killed
    assert outcome.status == highspy.HighsModelStatus.kTimeLimit
    assert outcome.col_value == plan and outcome.objective == -9.0
    assert outcome.dual_bound == -15.0  # the best bound reported
    stopped = highs_worker._workers[0].process
    assert stopped.poll() is not None  # the stuck process is gone
    again = highs_worker.solve_isolated(highs, {}, start=None, time_limit_s=60)
    assert again.status == highspy.HighsModelStatus.kOptimal  # a new worker took over


def test_a_killed_worker_falls_back_to_the_start_only_below_the_objective_bound() -> None:
    highs = _knapsack(10)
    start = [1.0] + [0.0] * 9  # objective -1 (feasible)
    kept = highs_worker.solve_isolated(
        highs, {}, start=start, time_limit_s=0.6, command=_stalling()
    )
    assert kept.killed and kept.col_value == start and kept.objective == pytest.approx(-1.0)
    bounded = highs_worker.solve_isolated(
        highs, {"objective_bound": -5.0}, start=start, time_limit_s=0.6, command=_stalling()
    )
    assert bounded.killed and bounded.col_value is None and bounded.objective is None


def test_a_crashed_worker_is_an_error_not_a_hang() -> None:
    command = (sys.executable, "-c", "import sys; sys.stdin.buffer.read(8); sys.exit(3)")
    started = time.monotonic()
    with pytest.raises(highs_worker.WorkerError, match="exit 3"):
        highs_worker.solve_isolated(_knapsack(), {}, start=None, time_limit_s=30, command=command)
    assert time.monotonic() - started < 10


@pytest.fixture
def isolate_every_solve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(milp, "ISOLATE_MIN_COLUMNS", 0)
    monkeypatch.setattr(milp, "ISOLATE_MIN_SECONDS", 0.0)


@pytest.mark.parametrize("strategy", ["exact", "min-cost", "weighted"])
def test_strategies_in_the_worker_match_the_exhaustive_reference(
    strategy: str, isolate_every_solve: None
) -> None:
    """Every MILP of the strategy solved in the worker (a limit puts each solve there)."""

    @settings(PROPERTY_SETTINGS, max_examples=15)
    @given(strategy_scenarios(strategy))
    def check(document: dict) -> None:
        document = {**document, "solver": {**document.get("solver", {}), "time_limit_s": 600}}
        _check_against_reference(document, strategy, columns_on_demand=False)

    check()
    assert highs_worker._workers and highs_worker._workers[0].alive()  # it did solve


def test_a_stuck_solver_cannot_stretch_the_strategy_limit(
    isolate_every_solve: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every MILP hangs: the exact strategy still answers within its limit (plus start-up)."""
    monkeypatch.setattr(highs_worker, "WORKER_COMMAND", _stalling())
    document = scenario_document_with_limit(time_limit_s=2.0, demand_tokens_per_s=900.0)
    started = time.monotonic()
    plan = solve(scenario_from_dict(document), "exact").to_json()
    elapsed = time.monotonic() - started
    assert elapsed <= 2.0 * 1.1 + 0.3, elapsed  # + the start-up before the limit starts
    assert plan["status"] in ("feasible", "unknown"), plan
    assert "time limit" in plan["message"]
    if plan["status"] == "feasible":
        tokens_per_s, cost_per_hour = recheck_plan(document, plan)
        assert math.isclose(plan["cost_per_hour"], cost_per_hour, rel_tol=1e-9)
        assert reference_optimum(document, "exact").objective <= cost_per_hour / tokens_per_s


@pytest.mark.parametrize(
    "reply",
    [
        "sys.stdout.buffer.write(struct.pack('>Q', 8) + b'\\xff' * 8)",  # not a pickle
        "sys.stdout.buffer.write(struct.pack('>Q', 1 << 62))",  # an absurd length
    ],
    ids=["garbage", "huge-frame"],
)
def test_a_worker_reply_that_makes_no_sense_is_an_error(reply: str) -> None:
    code = f"import struct, sys; sys.stdin.buffer.read(8); {reply}; sys.stdout.flush()"
    started = time.monotonic()
    with pytest.raises(highs_worker.WorkerError, match="unreadable reply"):
        highs_worker.solve_isolated(
            _knapsack(), {}, start=None, time_limit_s=30, command=(sys.executable, "-c", code)
        )
    assert time.monotonic() - started < 10


def test_a_worker_that_cannot_start_is_an_error() -> None:
    with pytest.raises(highs_worker.WorkerError, match="could start"):
        highs_worker.solve_isolated(
            _knapsack(), {}, start=None, time_limit_s=5, command=("/nonexistent/python",)
        )


@pytest.mark.parametrize(
    "command",
    [(sys.executable, "-c", "raise SystemExit(5)"), ("/nonexistent/python",)],
    ids=["exits", "cannot-start"],
)
def test_a_broken_worker_falls_back_to_solving_here(
    command: tuple[str, ...],
    isolate_every_solve: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(highs_worker, "WORKER_COMMAND", command)
    document = scenario_document_with_limit()
    with caplog.at_level(logging.WARNING, logger="solver.milp"):
        plan = solve(scenario_from_dict(document), "exact").to_json()
    assert plan["status"] == "optimal"
    assert math.isclose(
        plan["cost_per_token"] * 3600, reference_optimum(document, "exact").objective, rel_tol=1e-6
    )
    assert "solving in this process" in caplog.text


def scenario_document_with_limit(time_limit_s: float = 120.0, **solver: float) -> dict:
    """Three pools of one region, small enough for the exhaustive reference."""
    return {
        "model": {"name": "m", "num_layers": 4, "layer_memory_gb": 2.0},
        "pools": [
            {
                "id": f"gcp/eu-west4/G{i}",
                "gpu": f"G{i}",
                "cloud": "gcp",
                "region": "eu-west4",
                "available": 2 + i,
                "max_tp": 2,
                "price_per_gpu_hour": 2.0 - i / 4,
                "memory_gb": 16.0,
                "tokens_per_s": 800.0 - 100 * i,
            }
            for i in range(3)
        ],
        "solver": {"time_limit_s": time_limit_s, **solver},
    }


def test_solve_all_runs_at_once_and_matches_solving_in_turn(isolate_every_solve: None) -> None:
    scenario = load_scenario(SEED)
    model = PlacementMilp(scenario, enumerate_configs(scenario))
    calls = [
        {"cost_weight": 1.0},
        {"throughput_weight": 1.0, "budget_per_hour": 40.0},
        {"gpu_weight": 1.0, "max_cost_per_hour": 60.0},
        {"cost_weight": 1.0, "max_gpus": 0},  # no plan can meet the demand with no GPU
    ]
    in_turn = [model.solve(**call) for call in calls]
    assert model.parallel
    at_once = model.solve_all(calls)
    assert len(highs_worker._workers) >= len(calls)  # one worker per solve
    assert [r.status for r in at_once] == [r.status for r in in_turn]
    assert in_turn[-1].status == "infeasible"
    for got, expected in zip(at_once, in_turn, strict=True):
        assert got.counts == expected.counts or got.objective == pytest.approx(expected.objective)
        if expected.objective is not None:
            assert got.objective == pytest.approx(expected.objective, rel=1e-9, abs=1e-9)


def test_each_stalled_worker_is_stopped_at_its_own_limit() -> None:
    highs = _knapsack(8)
    short = highs_worker.request_for(highs, {}, None, 0.5)
    long = highs_worker.request_for(highs, {}, None, 1.5)
    started = time.monotonic()
    first, second = highs_worker.solve_many([short, long], command=_stalling())
    elapsed = time.monotonic() - started
    assert first.killed and second.killed
    assert first.seconds < second.seconds  # the short one was not kept until the long one ended
    assert first.seconds <= 0.5 + highs_worker.grace_s(0.5) + 0.2
    assert elapsed <= 1.5 + highs_worker.grace_s(1.5) + 0.3, elapsed


def test_a_worker_changes_thread_count_between_solves() -> None:
    """Side by side each solve gets a share of the cores, alone HiGHS's default: HiGHS refuses
    a run whose thread count differs from the scheduler it started, so the worker restarts it."""
    highs = _knapsack()
    request = highs_worker.request_for(highs, {"mip_rel_gap": 0.0}, None, 60)
    alone = highs_worker.solve_many([request])  # the first worker starts HiGHS's default
    side_by_side = highs_worker.solve_many([request, request])
    again = highs_worker.solve_many([request])
    outcomes = [*alone, *side_by_side, *again]
    assert [o.status for o in outcomes] == [highspy.HighsModelStatus.kOptimal] * 4
    assert len({round(o.objective, 9) for o in outcomes}) == 1


@pytest.mark.parametrize("limit_s", [0.5, 1.0, 3.0, 12.5, 120.0, 3600.0])
def test_the_grace_past_a_limit_stays_within_its_tenth(limit_s: float) -> None:
    """HiGHS that keeps its limit answers ~0.2 s late; the strategy's promise is limit + 10 %,
    of which it keeps 10 % for the plan: the grace takes at most 5 % of the limit."""
    grace = highs_worker.grace_s(limit_s)
    assert 0 < grace <= 0.05 * limit_s
    if limit_s >= 5:  # long enough for HiGHS's own lateness (0.2 s measured on 27,403 columns)
        assert grace >= 0.25
