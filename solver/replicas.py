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
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from solver import deadline
from solver.scenario import Pool, Scenario

NEAR_BOTTLENECK_REL = 1e-9  # stages this close to the slowest load are rated exactly


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
    model: int = 0  # index of the model in the scenario's models

    @property
    def gpus(self) -> int:
        return sum(count for _, count in self.gpus_by_pool)

    def spot_domain(self, kind: str) -> tuple[str, ...] | None:
        """The failure domain (`region` or `cloud`) whose spot loss takes this replica down."""
        if kind == "none" or not any(t.pool.spot for t, _ in self.stages):
            return None
        return (self.cloud, self.region) if kind == "region" else (self.cloud,)


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
    layers = _fluid_start(types, layers_total)
    # Greedy water-filling is optimal for min-max load with unit jobs on uniform machines:
    # each next layer goes where the stage's load n/a stays lowest. Starting from the fluid
    # split rounded down is safe: some optimal split lies above it (see _fluid_start).
    heap = [
        ((layers[i] + 1) / t.rate_numerator, i)
        for i, t in enumerate(types)
        if layers[i] < t.max_layers
    ]
    heapq.heapify(heap)
    for _ in range(layers_total - sum(layers)):
        _, i = heapq.heappop(heap)
        layers[i] += 1
        if layers[i] < types[i].max_layers:
            heapq.heappush(heap, ((layers[i] + 1) / types[i].rate_numerator, i))
    # the contract's rate of the slowest stages only: the others' loads n / rate_numerator are
    # below the bottleneck's by more than rounding (a few ulps), so they cannot be the minimum
    loads = [n / t.rate_numerator for t, n in zip(types, layers, strict=True)]
    near = max(loads) * (1 - NEAR_BOTTLENECK_REL)
    rate = min(
        scenario.stage_tokens_per_s(t.pool, t.tp, n)
        for t, n, load in zip(types, layers, loads, strict=True)
        if load >= near
    )
    return layers, rate


def _fluid_start(types: list[StageType], layers_total: int) -> list[int]:
    """A split every optimal greedy can start from: max(1, min(cap, floor(a_i * L / sum a))).

    The optimal rate r* is at most sum(a) / L, so each stage can carry floor(a_i / r*) >=
    floor(a_i * L / sum a) layers at r*; an optimal split thus exists above these floors.
    When the floors raised to 1 already exceed L, start from one layer each.
    """
    total_rate = sum(t.rate_numerator for t in types)
    layers = [
        max(1, min(t.max_layers, int(t.rate_numerator * layers_total / total_rate))) for t in types
    ]
    if sum(layers) > layers_total:
        return [1] * len(types)
    return layers


@dataclass(frozen=True)
class PricingBound:
    """Keep only configurations whose reduced cost can be at most `threshold`.

    The reduced cost of a configuration is sum(stage values) - tokens_gain * throughput +
    constant; throughput never exceeds the sum of rate_numerator / L over its stages, which
    gives each stage a lower bound of its own and lets the search cut whole subtrees.
    A configuration exposed to a spot failure domain (resilience rows) gains less per token:
    `exposed_loss[domain]` is taken off its tokens_gain.
    """

    stage_values: dict[tuple[int, int], float]  # (pool index, tp) -> additive value per stage
    tokens_gain: float  # coefficient of -throughput in the reduced cost
    constant: float
    threshold: float
    exposed_loss: dict[tuple[str, ...], float] = field(default_factory=dict)
    domain_kind: str = "none"
    best_of: BestOf | None = None  # when set, only the most negative columns are sought

    def cut(self) -> float:
        """Reduced cost a configuration must not exceed to be kept, at this point of the search."""
        return self.threshold if self.best_of is None else self.best_of.limit(self.threshold)

    def stage_lower_bound(self, stage: StageType, layers_total: int) -> float:
        """A replica with this stage is exposed to the stage's spot domain (if it is spot), so
        its gain per token/s is at most that domain's; any other stage, the largest gain."""
        if self.exposed_loss and stage.pool.spot:
            pool = stage.pool
            domain = (pool.cloud, pool.region) if self.domain_kind == "region" else (pool.cloud,)
            most_gain = self.tokens_gain - self.exposed_loss.get(domain, 0.0)
        else:
            most_gain = self.tokens_gain - min([0.0, *self.exposed_loss.values()])
        gain = max(most_gain, 0.0) * stage.rate_numerator / layers_total
        return self.stage_values[(stage.pool_index, stage.tp)] - gain

    def reduced_cost(self, config: ReplicaConfig) -> float:
        additive = sum(self.stage_values[(t.pool_index, t.tp)] for t, _ in config.stages)
        gain = self.tokens_gain
        if self.exposed_loss:
            domain = config.spot_domain(self.domain_kind)
            gain -= self.exposed_loss.get(domain, 0.0) if domain is not None else 0.0
        return additive - gain * config.tokens_per_s + self.constant


