"""Tests of the exhaustive reference solver on hand-computed cases."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings

from tests.solver.reference import (
    feasible_plans,
    feasible_replicas,
    recheck_plan,
    reference_optimum,
    with_defaults,
)
from tests.solver.strategies import small_scenarios, strategy_scenarios

# The seed scenario (spec/scenarios/seed.yaml), copied inline.
SEED = {
    "model": {"name": "7B-class, fp16, 32 layers", "num_layers": 32, "layer_memory_gb": 0.44},
    "pools": [
        {
            "id": "seed/A100",
            "gpu": "A100",
            "cloud": "seed",
            "region": "lab",
            "available": 8,
            "max_tp": 8,
            "price_per_gpu_hour": 1.60,
            "memory_gb": 40,
            "tokens_per_s": 3500,
        },
        {
            "id": "seed/L20",
            "gpu": "L20",
            "cloud": "seed",
            "region": "lab",
            "available": 12,
            "max_tp": 4,
            "price_per_gpu_hour": 0.90,
            "memory_gb": 48,
            "tokens_per_s": 2000,
        },
        {
            "id": "seed/A10",
            "gpu": "A10",
            "cloud": "seed",
            "region": "lab",
            "available": 12,
            "max_tp": 4,
            "price_per_gpu_hour": 0.60,
            "memory_gb": 24,
            "tokens_per_s": 1300,
        },
        {
            "id": "seed/V100",
            "gpu": "V100",
            "cloud": "seed",
            "region": "lab",
            "available": 12,
            "max_tp": 4,
            "price_per_gpu_hour": 0.30,
            "memory_gb": 16,
            "tokens_per_s": 985,
        },
        {
            "id": "seed/T4",
            "gpu": "T4",
            "cloud": "seed",
            "region": "lab",
            "available": 20,
            "max_tp": 4,
            "price_per_gpu_hour": 0.80,
            "memory_gb": 16,
            "tokens_per_s": 1192,
        },
    ],
    "solver": {
        "tp_degrees": [1, 2, 4, 8],
        "tp_efficiency": {1: 1.0, 2: 0.9, 4: 0.8, 8: 0.7},
        "max_stages": 8,
        "memory_utilization": 0.9,
        "demand_tokens_per_s": 900,
        "cost_throughput_weight": 0.95,
        "target_cost_per_token": 0.001,
        "max_iterations": 5,
    },
}


def _pool(pid: str, **fields: object) -> dict:
    """A pool in cloud/region taken from its id `cloud/region/name`, gpu 'G' by default."""
    cloud, region, _ = pid.split("/")
    base = {
        "id": pid,
        "gpu": "G",
        "cloud": cloud,
        "region": region,
        "available": 1,
        "max_tp": 1,
        "price_per_gpu_hour": 1.0,
        "memory_gb": 100,
        "tokens_per_s": 1000,
    }
    return {**base, **fields}


def _scenario(pools: list[dict], num_layers: int = 4, layer_gb: float = 10, **solver: object):
    return {
        "model": {"name": "t", "num_layers": num_layers, "layer_memory_gb": layer_gb},
        "pools": pools,
        "solver": {"tp_degrees": [1], "max_stages": 1, **solver},
    }


def _stages(result) -> list[list[tuple[str, int, int]]]:
    """(pool, tp, layers) per replica copy of a result's plan, sorted."""
    out = []
    for replica, count in result.plan.replicas:
        out += [[(s.pool, s.tp, s.layers) for s in replica.stages]] * count
    return sorted(out)


def test_with_defaults_fills_solver_and_normalises_keys() -> None:
    sc = with_defaults(
        {
            "model": {},
            "pools": [{"id": "a", "tp_efficiency": {"2": 0.5}}],
            "solver": {"tp_efficiency": {"1": 1, "2": "0.9"}, "budget_per_hour": 3},
        }
    )
    assert sc["solver"]["tp_efficiency"] == {1: 1.0, 2: 0.9}
    assert sc["pools"][0]["tp_efficiency"] == {2: 0.5}
    assert sc["solver"]["tp_degrees"] == [1, 2, 4, 8]
    assert sc["solver"]["max_stages"] == 8
    assert sc["solver"]["memory_utilization"] == 0.9
    assert sc["solver"]["homogeneous_replicas"] is False
    assert sc["solver"]["demand_tokens_per_s"] == 0
    assert sc["solver"]["budget_per_hour"] == 3
    assert sc["solver"]["cost_throughput_weight"] == 0.95
    assert with_defaults({"pools": []})["solver"]["budget_per_hour"] is None


