"""Replica configurations: the columns of the placement MILP.

A plan's figures are sums over its replicas and a replica lives in one (cloud, region), so a
plan is an integer mix of replica configurations. A configuration is a multiset of stage types
(pool, tp) — the order of stages changes no figure — with the layer split that maximises its
throughput (same GPUs and cost, so a slower split is never better for any strategy).

Enumeration is exact; two prunes drop only configurations another choice matches or beats
with the same GPUs of every pool:
- same GPUs per pool, lower throughput (e.g. one TP=2 stage vs two TP=1 stages of that pool);
- a pipeline that splits into a feasible replica plus one stage that is a replica on its own,
  when the two separate replicas together are at least as fast.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from solver.scenario import Pool, Scenario


@dataclass(frozen=True)
class StageType:
    """One pool at one tensor-parallel degree."""

    pool_index: int
    pool: Pool
    tp: int
    max_layers: int  # memory: n * layer_memory_gb <= tp * memory_gb * memory_utilization
    rate_numerator: float  # stage tokens/s times its layers: tokens_per_s * L * tp * efficiency


@dataclass(frozen=True)
class ReplicaConfig:
    """A feasible replica with its best layer split and figures recomputed from its stages."""

    cloud: str
    region: str
    stages: tuple[tuple[StageType, int], ...]  # (stage type, layers)
    tokens_per_s: float
    cost_per_hour: float
    gpus_by_pool: tuple[tuple[int, int], ...]  # (pool index, GPUs), sorted

    @property
    def gpus(self) -> int:
        return sum(count for _, count in self.gpus_by_pool)


def stage_types(scenario: Scenario) -> list[StageType]:
    """Every (pool, tp) that can hold at least one layer, per the feasibility rules."""
    options = scenario.solver
    layers_total = scenario.model.num_layers
    result: list[StageType] = []
    for index, pool in enumerate(scenario.pools):
        for tp in options.tp_degrees:
            efficiency = scenario.efficiency(pool, tp)
            if tp > pool.max_tp or tp > pool.available or efficiency is None:
                continue
            usable_gb = tp * pool.memory_gb * options.memory_utilization
            max_layers = min(layers_total, _max_layers(usable_gb, scenario.model.layer_memory_gb))
            if max_layers < 1:
                continue
            result.append(
                StageType(
                    index, pool, tp, max_layers, pool.tokens_per_s * layers_total * tp * efficiency
                )
            )
    return result


def _max_layers(usable_gb: float, layer_memory_gb: float) -> int:
    """Largest n with n * layer_memory_gb <= usable_gb, robust to float rounding."""
    n = int(usable_gb / layer_memory_gb)
    while n * layer_memory_gb > usable_gb:
        n -= 1
    while (n + 1) * layer_memory_gb <= usable_gb:
        n += 1
    return n


def best_split(scenario: Scenario, types: list[StageType]) -> tuple[list[int], float] | None:
    """Layers per stage maximising the slowest stage's rate, or None if memory cannot fit L."""
    layers_total = scenario.model.num_layers
    if len(types) > layers_total or sum(t.max_layers for t in types) < layers_total:
        return None
    layers = [1] * len(types)
    # Greedy water-filling is optimal for min-max load with unit jobs on uniform machines:
    # each next layer goes where the stage's load n/a stays lowest.
    heap = [((2) / t.rate_numerator, i) for i, t in enumerate(types) if t.max_layers > 1]
    heapq.heapify(heap)
    for _ in range(layers_total - len(types)):
        _, i = heapq.heappop(heap)
        layers[i] += 1
        if layers[i] < types[i].max_layers:
            heapq.heappush(heap, ((layers[i] + 1) / types[i].rate_numerator, i))
    rate = min(
        scenario.stage_tokens_per_s(t.pool, t.tp, n) for t, n in zip(types, layers, strict=True)
    )
    return layers, rate


def enumerate_configs(scenario: Scenario, max_configs: int = 2_000_000) -> list[ReplicaConfig]:
    """Every non-dominated feasible replica configuration of the scenario."""
    by_location: dict[tuple[str, str], list[StageType]] = {}
    for stage_type in stage_types(scenario):
        by_location.setdefault(stage_type.pool.location, []).append(stage_type)
    configs: list[ReplicaConfig] = []
    for (cloud, region), types in sorted(by_location.items()):
        groups = (
            [[t for t in types if t.pool_index == i] for i in sorted({t.pool_index for t in types})]
            if scenario.solver.homogeneous_replicas
            else [types]
        )
        for group in groups:
            configs.extend(_location_configs(scenario, cloud, region, group))
            if len(configs) > max_configs:
                raise ConfigLimitExceeded(len(configs), max_configs)
    return configs