class BestOf:
    """The `count` least reduced costs found so far, shared by the searches of one pricing.

    A search for the best columns (column generation) then cuts every subtree that cannot beat
    the worst of them: the most negative configuration is always found, and at most a few
    more than `count` are kept, instead of every one below the threshold.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._negated: list[float] = []  # max-heap of the kept reduced costs

    def limit(self, threshold: float) -> float:
        """The threshold, or the worst kept reduced cost once `count` are kept."""
        if len(self._negated) < self.count:
            return threshold
        return min(threshold, -self._negated[0])

    def offer(self, reduced_cost: float) -> None:
        heapq.heappush(self._negated, -reduced_cost)
        if len(self._negated) > self.count:
            heapq.heappop(self._negated)


DEADLINE_CHECK_NODES = 2048  # a clock read every so many search nodes


class SearchBudget:
    """A cap on search nodes, so an enormous configuration space fails fast, not slowly."""

    def __init__(self, max_nodes: int | None) -> None:
        self.max_nodes = max_nodes
        self.nodes = 0
        self.cut_by_bound = 0
        self.found = 0

    def visit(self) -> None:
        self.nodes += 1
        if self.max_nodes is not None and self.nodes > self.max_nodes:
            raise ConfigLimitExceeded(self.nodes, self.max_nodes)
        if self.nodes % DEADLINE_CHECK_NODES == 0:
            deadline.check()


class ConfigLimitExceeded(RuntimeError):
    """The configuration space is too large to search within the node budget."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"more than {limit} search nodes of replica configurations ({count})")


def lower_bound_ratio(scenario: Scenario) -> float | None:
    """Least cost_per_hour / tokens_per_s of any stage type of any model: no plan does better."""
    if len(scenario.models) > 1:
        ratios = [lower_bound_ratio(scenario.for_model(i)) for i in range(len(scenario.models))]
        known = [r for r in ratios if r is not None]
        return min(known) if known else None
    scenario = scenario.for_model(0)
    layers_total = scenario.model.num_layers
    ratios = [
        t.tp * t.pool.price_per_gpu_hour / (t.rate_numerator / layers_total)
        for t in stage_types(scenario)
    ]
    return min(ratios) if ratios else None


def throughput_upper_bound(scenario: Scenario) -> float:
    """Useful tokens/s no plan exceeds: per model, every available GPU at its pool's best
    per-GPU stage rate (capped by the model's useful throughput), summed over the models."""
    if len(scenario.models) > 1:
        return sum(
            throughput_upper_bound(scenario.for_model(i)) for i in range(len(scenario.models))
        )
    scenario = scenario.for_model(0)
    useful = scenario.models[0].useful_tokens_per_s
    layers_total = scenario.model.num_layers
    best_per_gpu: dict[int, float] = {}
    for t in stage_types(scenario):
        rate = t.rate_numerator / layers_total / t.tp
        best_per_gpu[t.pool_index] = max(best_per_gpu.get(t.pool_index, 0.0), rate)
    fluid = sum(scenario.pools[i].available * rate for i, rate in best_per_gpu.items())
    return fluid if useful is None else min(fluid, useful)


def search_size(scenario: Scenario, homogeneous: bool | None = None) -> int:
    """Multisets a full listing visits: at most max_stages stage types per location, where
    types that hold the whole model alone only join pipelines with at least one that does not.
    Summed over the models of a fleet.
    """
    if len(scenario.models) > 1 or scenario.for_model(0) is not scenario:
        return sum(
            search_size(scenario.for_model(i), homogeneous) for i in range(len(scenario.models))
        )
    max_stages = min(scenario.solver.max_stages, scenario.model.num_layers)

    def multisets(kinds: int) -> int:
        return sum(math.comb(kinds + k - 1, k) for k in range(1, max_stages + 1))

    total = 0
    layers_total = scenario.model.num_layers
    for _, _, types in location_groups(scenario, homogeneous):
        whole = sum(1 for t in types if t.max_layers >= layers_total)
        total += multisets(len(types)) - multisets(whole) + whole
    return total


