"""The most negative reduced cost of one location by the bottleneck rate, not by multisets.

A replica's throughput is its slowest stage's rate, one of the finitely many a_s / n (a stage
type s at n layers). At a rate theta, stage type s carries at most cap_s(theta) layers (its
memory, and n with a_s / n >= theta), and a multiset of at most S stages reaches theta exactly
when its caps sum to at least L. So the least reduced cost is

    min over theta of  C(theta) - gain * theta + constant,

with C(theta) the least sum of stage values of a multiset covering L at theta within each
pool's GPUs: a small knapsack (stages x layers) over the pools, solved by dynamic programming.
C grows with theta, so C(theta_lo) - gain * theta_hi bounds a whole interval of rates and a
bisection over the sorted rates skips most of them. This replaces a multiset search that a
flat bound cannot cut at S = 16 (stage values near zero: every mix of them looks as good).

The multiset found need not be one the listing keeps (`replicas.location_configs` drops
configurations another matches with the same GPUs), so the caller lists the canonical ones
within the found multiset's pools.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from solver import deadline
from solver.replicas import (
    BestOf,
    PricingBound,
    ReplicaConfig,
    SearchBudget,
    StageType,
    completion_bounds,
    configs_by_model,
    location_configs,
    location_groups,
)
from solver.scenario import Scenario


@dataclass(frozen=True)
class _PoolChoices:
    """Every nonzero count vector of one pool's stage types within its GPUs and S stages."""

    types: list[int]  # indices into the location's stage types
    counts: np.ndarray  # (choices, len(types)) stages of each type
    stages: np.ndarray  # (choices,) stages of each choice
    values: np.ndarray  # (choices,) sum of stage values of each choice


def applies(bound: PricingBound) -> bool:
    """The rate search needs a positive gain per token/s and no spot exposure terms."""
    return not bound.exposed_loss and bound.tokens_gain > 0


def least_multiset(
    scenario: Scenario, types: list[StageType], bound: PricingBound, limit: float
) -> tuple[float, list[int]] | None:
    """(least reduced cost, stage-type indices of a multiset reaching it) when at most `limit`."""
    layers_total = scenario.model.num_layers
    max_stages = min(scenario.solver.max_stages, layers_total)
    values = [bound.stage_values[(t.pool_index, t.tp)] for t in types]
    rates = [
        np.array([scenario.stage_tokens_per_s(t.pool, t.tp, n) for n in range(1, t.max_layers + 1)])
        for t in types
    ]
    thetas = np.unique(np.concatenate(rates)) if rates else np.array([])
    if not len(thetas):
        return None
    least_values = [bound.stage_lower_bound(t, layers_total) for t in types]
    if completion_bounds(types, least_values, max_stages)[0][max_stages] + bound.constant > limit:
        return None  # not even at fluid throughput (sum of a_s / L) can a replica get below
    pools = _pool_choices(types, values, max_stages)
    gain, constant = bound.tokens_gain, bound.constant
    cover: dict[int, float] = {}

    def least_cost(k: int) -> float:
        if k not in cover:
            deadline.check()
            caps = [int(np.count_nonzero(r >= thetas[k])) for r in rates]
            cover[k] = _cover(pools, caps, max_stages, layers_total)[0]
        return cover[k]

    best = (math.nextafter(limit, math.inf), -1)  # a value below it is at most the limit
    # intervals of rate indices [lo, hi], least lower bound first
    heap = [(least_cost(0) - gain * thetas[-1] + constant, 0, len(thetas) - 1)]
    while heap:
        lower, lo, hi = heapq.heappop(heap)
        if lower >= best[0]:
            break
        for k in (lo, hi):
            value = least_cost(k) - gain * thetas[k] + constant
            if value < best[0]:
                best = (value, k)
        if hi - lo <= 1:
            continue
        mid = (lo + hi) // 2
        for a, b in ((lo, mid), (mid, hi)):
            bound_ab = least_cost(a) - gain * thetas[b] + constant
            if bound_ab < best[0]:
                heapq.heappush(heap, (bound_ab, a, b))
    if best[1] < 0:
        return None
    caps = [int(np.count_nonzero(r >= thetas[best[1]])) for r in rates]
    return best[0], _cover(pools, caps, max_stages, layers_total, trace=True)[1]


def _pool_choices(
    types: list[StageType], values: list[float], max_stages: int
) -> list[_PoolChoices]:
    """The choices of each pool of the location, valued at this pricing's stage values."""
    by_pool: dict[int, list[int]] = {}
    for i, t in enumerate(types):
        by_pool.setdefault(t.pool_index, []).append(i)
    result = []
    for members in by_pool.values():
        tps = tuple(types[i].tp for i in members)
        counts = _count_vectors(tps, types[members[0]].pool.available, max_stages)
        result.append(
            _PoolChoices(
                members,
                counts,
                counts.sum(axis=1),
                counts @ np.array([values[i] for i in members]),
            )
        )
    return result