def test_seed_exact_optimum_is_one_v100() -> None:
    """Seed: best C/T is one V100 at TP 1 (0.30 $/h for 985 token/s).

    The full seed is far too large to enumerate, so availability is capped at 2 and
    pipelines at 2 stages. That cannot change the optimum: for any replica,
    T <= sum_i tokens_per_s_i * t_i * eff_i (each stage must carry its n_i layers at rate
    >= T), so C/T >= min_p price_p / tokens_per_s_p = 0.30/985 (V100), and a plan's C/T is
    a weighted mean of its replicas'. The single V100 replica reaches the bound with the
    least C of all plans tied with it (V100 pipelines and copies tie at higher C).
    """
    small = copy.deepcopy(SEED)
    for pool in small["pools"]:
        pool["available"] = min(pool["available"], 2)
    small["solver"]["max_stages"] = 2
    result = reference_optimum(small, "exact")
    assert result is not None
    assert result.objective == pytest.approx(0.30 / 985, rel=1e-9)
    assert result.cost_per_hour == pytest.approx(0.30)
    assert result.tokens_per_s == pytest.approx(985)
    assert result.gpus == 1
    assert result.cost_per_token == pytest.approx(8.46e-8, rel=1e-3)
    assert _stages(result) == [[("seed/V100", 1, 32)]]
    assert result.ties > 1  # V100 pipelines of 2 x 16 layers tie on the ratio


def test_memory_forces_a_two_stage_pipeline() -> None:
    """4 layers x 10 GB; a 24 GB GPU at 0.9 holds 2 layers (TP 2: 4 layers).

    Options with 2 GPUs: pipeline 2+2 layers at TP 1 -> min(1000*4/2, 1000*4/2) = 2000
    token/s for $2/h, or one TP-2 stage -> 1000 * 4/4 * 2 * 0.9 = 1800 token/s for $2/h.
    """
    sc = _scenario(
        [_pool("c/r/p", available=2, max_tp=2, memory_gb=24)], tp_degrees=[1, 2], max_stages=2
    )
    replicas = feasible_replicas(sc)
    assert sorted((r.tokens_per_s, r.cost_per_hour, r.gpus) for r in replicas) == [
        (pytest.approx(1800), 2.0, 2),
        (pytest.approx(2000), 2.0, 2),
    ]
    result = reference_optimum(sc, "exact")
    assert result is not None
    assert (result.tokens_per_s, result.cost_per_hour, result.gpus) == (2000, 2.0, 2)
    assert result.objective == pytest.approx(2.0 / 2000)
    assert result.plan_count == 2
    assert _stages(result) == [[("c/r/p", 1, 2), ("c/r/p", 1, 2)]]
    sc["solver"]["demand_tokens_per_s"] = 1900
    assert reference_optimum(sc, "min-cost").objective == 2.0
    sc["solver"]["budget_per_hour"] = 2.0
    assert reference_optimum(sc, "max-throughput").objective == pytest.approx(2000)
    sc["solver"]["demand_tokens_per_s"] = 2100
    assert reference_optimum(sc, "exact") is None


def _mix_scenario(**solver: object) -> dict:
    return _scenario(
        [
            _pool("c/r/a", available=1, price_per_gpu_hour=1.0),
            _pool("c/r/b", available=2, price_per_gpu_hour=1.5),
        ],
        **solver,
    )


def test_availability_forces_mixing_two_pools() -> None:
    """1000 token/s per GPU; A: 1 GPU at $1, B: 2 GPUs at $1.5; D = 2500 needs all three."""
    sc = _mix_scenario(demand_tokens_per_s=2500)
    for strategy in ("exact", "min-cost"):
        result = reference_optimum(sc, strategy)
        assert result is not None
        assert (result.tokens_per_s, result.cost_per_hour, result.gpus) == (3000, 4.0, 3)
        assert result.plan_count == 1
        assert _stages(result) == [[("c/r/a", 1, 4)], [("c/r/b", 1, 4)], [("c/r/b", 1, 4)]]
    assert reference_optimum(sc, "exact").objective == pytest.approx(4.0 / 3000)


def test_weighted_uses_availability_norms() -> None:
    """T_norm = 3 x 1000, C_norm = 1 + 2 x 1.5 = 4; w = 0.5: A alone gives 1/6 - 1/8."""
    sc = _mix_scenario(cost_throughput_weight=0.5)
    result = reference_optimum(sc, "weighted")
    assert result is not None
    assert result.plan_count == 5  # A in 0..1 copies, B in 0..2, not both zero
    assert result.objective == pytest.approx(1 / 6 - 1 / 8)
    assert _stages(result) == [[("c/r/a", 1, 4)]]


