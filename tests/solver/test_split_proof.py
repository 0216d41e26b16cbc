"""The last Dinkelbach proof split at the start's cost, its tie searches beside it: same answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings

from solver import deadline, highs_worker, milp, scenario_from_dict, solve, strategies
from solver.lazy import LazyPlacementMilp
from solver.milp import MilpResult, PlacementMilp
from solver.replicas import fleet_configs
from tests.solver.strategies import strategy_scenarios
from tests.solver.test_highs_worker import _stalling
from tests.solver.test_properties import PROPERTY_SETTINGS, _check_against_reference


@pytest.fixture
def split_every_proof(monkeypatch: pytest.MonkeyPatch) -> list[strategies._SplitProof | None]:
    """Every proof from the best plan is split, whatever the model's size; what each found."""
    found: list[strategies._SplitProof | None] = []
    split = strategies._split_proof

    def recorded(*args: object) -> strategies._SplitProof | None:
        outcome = split(*args)
        found.append(outcome)
        return outcome

    monkeypatch.setattr(strategies, "_splits", lambda model, exact_start: True)
    monkeypatch.setattr(strategies, "_split_proof", recorded)
    return found


@pytest.fixture
def prove_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first quick step every Dinkelbach step is a proof: most start from a plan that
    is not the optimum, so splits find better plans and ties, not only proofs."""
    monkeypatch.setattr(strategies, "_quick_step_futile", lambda *args: True)


@pytest.fixture
def in_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(milp, "ISOLATE_MIN_COLUMNS", 0)
    monkeypatch.setattr(milp, "ISOLATE_MIN_SECONDS", 0.0)
    yield
    highs_worker.shutdown()


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many solves each batch sent to the workers held."""
    sizes: list[int] = []
    solve_many = highs_worker.solve_many

    def recorded(requests: list, command: object = None) -> list:
        sizes.append(len(requests))
        return solve_many(requests, command)

    monkeypatch.setattr(highs_worker, "solve_many", recorded)
    return sizes


def _pool(name: str, available: int, tokens_per_s: float) -> dict:
    """A pool of $10 per GPU-hour: a tie 1e-9 cheaper is then 1e-8 USD/h cheaper, which HiGHS
    tells apart (feasibility tolerance 1e-9); at $1 it would take the start for a cheaper tie,
    and the split would leave the ratio to a whole proof (still exact, only slower)."""
    return {
        "id": f"c/r/{name}",
        "gpu": "G",
        "cloud": "c",
        "region": "r",
        "available": available,
        "max_tp": 1,
        "price_per_gpu_hour": 10.0,
        "memory_gb": 100,
        "tokens_per_s": tokens_per_s,
    }


def _document(pools: list[dict], **solver: float) -> dict:
    """One-GPU replicas (4 layers of 10 GB fit one GPU) on the given pools."""
    return {
        "model": {"name": "t", "num_layers": 4, "layer_memory_gb": 10},
        "pools": pools,
        "solver": {"tp_degrees": [1], "max_stages": 1, **solver},
    }


def _three_pools(demand_tokens_per_s: float) -> dict:
    """At the physical bound (a's $0.01 per token/s) a + b (2000 tokens/s, $22) wins, but
    a + c (10,000 tokens/s, $109) has the better ratio."""
    cheap, fair, big = _pool("a", 1, 1000), _pool("b", 3, 1000), _pool("c", 1, 9000)
    fair["price_per_gpu_hour"], big["price_per_gpu_hour"] = 12.0, 99.0
    return _document([cheap, fair, big], demand_tokens_per_s=demand_tokens_per_s)


def _model(*pools: dict) -> PlacementMilp:
    """The model over every configuration of the given pools, no demand."""
    scenario = scenario_from_dict(_document(list(pools)))
    return PlacementMilp(scenario, fleet_configs(scenario))


def _counts(model: PlacementMilp | LazyPlacementMilp, **replicas_by_pool: int) -> dict[int, int]:
    """A plan over the model's columns: replicas per pool name (each column one GPU of a pool)."""
    counts = {}
    for index, config in enumerate(model.configs):
        ((pool, _),) = config.gpus_by_pool
        name = model.scenario.pools[pool].id.rsplit("/", 1)[1]
        if replicas_by_pool.get(name):
            counts[index] = replicas_by_pool[name]
    return counts