@functools.lru_cache(maxsize=1024)
def _count_vectors(tps: tuple[int, ...], available: int, max_stages: int) -> np.ndarray:
    """Every nonzero vector of stage counts per degree within `available` GPUs and S stages."""
    ranges = [range(min(max_stages, available // tp) + 1) for tp in tps]
    vectors = [
        c
        for c in itertools.product(*ranges)
        if 0 < sum(c) <= max_stages
        and sum(n * tp for n, tp in zip(c, tps, strict=True)) <= available
    ]
    counts = np.array(vectors, dtype=np.int64).reshape(len(vectors), len(tps))
    counts.flags.writeable = False
    return counts


def _cover(
    pools: list[_PoolChoices],
    caps: list[int],
    max_stages: int,
    layers_total: int,
    trace: bool = False,
) -> tuple[float, list[int]]:
    """Least value of at most S stages whose caps sum to L (and, traced, the stage types)."""
    table = np.full((max_stages + 1, layers_total + 1), math.inf)
    table[0, 0] = 0.0
    tables = [table]
    rows = max_stages + 1
    for pool in pools:
        caps_of = np.array([caps[i] for i in pool.types])
        layers = np.minimum(pool.counts @ caps_of, layers_total)
        usable = (pool.counts[:, caps_of == 0].sum(axis=1) == 0) & (layers > 0)
        if not usable.any():
            tables.append(table)
            continue
        kept = _undominated(
            pool.stages[usable], layers[usable], pool.values[usable], max_stages, layers_total
        )
        new = table.copy()
        for k, n, value in kept:
            source = table[: rows - k]
            target = new[k:]
            np.minimum(
                target[:, n:layers_total],
                source[:, : layers_total - n] + value,
                out=target[:, n:layers_total],
            )
            np.minimum(
                target[:, layers_total],
                source[:, layers_total - n :].min(axis=1) + value,
                out=target[:, layers_total],
            )
        table = new
        tables.append(table)
    k_best = int(np.argmin(table[:, layers_total]))
    value = float(table[k_best, layers_total])
    if value == math.inf or not trace:
        return value, []
    return value, _trace(pools, tables, caps, k_best, layers_total)


def _undominated(
    stages: np.ndarray, layers: np.ndarray, values: np.ndarray, max_stages: int, layers_total: int
) -> list[tuple[int, int, float]]:
    """(stages, layers, least value) of the choices no other beats: none with no more stages,
    no fewer layers and no more value (one of equal ones stays)."""
    least = np.full((max_stages + 1, layers_total + 2), math.inf)
    np.minimum.at(least, (stages, layers), values)
    # best[k, n]: least value with at most k stages and at least n layers
    best = np.minimum.accumulate(np.minimum.accumulate(least[:, ::-1], axis=1)[:, ::-1], axis=0)
    beaten = np.full_like(least, math.inf)  # least value of a choice that beats (k, n)
    beaten[1:, :] = best[:-1, :]
    beaten[:, :-1] = np.minimum(beaten[:, :-1], best[:, 1:])
    ks, ns = np.nonzero(least < beaten)
    return [(int(k), int(n), float(least[k, n])) for k, n in zip(ks, ns, strict=True)]


def _trace(
    pools: list[_PoolChoices],
    tables: list[np.ndarray],
    caps: list[int],
    k: int,
    layers: int,
) -> list[int]:
    """Stage-type indices of a multiset attaining tables[-1][k, layers]."""
    layers_total = tables[0].shape[1] - 1
    chosen: list[int] = []
    for p in range(len(pools) - 1, -1, -1):
        target = tables[p + 1][k, layers]
        previous = tables[p]
        if previous[k, layers] == target:
            continue
        pool = pools[p]
        caps_of = np.array([caps[i] for i in pool.types])
        found = False
        for c in range(len(pool.stages)):
            if np.any((pool.counts[c] > 0) & (caps_of == 0)):
                continue
            kc = int(pool.stages[c])
            n = min(int(pool.counts[c] @ caps_of), layers_total)
            if kc > k or n == 0:
                continue
            if layers < layers_total:
                sources = [layers - n] if layers - n >= 0 else []
            else:
                sources = list(range(layers_total - n, layers_total + 1))
            for source in sources:
                if previous[k - kc, source] + pool.values[c] == target:
                    for i, count in zip(pool.types, pool.counts[c], strict=True):
                        chosen.extend([i] * int(count))
                    k, layers, found = k - kc, source, True
                    break
            if found:
                break
        if not found:
            raise AssertionError("cover table does not trace back")
    return sorted(chosen)


def best_fleet_configs(
    scenario: Scenario, bounds: list[PricingBound], budget: SearchBudget, per_location: int
) -> list[ReplicaConfig]:
    """Per model and location, up to about `per_location` canonical configurations of least
    reduced cost within each bound's threshold: at least one wherever one exists (the pools
    of the location's least multiset first, the whole location if none there)."""

    def best_of_model(view: Scenario, index: int) -> list[ReplicaConfig]:
        bound = bounds[index]
        found: list[ReplicaConfig] = []
        for cloud, region, types in location_groups(view):
            seek = replace(bound, best_of=BestOf(per_location))
            if not applies(bound):
                found.extend(location_configs(view, cloud, region, types, seek, budget))
                continue
            least = least_multiset(view, types, bound, bound.threshold)
            if least is None:
                continue  # no configuration of this location is below the threshold
            pools = {types[i].pool_index for i in least[1]}
            within = [t for t in types if t.pool_index in pools]
            best = location_configs(view, cloud, region, within, seek, budget)
            if not best:  # the multiset's canonical parts are all above the threshold
                best = location_configs(view, cloud, region, types, seek, budget)
            found.extend(best)
        return found

    return configs_by_model(scenario, best_of_model)
