"""Exhaustive reference solver for the placement model (tests only).

Written straight from the contract (spec/placement-model.md), independent of `solver/`:
plain scenario dicts in, every feasible replica and plan enumerated, no optimisation
library. Only for small scenarios (a few pools, a few GPUs, short pipelines).

Decisions where the contract is silent:
- A TP degree missing from the efficiency map that applies to a pool (the pool's own
  `tp_efficiency` when it has one, else the solver-wide map) is not allowed on that pool.
- Comparisons use a relative tolerance of 1e-9: the memory rule (`n * layer_memory <=
  t * memory * utilisation`), `T >= D`, `C <= B` and objective ties.
- Replicas that alone need more GPUs of a pool than it has available are left out of
  `feasible_replicas`: they can be part of no feasible plan.
- Tie order after the objective (within 1e-9): exact → lower C, then fewer GPUs (the
  contract); min-cost → higher T, then fewer GPUs; max-throughput and weighted → lower C,
  then fewer GPUs. Only `objective` is determined by the contract for the last three.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

REL_TOL = 1e-9
STRATEGIES = ("exact", "min-cost", "max-throughput", "weighted")

DEFAULT_SOLVER: dict[str, Any] = {
    "tp_degrees": [1, 2, 4, 8],
    "tp_efficiency": {1: 1.0, 2: 0.9, 4: 0.8, 8: 0.7},
    "max_stages": 8,
    "memory_utilization": 0.9,
    "homogeneous_replicas": False,
    "demand_tokens_per_s": 0,
    "budget_per_hour": None,
    "cost_throughput_weight": 0.95,
}


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: `layers` consecutive layers on `tp` GPUs of `pool`."""

    pool: str
    gpu: str
    tp: int
    layers: int


@dataclass(frozen=True)
class Replica:
    """A feasible replica with its figures; `usage` is ((pool id, GPUs), ...) sorted."""

    cloud: str
    region: str
    stages: tuple[Stage, ...]
    tokens_per_s: float
    cost_per_hour: float
    usage: tuple[tuple[str, int], ...]

    @property
    def gpus(self) -> int:
        return sum(n for _, n in self.usage)

    def to_json(self, count: int = 1) -> dict[str, Any]:
        """The replica in the `replan solve` JSON shape."""
        return {
            "count": count,
            "cloud": self.cloud,
            "region": self.region,
            "tokens_per_s": self.tokens_per_s,
            "cost_per_hour": self.cost_per_hour,
            "stages": [
                {"pool": s.pool, "gpu": s.gpu, "tp": s.tp, "layers": s.layers} for s in self.stages
            ],
        }


@dataclass(frozen=True)
class PlanFigures:
    """A feasible plan: (replica, count) pairs with its totals."""

    replicas: tuple[tuple[Replica, int], ...]
    tokens_per_s: float
    cost_per_hour: float
    gpus: int

    @property
    def ratio(self) -> float:
        """C / T in $/h per token/s."""
        return self.cost_per_hour / self.tokens_per_s

    def to_json(self) -> dict[str, Any]:
        """The plan in the `replan solve` JSON shape."""
        return {
            "tokens_per_s": self.tokens_per_s,
            "cost_per_hour": self.cost_per_hour,
            "cost_per_token": self.cost_per_hour / (3600.0 * self.tokens_per_s),
            "replicas": [r.to_json(n) for r, n in self.replicas],
        }


@dataclass(frozen=True)
class RefResult:
    """The reference optimum of one strategy."""

    strategy: str
    objective: float
    tokens_per_s: float
    cost_per_hour: float
    gpus: int
    plan_count: int
    ties: int  # feasible plans whose objective is within 1e-9 of the optimum
    plan: PlanFigures

    @property
    def cost_per_token(self) -> float:
        return self.cost_per_hour / (3600.0 * self.tokens_per_s)


# ---------------------------------------------------------------- scenario helpers