def _plan(model: PlacementMilp, **replicas_by_pool: int) -> MilpResult:
    """A start plan: replicas per pool name."""
    return MilpResult("optimal", _counts(model, **replicas_by_pool), 0.0, 0.0, 0.0)


def _split(model: PlacementMilp, start: MilpResult) -> strategies._SplitProof:
    outcome = strategies._split_proof(model, start, strategies._ratio(model, start.counts))
    assert outcome is not None
    return outcome


def test_the_optimum_is_proven_with_both_tie_searches_empty() -> None:
    model = _model(_pool("a", 3, 1000), _pool("b", 1, 2000))
    outcome = _split(model, _plan(model, b=1))  # $10 for 2000 tokens/s: nothing does better
    assert outcome.proven and outcome.better is None
    assert outcome.ties is not None
    assert [r.status for r in outcome.ties] == ["infeasible", "infeasible"]


@pytest.mark.parametrize("start", [{"a": 1}, {"a": 3}, {"a": 2, "b": 1}])
def test_a_better_ratio_is_found_above_or_below_the_start_cost(start: dict) -> None:
    model = _model(_pool("a", 3, 1000), _pool("b", 1, 2000))
    plan = _plan(model, **start)
    outcome = _split(model, plan)
    assert outcome.better is not None and not outcome.proven
    assert strategies._ratio(model, outcome.better.counts) < strategies._ratio(model, plan.counts)


def test_a_cheaper_tie_leaves_the_ratio_to_a_whole_proof() -> None:
    """Every plan of one pool has the same ratio: from 3 replicas the cheaper-tie search finds
    1 or 2, which does not rule out a better ratio below the start's cost."""
    model = _model(_pool("a", 3, 1000))
    outcome = _split(model, _plan(model, a=3))
    assert outcome.better is None and not outcome.proven and outcome.ties is None


def test_the_strategy_answers_through_a_split_proof(split_every_proof: list) -> None:
    """Demand 3500 tokens/s: b and two of a (4000 tokens/s for $30) is the only best plan."""
    document = _document([_pool("a", 3, 1000), _pool("b", 1, 2000)], demand_tokens_per_s=3500)
    plan = solve(scenario_from_dict(document), "exact").to_json()
    assert plan["status"] == "optimal"
    assert (plan["gpus"], plan["cost_per_hour"], plan["tokens_per_s"]) == (3, 30.0, 4000.0)
    assert [outcome.proven for outcome in split_every_proof] == [True]


class _QuickStepsRepeatTheFirst(PlacementMilp):
    """Every quick step returns the first one's plan: each later step is a proof from it."""

    first_quick: MilpResult | None = None

    def solve(self, **kwargs: Any) -> MilpResult:
        if kwargs.get("rel_gap") is None:
            return super().solve(**kwargs)
        if self.first_quick is None:
            self.first_quick = super().solve(**kwargs)
        return self.first_quick


def test_dinkelbach_goes_on_from_a_better_plan_a_split_found(split_every_proof: list) -> None:
    """`_three_pools`, demand 2000: the split above a + b's $22 finds a + c."""
    scenario = scenario_from_dict(_three_pools(demand_tokens_per_s=2000))
    model = _QuickStepsRepeatTheFirst(scenario, fleet_configs(scenario))
    plan = strategies.solve_model(model, "exact").to_json()
    assert plan["status"] == "optimal"
    assert (plan["gpus"], plan["cost_per_hour"], plan["tokens_per_s"]) == (2, 109.0, 10000.0)
    assert [(o.better is not None, o.proven) for o in split_every_proof] == [
        (True, False),
        (False, True),
    ]
    assert split_every_proof[0].better_exact  # found by the proof above the start's cost