def test_exact_ties_break_on_cost_then_gpus_and_pool_map_limits_degrees() -> None:
    """A: TP 1, 1000 token/s for $1. B: TP 2 only (its map has no 1), 500*2 for 2 x $0.5.

    Every plan has C/T = 1e-3. Lowest C is $1 (A alone or B alone); fewer GPUs: A.
    Were TP 1 allowed on B, B alone (500 token/s, $0.5) would win on cost.
    """
    sc = _scenario(
        [
            _pool("c/r/a", available=2),
            _pool(
                "c/r/b",
                available=2,
                max_tp=2,
                price_per_gpu_hour=0.5,
                tokens_per_s=500,
                tp_efficiency={"2": 1.0},
            ),
        ],
        num_layers=2,
        tp_degrees=[1, 2],
    )
    result = reference_optimum(sc, "exact")
    assert result is not None
    assert (result.cost_per_hour, result.gpus) == (1.0, 1)
    assert _stages(result) == [[("c/r/a", 1, 2)]]
    assert result.plan_count == 5
    assert result.ties == 5


def test_infeasible_scenario_returns_none() -> None:
    """One layer fits per GPU, 4 layers, at most 2 stages: no replica exists."""
    sc = _scenario([_pool("c/r/p", available=4, memory_gb=12)], max_stages=2)
    assert feasible_replicas(sc) == []
    assert list(feasible_plans(sc)) == []
    assert reference_optimum(sc, "exact") is None
    sc["solver"]["max_stages"] = 4
    assert reference_optimum(sc, "exact").tokens_per_s == pytest.approx(4000)


def test_strategy_preconditions() -> None:
    sc = _mix_scenario()
    with pytest.raises(ValueError, match="demand"):
        reference_optimum(sc, "min-cost")
    with pytest.raises(ValueError, match="budget"):
        reference_optimum(sc, "max-throughput")
    with pytest.raises(ValueError, match="unknown"):
        reference_optimum(sc, "iterative")


# ---------------------------------------------------------------- recheck_plan

RULES_SCENARIO = _scenario(
    [
        _pool("c0/r0/p0", gpu="A", available=4, max_tp=2, memory_gb=24),
        _pool(
            "c0/r0/p1",
            gpu="B",
            available=4,
            max_tp=4,
            price_per_gpu_hour=0.5,
            memory_gb=48,
            tokens_per_s=500,
            tp_efficiency={1: 1.0},
        ),
        _pool("c1/r0/p2", gpu="A", available=2, max_tp=1, memory_gb=48),
    ],
    tp_degrees=[1, 2],
    max_stages=2,
    demand_tokens_per_s=100,
    budget_per_hour=10,
)


def _stage(pool: str, tp: int, layers: int) -> dict:
    gpu = {"c0/r0/p1": "B"}.get(pool, "A")
    return {"pool": pool, "gpu": gpu, "tp": tp, "layers": layers}


# p0 holds 2 layers per GPU (rate 1000 * 4/2 = 2000), p1 4 (rate 500 * 4/2 = 1000).
VALID_PLAN = {
    "replicas": [
        {
            "count": 1,
            "cloud": "c0",
            "region": "r0",
            "stages": [_stage("c0/r0/p0", 1, 2), _stage("c0/r0/p1", 1, 2)],
        }
    ]
}


def _set_stages(*stages: dict) -> Callable[[dict, dict], None]:
    def edit(sc: dict, plan: dict) -> None:
        plan["replicas"][0]["stages"] = list(stages)

    return edit


def _set_replica(**fields: object) -> Callable[[dict, dict], None]:
    def edit(sc: dict, plan: dict) -> None:
        plan["replicas"][0].update(fields)

    return edit


def _set_solver(**fields: object) -> Callable[[dict, dict], None]:
    def edit(sc: dict, plan: dict) -> None:
        sc["solver"].update(fields)

    return edit


def _no_replicas(sc: dict, plan: dict) -> None:
    plan["replicas"] = []