def with_defaults(scenario: dict) -> dict:
    """A deep copy with the solver defaults applied and efficiency keys made ints."""
    sc = copy.deepcopy(scenario)
    solver = {**DEFAULT_SOLVER, **(sc.get("solver") or {})}
    for key, value in DEFAULT_SOLVER.items():
        if solver[key] is None:
            solver[key] = copy.deepcopy(value)
    solver["tp_degrees"] = sorted(int(t) for t in solver["tp_degrees"])
    solver["tp_efficiency"] = _int_keys(solver["tp_efficiency"])
    sc["solver"] = solver
    sc["pools"] = [dict(p) for p in sc.get("pools") or []]
    for pool in sc["pools"]:
        if pool.get("tp_efficiency") is not None:
            pool["tp_efficiency"] = _int_keys(pool["tp_efficiency"])
    return sc


def _int_keys(mapping: dict) -> dict[int, float]:
    return {int(k): float(v) for k, v in mapping.items()}


def _efficiency(sc: dict, pool: dict, tp: int) -> float | None:
    """Efficiency of `tp` on `pool` (pool map first), None when the degree is not listed."""
    table = pool.get("tp_efficiency") or sc["solver"]["tp_efficiency"]
    return table.get(tp)


def _tp_allowed(sc: dict, pool: dict, tp: int) -> bool:
    return (
        tp in sc["solver"]["tp_degrees"]
        and tp <= int(pool["max_tp"])
        and _efficiency(sc, pool, tp) is not None
    )


def _fits(sc: dict, pool: dict, tp: int, layers: int) -> bool:
    """The memory rule n * layer_memory <= t * memory * utilisation (rel. tol. 1e-9)."""
    need = layers * float(sc["model"]["layer_memory_gb"])
    have = tp * float(pool["memory_gb"]) * float(sc["solver"]["memory_utilization"])
    return need <= have * (1 + REL_TOL)


def _stage_rate(sc: dict, pool: dict, tp: int, layers: int) -> float:
    """r = tokens_per_s(p) * (L / n) * t * eff(p, t)."""
    num_layers = int(sc["model"]["num_layers"])
    eff = _efficiency(sc, pool, tp)
    assert eff is not None
    return float(pool["tokens_per_s"]) * (num_layers / layers) * tp * eff


def _at_least(value: float, bound: float) -> bool:
    return value >= bound - REL_TOL * abs(bound)


def _at_most(value: float, bound: float) -> bool:
    return value <= bound + REL_TOL * abs(bound)


# ---------------------------------------------------------------- replicas


def _compositions(total: int, caps: list[int]) -> Iterator[tuple[int, ...]]:
    """Every (n_1..n_k) with 1 <= n_i <= caps[i] and sum n_i = total."""
    if len(caps) == 1:
        if 1 <= total <= caps[0]:
            yield (total,)
        return
    rest = len(caps) - 1
    for first in range(1, min(caps[0], total - rest) + 1):
        for tail in _compositions(total - first, caps[1:]):
            yield (first, *tail)


def _layer_cap(sc: dict, pool: dict, tp: int) -> int:
    """Most layers one stage of `tp` GPUs of `pool` may hold under the memory rule."""
    num_layers = int(sc["model"]["num_layers"])
    cap = 0
    while cap < num_layers and _fits(sc, pool, tp, cap + 1):
        cap += 1
    return cap


def _best_replica(sc: dict, items: tuple[tuple[dict, int], ...]) -> Replica | None:
    """The highest-throughput layer split of the stage multiset `items`, or None."""
    num_layers = int(sc["model"]["num_layers"])
    caps = [_layer_cap(sc, pool, tp) for pool, tp in items]
    best: tuple[float, tuple[int, ...]] | None = None
    for split in _compositions(num_layers, caps):
        rate = min(_stage_rate(sc, pool, tp, n) for (pool, tp), n in zip(items, split, strict=True))
        if best is None or rate > best[0]:
            best = (rate, split)
    if best is None:
        return None
    rate, split = best
    usage: dict[str, int] = {}
    for pool, tp in items:
        usage[pool["id"]] = usage.get(pool["id"], 0) + tp
    first = items[0][0]
    return Replica(
        cloud=str(first["cloud"]),
        region=str(first["region"]),
        stages=tuple(
            Stage(pool["id"], str(pool["gpu"]), tp, n)
            for (pool, tp), n in zip(items, split, strict=True)
        ),
        tokens_per_s=rate,
        cost_per_hour=sum(tp * float(pool["price_per_gpu_hour"]) for pool, tp in items),
        usage=tuple(sorted(usage.items())),
    )


