"""Drop configurations that other replicas beat with no more GPUs of any pool.

Configuration c is dominated when a multiset D of other configurations uses at most c's GPUs
of every pool and reaches at least its throughput. Replacing c by D in any plan keeps every
limit (availability, demand, budget, cost and ratio caps) and is no worse for any strategy:
cost and GPUs do not grow, throughput does not shrink. So the optimum, ties included, stays
reachable without c. In a fleet D holds replicas of c's model on a subset of c's pools, so
quotas hold and D is exposed to no spot failure domain c is not (resilience rows hold).
Two cases are checked, both cheap:
- D within one pool: H_p(g), the most throughput single-pool replicas reach with g GPUs of
  pool p (an unbounded knapsack over those replicas), against every configuration;
- for a replica that spans pools, D is one such best mix per pool it uses;
- D one other configuration of the same model on the same pools with at most c's GPUs of each
  and at least its throughput, one of them strictly (`_column_dominated`; on issue 12's
  237-pool model this drops ~1 column in 5, pipelines that a smaller pipeline outruns).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from solver import deadline
from solver.replicas import ReplicaConfig


def undominated(configs: list[ReplicaConfig]) -> list[int]:
    """Indices of the configurations no mix of single-pool replicas beats (in input order)."""
    # keys are (model, pool): a replica only stands in for one of the same model
    single: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, config in enumerate(configs):
        if len(config.gpus_by_pool) == 1:
            single[(config.model, config.gpus_by_pool[0][0])].append(index)
    largest: dict[tuple[int, int], int] = defaultdict(int)
    for config in configs:
        for pool, gpus in config.gpus_by_pool:
            largest[(config.model, pool)] = max(largest[(config.model, pool)], gpus)
    best = {key: _best_throughput(configs, single[key], largest[key]) for key in largest}
    kept = []
    for index, config in enumerate(configs):
        if len(config.gpus_by_pool) == 1:
            pool, gpus = config.gpus_by_pool[0]
            key = (config.model, pool)
            rival = _best_without(configs, single[key], best[key], index, gpus)
        else:
            rival = sum(best[(config.model, pool)][gpus] for pool, gpus in config.gpus_by_pool)
        if rival < config.tokens_per_s:
            kept.append(index)
    dominated = _column_dominated(configs, kept)
    return [index for index in kept if index not in dominated]


def _column_dominated(configs: list[ReplicaConfig], indices: list[int]) -> set[int]:
    """Those of `indices` that another one of them beats alone: same model and pools, at most
    as many GPUs of every pool, at least the throughput, strictly better in one of them."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index in indices:
        config = configs[index]
        support = tuple(pool for pool, _ in config.gpus_by_pool)
        groups[(config.model, support)].append(index)
    dominated: set[int] = set()
    for members in groups.values():
        if len(members) < 2:
            continue
        pools = sorted({pool for i in members for pool, _ in configs[i].gpus_by_pool})
        column = {pool: k for k, pool in enumerate(pools)}
        gpus = np.zeros((len(members), len(pools)))
        for row, index in enumerate(members):
            for pool, count in configs[index].gpus_by_pool:
                gpus[row, column[pool]] = count
        tokens = np.array([configs[index].tokens_per_s for index in members])
        order = np.argsort(-tokens, kind="stable")  # a rival has at least the throughput
        gpus, tokens = gpus[order], tokens[order]
        rivals_end = np.searchsorted(-tokens, -tokens, side="right")
        for row, position in enumerate(order):
            if row % 64 == 0 and deadline.expired():
                return dominated  # fewer columns dropped is still exact
            end = rivals_end[row]
            rivals, own = gpus[:end], gpus[row]
            strict = (tokens[:end] > tokens[row]) | np.any(rivals < own, axis=1)
            if np.any(np.all(rivals <= own, axis=1) & strict):
                dominated.add(members[position])
    return dominated


def _best_throughput(
    configs: list[ReplicaConfig], members: list[int], gpus_max: int
) -> list[float]:
    """H[g]: most throughput of single-pool replicas using at most g GPUs (unbounded knapsack)."""
    best = [0.0] * (gpus_max + 1)
    for gpus in range(1, gpus_max + 1):
        value = best[gpus - 1]
        for index in members:
            size = configs[index].gpus
            if size <= gpus:
                value = max(value, best[gpus - size] + configs[index].tokens_per_s)
        best[gpus] = value
    return best


def _best_without(
    configs: list[ReplicaConfig], members: list[int], best: list[float], skip: int, gpus: int
) -> float:
    """Most throughput with at most `gpus` GPUs by any mix other than configuration `skip` alone.

    A rival with the same GPUs and the same throughput counts only when it comes first, so two
    equal configurations do not remove each other.
    """
    rival = best[gpus - 1]  # fewer GPUs
    own = configs[skip]
    for index in members:
        other = configs[index]
        if index == skip or other.gpus > gpus:
            continue
        value = other.tokens_per_s + best[gpus - other.gpus]
        if other.gpus == gpus and value == own.tokens_per_s and index > skip:
            continue
        rival = max(rival, value)
    return rival