VIOLATIONS = {
    "spans two (cloud, region)": (
        _set_stages(_stage("c0/r0/p0", 1, 2), _stage("c1/r0/p2", 1, 2)),
        "is in",
    ),
    "declared cloud differs": (_set_replica(cloud="c1"), "is in"),
    "layers < 1": (_set_stages(_stage("c0/r0/p0", 1, 0), _stage("c0/r0/p1", 1, 4)), "< 1"),
    "layers do not sum to L": (
        _set_stages(_stage("c0/r0/p0", 1, 2), _stage("c0/r0/p1", 1, 1)),
        "sum",
    ),
    "tp not in tp_degrees": (
        _set_stages(_stage("c0/r0/p0", 1, 2), _stage("c0/r0/p1", 4, 2)),
        "tp_degrees",
    ),
    "tp above max_tp": (_set_replica(cloud="c1", stages=[_stage("c1/r0/p2", 2, 4)]), "max_tp"),
    "tp missing from pool map": (
        _set_stages(_stage("c0/r0/p0", 1, 2), _stage("c0/r0/p1", 2, 2)),
        "tp_efficiency",
    ),
    "memory": (_set_stages(_stage("c0/r0/p0", 1, 3), _stage("c0/r0/p1", 1, 1)), "memory"),
    "homogeneous": (_set_solver(homogeneous_replicas=True), "homogeneous"),
    "too many stages": (
        _set_stages(_stage("c0/r0/p0", 1, 1), _stage("c0/r0/p1", 1, 1), _stage("c0/r0/p1", 1, 2)),
        "max_stages",
    ),
    "availability": (_set_replica(count=5), "available"),
    "demand": (_set_solver(demand_tokens_per_s=5000), "demand"),
    "budget": (_set_solver(budget_per_hour=1.0), "budget"),
    "no replicas": (_no_replicas, "no replicas"),
    "count < 1": (_set_replica(count=0), "count"),
    "unknown pool": (_set_stages(_stage("nope", 1, 2), _stage("c0/r0/p1", 1, 2)), "unknown"),
    "gpu name differs from pool": (
        _set_stages({**_stage("c0/r0/p0", 1, 2), "gpu": "Z"}, _stage("c0/r0/p1", 1, 2)),
        "gpu",
    ),
}


def test_recheck_accepts_a_valid_plan() -> None:
    assert recheck_plan(RULES_SCENARIO, VALID_PLAN) == (pytest.approx(1000), 1.5)
    doubled = copy.deepcopy(VALID_PLAN)
    doubled["replicas"][0]["count"] = 2
    assert recheck_plan(RULES_SCENARIO, doubled) == (pytest.approx(2000), 3.0)


@pytest.mark.parametrize("rule", list(VIOLATIONS))
def test_recheck_rejects(rule: str) -> None:
    edit, message = VIOLATIONS[rule]
    sc, plan = copy.deepcopy(RULES_SCENARIO), copy.deepcopy(VALID_PLAN)
    edit(sc, plan)
    with pytest.raises(AssertionError, match=message):
        recheck_plan(sc, plan)


# ---------------------------------------------------------------- properties

FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FEW
@given(small_scenarios())
def test_every_enumerated_plan_passes_recheck(scenario: dict) -> None:
    for plan in itertools.islice(feasible_plans(scenario), 200):
        t, c = recheck_plan(scenario, plan.to_json())
        assert t == pytest.approx(plan.tokens_per_s, rel=1e-9)
        assert c == pytest.approx(plan.cost_per_hour, rel=1e-9)


@FEW
@given(small_scenarios(draw_budget=False), strategy_scenarios("max-throughput"))
def test_budget_pruning_loses_no_plan(scenario: dict, other: dict) -> None:
    """Plans under a budget are exactly the unbudgeted plans with C <= B."""
    budget = other["solver"]["budget_per_hour"]
    capped = copy.deepcopy(scenario)
    capped["solver"]["budget_per_hour"] = budget
    expected = sorted(
        (p.tokens_per_s, p.cost_per_hour)
        for p in feasible_plans(scenario)
        if p.cost_per_hour <= budget * (1 + 1e-9)
    )
    assert sorted((p.tokens_per_s, p.cost_per_hour) for p in feasible_plans(capped)) == expected


@FEW
@given(small_scenarios())
def test_exact_optimum_is_bounded_by_best_replica_ratio(scenario: dict) -> None:
    """A plan's C/T is a weighted mean of its replicas' C/T, so never below the best one."""
    result = reference_optimum(scenario, "exact")
    if result is None:
        return
    best = min(r.cost_per_hour / r.tokens_per_s for r in feasible_replicas(scenario))
    assert result.objective >= best * (1 - 1e-9)
    assert result.objective == pytest.approx(result.cost_per_hour / result.tokens_per_s)