def _stage_multisets(sc: dict, pools: list[dict]) -> Iterator[tuple[tuple[dict, int], ...]]:
    """Multisets of (pool, tp) of size 1..max_stages within one (cloud, region)."""
    items = [
        (pool, tp)
        for pool in pools
        for tp in sc["solver"]["tp_degrees"]
        if int(pool["available"]) >= tp and _tp_allowed(sc, pool, tp)
    ]
    homogeneous = bool(sc["solver"]["homogeneous_replicas"])
    for k in range(1, int(sc["solver"]["max_stages"]) + 1):
        for combo in itertools.combinations_with_replacement(items, k):
            if homogeneous and len({pool["id"] for pool, _ in combo}) > 1:
                continue
            used: dict[str, int] = {}
            for pool, tp in combo:
                used[pool["id"]] = used.get(pool["id"], 0) + tp
            if all(used[pool["id"]] <= int(pool["available"]) for pool, _ in combo):
                yield combo


def _regions(sc: dict) -> dict[tuple[str, str], list[dict]]:
    regions: dict[tuple[str, str], list[dict]] = {}
    for pool in sc["pools"]:
        regions.setdefault((str(pool["cloud"]), str(pool["region"])), []).append(pool)
    return regions


def _replicas(sc: dict) -> list[Replica]:
    """feasible_replicas on a scenario that already has its defaults."""
    found = []
    for pools in _regions(sc).values():
        for combo in _stage_multisets(sc, pools):
            replica = _best_replica(sc, combo)
            if replica is not None:
                found.append(replica)
    return found


def feasible_replicas(scenario: dict) -> list[Replica]:
    """Every feasible replica, one (the best layer split) per stage multiset."""
    return _replicas(with_defaults(scenario))


# ---------------------------------------------------------------- plans

PlanPoint = tuple[tuple[int, ...], float, float, int]  # (replica indices, T, C, GPUs)


def _plan_points(sc: dict) -> tuple[list[Replica], list[PlanPoint]]:
    """All feasible plans as (sorted replica indices with repeats, T, C, GPUs)."""
    replicas = _replicas(sc)
    solver = sc["solver"]
    demand = float(solver["demand_tokens_per_s"] or 0)
    budget = solver["budget_per_hour"]
    budget = None if budget is None else float(budget)
    remaining = {pool["id"]: int(pool["available"]) for pool in sc["pools"]}
    points: list[PlanPoint] = []
    path: list[int] = []

    def fits(j: int, cost: float) -> bool:
        rep = replicas[j]
        if budget is not None and not _at_most(cost + rep.cost_per_hour, budget):
            return False  # every replica costs > 0, so C only grows along a branch
        return all(remaining[p] >= n for p, n in rep.usage)

    def visit(candidates: list[int], t: float, c: float, g: int) -> None:
        for j in candidates:
            rep = replicas[j]
            for p, n in rep.usage:
                remaining[p] -= n
            path.append(j)
            nt, nc, ng = t + rep.tokens_per_s, c + rep.cost_per_hour, g + rep.gpus
            if _at_least(nt, demand):
                points.append((tuple(path), nt, nc, ng))
            children = [k for k in candidates if k >= j and fits(k, nc)]
            if children:
                visit(children, nt, nc, ng)
            path.pop()
            for p, n in rep.usage:
                remaining[p] += n

    visit([j for j in range(len(replicas)) if fits(j, 0.0)], 0.0, 0.0, 0)
    return replicas, points


def _figures(replicas: list[Replica], point: PlanPoint) -> PlanFigures:
    indices, t, c, g = point
    counts = sorted((j, n) for j, n in _count(indices).items())
    return PlanFigures(tuple((replicas[j], n) for j, n in counts), t, c, g)