class ConfigLimitExceeded(RuntimeError):
    """The configuration space is too large to enumerate within the limit."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"more than {limit} replica configurations ({count} so far)")


def _location_configs(
    scenario: Scenario, cloud: str, region: str, types: list[StageType]
) -> list[ReplicaConfig]:
    layers_total = scenario.model.num_layers
    # Stage types that hold the whole model alone come last: a pipeline made only of them is
    # never faster than the same stages as separate replicas (replica throughput is at most
    # sum(rate_numerator) / L, which the separate replicas reach), so they only join
    # pipelines that need them.
    types = sorted(types, key=lambda t: t.max_layers >= layers_total)
    whole = sum(1 for t in types if t.max_layers >= layers_total)
    first_whole = len(types) - whole
    single_rate = {
        i: types[i].rate_numerator / layers_total for i in range(first_whole, len(types))
    }
    best: dict[tuple[tuple[int, int], ...], ReplicaConfig] = {}
    for chosen in _multisets(scenario, types, first_whole):
        picked = [types[i] for i in chosen]
        split = best_split(scenario, picked)
        if split is None:
            continue
        layers, rate = split
        if len(chosen) > 1 and _splits_without_loss(scenario, types, chosen, rate, single_rate):
            continue
        usage: dict[int, int] = {}
        for t in picked:
            usage[t.pool_index] = usage.get(t.pool_index, 0) + t.tp
        key = tuple(sorted(usage.items()))
        incumbent = best.get(key)
        if incumbent is not None and incumbent.tokens_per_s >= rate:
            continue
        best[key] = ReplicaConfig(
            cloud=cloud,
            region=region,
            stages=tuple(zip(picked, layers, strict=True)),
            tokens_per_s=rate,
            cost_per_hour=sum(t.tp * t.pool.price_per_gpu_hour for t in picked),
            gpus_by_pool=key,
        )
    return list(best.values())


def _splits_without_loss(
    scenario: Scenario,
    types: list[StageType],
    chosen: list[int],
    rate: float,
    single_rate: dict[int, float],
) -> bool:
    """True when the stages that hold the whole model alone, run as separate replicas beside
    a replica of the other stages, reach at least `rate` with the same GPUs."""
    singles = [i for i in chosen if i in single_rate]
    if not singles:
        return False
    rest = [types[i] for i in chosen if i not in single_rate]
    rest_rate = 0.0
    if rest:
        split = best_split(scenario, rest)
        if split is None:
            return False
        rest_rate = split[1]
    return rest_rate + sum(single_rate[i] for i in singles) >= rate


def _multisets(scenario: Scenario, types: list[StageType], first_whole: int) -> Iterator[list[int]]:
    """Multisets of stage-type indices (non-decreasing) within stage and availability limits.

    Types from `first_whole` on hold the whole model: alone they form one-stage replicas;
    they join a pipeline only beside at least one type that does not.
    """
    layers_total = scenario.model.num_layers
    max_stages = min(scenario.solver.max_stages, layers_total)
    # most layers any remaining type can add per stage, for the memory-reachability cut
    best_layers_from = [0] * (len(types) + 1)
    for i in range(len(types) - 1, -1, -1):
        best_layers_from[i] = max(best_layers_from[i + 1], types[i].max_layers)
    used: dict[int, int] = {}
    chosen: list[int] = []

    def extend(start: int, layers_so_far: int) -> Iterator[list[int]]:
        for i in range(start, len(types)):
            t = types[i]
            if i >= first_whole and not chosen:
                yield [i]  # a whole-model stage alone
                continue
            slots_left = max_stages - len(chosen) - 1
            if layers_so_far + t.max_layers + slots_left * best_layers_from[i] < layers_total:
                continue  # even the roomiest remaining stages cannot fit the model
            if used.get(t.pool_index, 0) + t.tp > t.pool.available:
                continue
            used[t.pool_index] = used.get(t.pool_index, 0) + t.tp
            chosen.append(i)
            yield chosen
            if len(chosen) < max_stages:
                yield from extend(i, layers_so_far + t.max_layers)
            chosen.pop()
            used[t.pool_index] -= t.tp

    yield from extend(0, 0)