@pytest.mark.parametrize("columns_on_demand", [False, True], ids=["listed", "on-demand"])
def test_split_proofs_match_the_exhaustive_reference(
    columns_on_demand: bool, split_every_proof: list, prove_every_step: None
) -> None:
    @settings(PROPERTY_SETTINGS, max_examples=40)
    @given(strategy_scenarios("exact"))
    def check(document: dict) -> None:
        _check_against_reference(document, "exact", columns_on_demand)

    check()


def test_split_proofs_in_workers_match_the_exhaustive_reference(
    in_workers: None, batches: list[int], split_every_proof: list, prove_every_step: None
) -> None:
    """The three searches at once, each in its own worker with its share of the threads."""

    @settings(PROPERTY_SETTINGS, max_examples=20, derandomize=True)
    @given(strategy_scenarios("exact"))
    def check(document: dict) -> None:
        document = {**document, "solver": {**document.get("solver", {}), "time_limit_s": 600}}
        _check_against_reference(document, "exact", columns_on_demand=False)

    check()
    assert batches.count(3) == sum(outcome is not None for outcome in split_every_proof)


def test_the_three_searches_run_at_once_in_workers(in_workers: None, batches: list[int]) -> None:
    model = _model(_pool("a", 3, 1000), _pool("b", 1, 2000))
    assert _split(model, _plan(model, b=1)).proven
    assert batches == [3]


def test_a_proof_below_an_earlier_one_reuses_its_columns() -> None:
    """Columns priced for a proof at a higher ratio hold every plan the next proof needs:
    `proof_model` then solves no LP and prices nothing, and the split still proves the optimum."""
    scenario = scenario_from_dict(_three_pools(demand_tokens_per_s=2000))
    model = LazyPlacementMilp(scenario, fleet_configs(scenario, homogeneous=True), None)
    start = _counts(model, a=1, b=1)  # $22 for 2000 tokens/s
    first = model.solve(
        cost_weight=1.0, throughput_weight=strategies._ratio(model, start), start=start
    )
    better = first.counts  # a + c: $109 for 10,000 tokens/s
    assert strategies._ratio(model, better) < strategies._ratio(model, start)
    lp_solves = model.lp_solves
    assert model.proof_model(strategies._ratio(model, better), better) is model.settled()
    assert model.lp_solves == lp_solves  # covered: no column generation, no pricing
    outcome = strategies._split_proof(model, first, strategies._ratio(model, better))
    assert outcome is not None and outcome.proven
    higher = strategies._ratio(model, start) * 1.5  # above the pricing: not covered
    model.proof_model(higher, start)
    assert model.lp_solves > lp_solves
    lp_solves = model.lp_solves
    model.scenario = scenario_from_dict(_three_pools(demand_tokens_per_s=3000))  # another row
    model.proof_model(strategies._ratio(model, better), better)
    assert model.lp_solves > lp_solves


def test_a_split_the_deadline_stops_proves_nothing_and_keeps_the_limit(
    in_workers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every worker hangs: the three searches are stopped at the deadline with no better plan,
    the ratio unproven and no tie searched, so `_exact` ends with the plan in hand."""
    monkeypatch.setattr(highs_worker, "WORKER_COMMAND", _stalling())
    model = _model(_pool("a", 3, 1000), _pool("b", 1, 2000))
    start = _plan(model, b=1)
    began = time.monotonic()
    with deadline.deadline(1.0):
        outcome = _split(model, start)
    assert time.monotonic() - began <= 1.0 + highs_worker.grace_s(1.0) + 0.3
    assert outcome.better is None and not outcome.proven and outcome.ties is None


def test_a_split_without_its_columns_falls_back_to_one_proof(
    split_every_proof: list,
    prove_every_step: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pricing for the split ran out (`proof_model` None, which only the lazy model returns):
    the plain proof answers instead. Listed models, where fixed examples do reach proofs."""
    monkeypatch.setattr(PlacementMilp, "proof_model", lambda *args: None)

    @settings(PROPERTY_SETTINGS, max_examples=60, derandomize=True)
    @given(strategy_scenarios("exact"))
    def check(document: dict) -> None:
        _check_against_reference(document, "exact", columns_on_demand=False)

    check()
    assert split_every_proof and all(outcome is None for outcome in split_every_proof)