def _count(indices: tuple[int, ...]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for j in indices:
        counts[j] = counts.get(j, 0) + 1
    return counts


def feasible_plans(scenario: dict) -> Iterator[PlanFigures]:
    """Every feasible plan: multisets of feasible replicas within availability, D and B."""
    replicas, points = _plan_points(with_defaults(scenario))
    for point in points:
        yield _figures(replicas, point)


# ---------------------------------------------------------------- optimum


def _norms(sc: dict) -> tuple[float, float]:
    """T_norm = sum available * tokens_per_s, C_norm = sum available * price."""
    t_norm = sum(int(p["available"]) * float(p["tokens_per_s"]) for p in sc["pools"])
    c_norm = sum(int(p["available"]) * float(p["price_per_gpu_hour"]) for p in sc["pools"])
    return t_norm, c_norm


def _check_strategy(sc: dict, strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    if strategy == "min-cost" and not float(sc["solver"]["demand_tokens_per_s"] or 0) > 0:
        raise ValueError("min-cost needs solver.demand_tokens_per_s > 0")
    if strategy == "max-throughput" and sc["solver"]["budget_per_hour"] is None:
        raise ValueError("max-throughput needs solver.budget_per_hour")


def _objective(sc: dict, strategy: str, t: float, c: float) -> float:
    """The strategy's objective value of a plan with throughput t and cost c."""
    if strategy == "exact":
        return c / t
    if strategy == "min-cost":
        return c
    if strategy == "max-throughput":
        return t
    w = float(sc["solver"]["cost_throughput_weight"])
    t_norm, c_norm = _norms(sc)
    return (1 - w) * t / t_norm - w * c / c_norm


def _sense(strategy: str) -> int:
    """+1 when the strategy minimises its objective, -1 when it maximises."""
    return 1 if strategy in ("exact", "min-cost") else -1


def _within(value: float, best: float) -> bool:
    return abs(value - best) <= REL_TOL * max(abs(best), abs(value), 1e-300)


def _keep_best(points: list[PlanPoint], key_value: Any, minimise: bool) -> list[PlanPoint]:
    """The points whose key is optimal within the relative tolerance."""
    values = [key_value(p) for p in points]
    best = min(values) if minimise else max(values)
    return [p for p, v in zip(points, values, strict=True) if _within(v, best)]


def reference_optimum(scenario: dict, strategy: str) -> RefResult | None:
    """The true optimum of `strategy` over all feasible plans; None when there is none."""
    sc = with_defaults(scenario)
    _check_strategy(sc, strategy)
    replicas, points = _plan_points(sc)
    if not points:
        return None
    sense = _sense(strategy)
    tied = _keep_best(points, lambda p: sense * _objective(sc, strategy, p[1], p[2]), True)
    ties = len(tied)
    if strategy == "min-cost":
        tied = _keep_best(tied, lambda p: p[1], False)  # then higher T
    else:
        tied = _keep_best(tied, lambda p: p[2], True)  # then lower C
    best = min(tied, key=lambda p: (p[3], p[2], -p[1], p[0]))  # then fewer GPUs
    _, t, c, g = best
    return RefResult(
        strategy=strategy,
        objective=_objective(sc, strategy, t, c),
        tokens_per_s=t,
        cost_per_hour=c,
        gpus=g,
        plan_count=len(points),
        ties=ties,
        plan=_figures(replicas, best),
    )


# ---------------------------------------------------------------- re-check


def _check_stage(sc: dict, where: str, stage: dict, pools: dict[str, dict]) -> dict:
    """Assert the per-stage rules (pool known, TP, layers, memory); return the pool."""
    pool_id = stage.get("pool")
    assert pool_id in pools, f"{where}: unknown pool {pool_id!r}"
    pool = pools[pool_id]
    tp, layers = stage.get("tp"), stage.get("layers")
    if "gpu" in stage:
        assert stage["gpu"] == pool["gpu"], f"{where}: gpu {stage['gpu']!r} != {pool['gpu']!r}"
    assert isinstance(tp, int) and not isinstance(tp, bool), f"{where}: tp {tp!r} not an int"
    assert isinstance(layers, int) and not isinstance(layers, bool), f"{where}: layers not int"
    assert layers >= 1, f"{where}: layers {layers} < 1"
    assert tp in sc["solver"]["tp_degrees"], f"{where}: tp {tp} not in tp_degrees"
    assert tp <= int(pool["max_tp"]), f"{where}: tp {tp} > max_tp {pool['max_tp']}"
    assert _efficiency(sc, pool, tp) is not None, f"{where}: tp {tp} not in tp_efficiency"
    assert _fits(sc, pool, tp, layers), (
        f"{where}: memory: {layers} layers x {sc['model']['layer_memory_gb']} GB > "
        f"{tp} x {pool['memory_gb']} GB x {sc['solver']['memory_utilization']}"
    )
    return pool


def _check_replica(
    sc: dict, index: int, replica: dict, pools: dict[str, dict]
) -> tuple[int, float, float, dict[str, int]]:
    """Assert one replica entry's rules; return (count, its T, its C, GPUs per pool)."""
    where = f"replica {index}"
    count = replica.get("count")
    assert isinstance(count, int) and not isinstance(count, bool), f"{where}: count not int"
    assert count >= 1, f"{where}: count {count} < 1"
    stages = replica.get("stages") or []
    assert stages, f"{where}: no stages"
    max_stages = int(sc["solver"]["max_stages"])
    assert len(stages) <= max_stages, f"{where}: {len(stages)} stages > max_stages {max_stages}"
    chosen = [_check_stage(sc, f"{where} stage {i}", s, pools) for i, s in enumerate(stages)]
    declared = (replica.get("cloud"), replica.get("region"))
    for pool in chosen:
        place = (pool["cloud"], pool["region"])
        assert place == declared, f"{where}: pool {pool['id']} is in {place}, replica in {declared}"
    if sc["solver"]["homogeneous_replicas"]:
        ids = {pool["id"] for pool in chosen}
        assert len(ids) == 1, f"{where}: homogeneous_replicas but stages on pools {sorted(ids)}"
    num_layers = int(sc["model"]["num_layers"])
    total = sum(s["layers"] for s in stages)
    assert total == num_layers, f"{where}: layers sum to {total}, model has {num_layers}"
    rate = min(
        _stage_rate(sc, pool, s["tp"], s["layers"]) for pool, s in zip(chosen, stages, strict=True)
    )
    cost = sum(
        s["tp"] * float(pool["price_per_gpu_hour"]) for pool, s in zip(chosen, stages, strict=True)
    )
    usage: dict[str, int] = {}
    for pool, s in zip(chosen, stages, strict=True):
        usage[pool["id"]] = usage.get(pool["id"], 0) + s["tp"]
    return count, rate, cost, usage


def recheck_plan(scenario: dict, plan: dict) -> tuple[float, float]:
    """Recompute (T, C) of a `replan solve` JSON plan from its stages; assert feasibility."""
    sc = with_defaults(scenario)
    pools = {pool["id"]: pool for pool in sc["pools"]}
    entries = plan.get("replicas") or []
    assert entries, "plan has no replicas"
    used = dict.fromkeys(pools, 0)
    t_total = c_total = 0.0
    for index, replica in enumerate(entries):
        count, rate, cost, usage = _check_replica(sc, index, replica, pools)
        t_total += count * rate
        c_total += count * cost
        for pool_id, n in usage.items():
            used[pool_id] += count * n
    for pool_id, n in used.items():
        available = int(pools[pool_id]["available"])
        assert n <= available, f"pool {pool_id}: uses {n} GPUs, {available} available"
    demand = float(sc["solver"]["demand_tokens_per_s"] or 0)
    assert _at_least(t_total, demand), f"throughput {t_total} < demand {demand}"
    budget = sc["solver"]["budget_per_hour"]
    if budget is not None:
        assert _at_most(c_total, float(budget)), f"cost {c_total} > budget {budget}"
    return t_total, c_total