def location_groups(scenario: Scenario, homogeneous: bool | None = None):
    """Stage types grouped where a replica may draw from: a region, or one pool when homogeneous."""
    if homogeneous is None:
        homogeneous = scenario.solver.homogeneous_replicas
    by_location: dict[tuple[str, str], list[StageType]] = {}
    for stage_type in stage_types(scenario):
        by_location.setdefault(stage_type.pool.location, []).append(stage_type)
    for (cloud, region), types in sorted(by_location.items()):
        if homogeneous:
            for pool_index in sorted({t.pool_index for t in types}):
                yield cloud, region, [t for t in types if t.pool_index == pool_index]
        else:
            yield cloud, region, types


def fleet_configs(
    scenario: Scenario,
    *,
    homogeneous: bool | None = None,
    bounds: list[PricingBound] | None = None,
    budget: SearchBudget | None = None,
) -> list[ReplicaConfig]:
    """Every non-dominated configuration of every model (tagged with the model's index)."""

    def listed(view: Scenario, index: int) -> list[ReplicaConfig]:
        bound = None if bounds is None else bounds[index]
        return enumerate_configs(view, homogeneous=homogeneous, bound=bound, budget=budget)

    return configs_by_model(scenario, listed)


def configs_by_model(
    scenario: Scenario, find: Callable[[Scenario, int], list[ReplicaConfig]]
) -> list[ReplicaConfig]:
    """`find(one model's view, its index)` for every model, each configuration tagged with it."""
    configs: list[ReplicaConfig] = []
    for index in range(len(scenario.models)):
        found = find(scenario.for_model(index), index)
        configs.extend(found if index == 0 else [replace(c, model=index) for c in found])
    return configs


def enumerate_configs(
    scenario: Scenario,
    *,
    homogeneous: bool | None = None,
    bound: PricingBound | None = None,
    budget: SearchBudget | None = None,
) -> list[ReplicaConfig]:
    """Every non-dominated feasible replica configuration (within `bound` when given)."""
    budget = budget or SearchBudget(None)
    configs: list[ReplicaConfig] = []
    for cloud, region, types in location_groups(scenario, homogeneous):
        configs.extend(location_configs(scenario, cloud, region, types, bound, budget))
    return configs


def location_configs(
    scenario: Scenario,
    cloud: str,
    region: str,
    types: list[StageType],
    bound: PricingBound | None,
    budget: SearchBudget,
) -> list[ReplicaConfig]:
    layers_total = scenario.model.num_layers
    # Stage types that hold the whole model alone come last: a pipeline made only of them is
    # never faster than the same stages as separate replicas (replica throughput is at most
    # sum(rate_numerator) / L, which the separate replicas reach), so they only join
    # pipelines that need them.
    types = sorted(types, key=lambda t: t.max_layers >= layers_total)
    values = None if bound is None else [bound.stage_lower_bound(t, layers_total) for t in types]
    if bound is not None and bound.best_of is not None:
        # seeking the best: the stages that lower the reduced cost most come first, so the
        # first pipelines found are good and their reduced cost cuts the rest of the search
        order = sorted(
            range(len(types)), key=lambda i: (types[i].max_layers >= layers_total, values[i])
        )
        types = [types[i] for i in order]
        values = [values[i] for i in order]
    whole = sum(1 for t in types if t.max_layers >= layers_total)
    first_whole = len(types) - whole
    single_rate = {
        i: types[i].rate_numerator / layers_total for i in range(first_whole, len(types))
    }
    best: dict[tuple[tuple[int, int], ...], ReplicaConfig] = {}
    for chosen in _multisets(scenario, types, first_whole, values, bound, budget):
        picked = [types[i] for i in chosen]
        if values is not None and sum(values[i] for i in chosen) > bound.cut() - bound.constant:
            budget.cut_by_bound += 1
            continue  # not even its fluid throughput brings its reduced cost within the cut
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
        config = ReplicaConfig(
            cloud=cloud,
            region=region,
            stages=tuple(zip(picked, layers, strict=True)),
            tokens_per_s=rate,
            cost_per_hour=sum(t.tp * t.pool.price_per_gpu_hour for t in picked),
            gpus_by_pool=key,
        )
        best[key] = config
        if bound is not None and bound.best_of is not None:
            reduced_cost = bound.reduced_cost(config)
            if reduced_cost <= bound.cut():
                bound.best_of.offer(reduced_cost)
    configs = list(best.values())
    if bound is not None:
        # seeking the best, the final cut: a configuration kept for its GPUs may have lost
        # to a faster one on the same GPUs that the tightening cut skipped (and beat the cut)
        kept = [c for c in configs if bound.reduced_cost(c) <= bound.cut()]
        budget.cut_by_bound += len(configs) - len(kept)
        configs = kept
    return configs


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


def _multisets(
    scenario: Scenario,
    types: list[StageType],
    first_whole: int,
    values: list[float] | None,
    bound: PricingBound | None,
    budget: SearchBudget,
) -> Iterator[list[int]]:
    """Multisets of stage-type indices (non-decreasing) within stage and availability limits.

    Types from `first_whole` on hold the whole model: alone they form one-stage replicas;
    they join a pipeline only beside at least one type that does not. With a bound, a
    subtree is cut when even its best completion's reduced cost exceeds the threshold.
    """
    layers_total = scenario.model.num_layers
    max_stages = min(scenario.solver.max_stages, layers_total)
    count = len(types)
    # most layers any remaining type can add per stage, for the memory-reachability cut
    best_layers_from = [0] * (count + 1)
    for i in range(count - 1, -1, -1):
        best_layers_from[i] = max(best_layers_from[i + 1], types[i].max_layers)
    # most the remaining stages can lower the reduced cost, for the bound cut
    completion = completion_bounds(types, values, max_stages)
    static_limit = math.inf if bound is None else bound.threshold - bound.constant
    seeking = bound is not None and bound.best_of is not None
    used: dict[int, int] = {}
    chosen: list[int] = []

    def extend(start: int, layers_so_far: int, value_so_far: float) -> Iterator[list[int]]:
        for i in range(start, count):
            t = types[i]
            budget.visit()
            value = value_so_far + (values[i] if values is not None else 0.0)
            slots_left = max_stages - len(chosen) - 1
            limit = bound.cut() - bound.constant if seeking else static_limit
            if value + completion[i][slots_left] > limit:
                budget.cut_by_bound += 1
                continue
            if i >= first_whole and not chosen:
                yield [i]  # a whole-model stage alone
                continue
            if layers_so_far + t.max_layers + slots_left * best_layers_from[i] < layers_total:
                continue  # even the roomiest remaining stages cannot fit the model
            if used.get(t.pool_index, 0) + t.tp > t.pool.available:
                continue
            used[t.pool_index] = used.get(t.pool_index, 0) + t.tp
            chosen.append(i)
            yield chosen
            if len(chosen) < max_stages:
                yield from extend(i, layers_so_far + t.max_layers, value)
            chosen.pop()
            used[t.pool_index] -= t.tp

    yield from extend(0, 0, 0.0)


def completion_bounds(
    types: list[StageType], values: list[float] | None, max_stages: int
) -> list[list[float]]:
    """completion[i][k]: the least sum of at most k stage values of types i.. (each type at
    most as often as its pool's GPUs allow), a lower bound on what k more stages can add."""
    count = len(types)
    zeros = [0.0] * (max_stages + 1)
    if values is None:
        return [zeros] * (count + 1)
    completion = [zeros] * (count + 1)
    negatives: list[float] = []  # the max_stages most negative values of types i.., sorted
    for i in range(count - 1, -1, -1):
        if values[i] < 0:
            copies = min(max_stages, types[i].pool.available // types[i].tp)
            negatives = sorted(negatives + [values[i]] * copies)[:max_stages]
        sums = [0.0]
        for k in range(1, max_stages + 1):
            sums.append(sums[-1] + (negatives[k - 1] if k <= len(negatives) else 0.0))
        completion[i] = sums
    return completion
