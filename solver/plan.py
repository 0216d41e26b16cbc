"""Plans: replicas grouped by identical stages, figures recomputed from the stages alone."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from solver.fleet_figures import fleet_json, fleet_violations, replica_json, useful_tokens_per_s
from solver.scenario import Scenario

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, order=True)
class Stage:
    pool: str
    gpu: str
    tp: int
    layers: int


@dataclass(frozen=True)
class ReplicaGroup:
    """`count` identical replicas in one (cloud, region)."""

    count: int
    cloud: str
    region: str
    stages: tuple[Stage, ...]
    tokens_per_s: float  # of one replica
    cost_per_hour: float  # of one replica
    model: str = ""  # the model it serves; empty: the scenario's first (pre-fleet plans)

    @property
    def gpus(self) -> int:
        return sum(stage.tp for stage in self.stages)


@dataclass(frozen=True)
class Plan:
    strategy: str
    status: str  # optimal | feasible | infeasible | unknown (a time limit, no plan)
    replicas: tuple[ReplicaGroup, ...] = ()
    mip_gap: float | None = None
    solve_seconds: float = 0.0
    iterations: int = 0
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    scenario: Scenario | None = field(default=None, compare=False, repr=False)

    @property
    def tokens_per_s(self) -> float:
        """T: every replica's throughput, summed over the models."""
        return sum(group.count * group.tokens_per_s for group in self.replicas)

    @property
    def useful_tokens_per_s(self) -> float:
        """V = sum_m min(T_m, U_m); T when the plan has no scenario or no model is capped."""
        if self.scenario is None:
            return self.tokens_per_s
        return useful_tokens_per_s(self.scenario, self.replicas)

    @property
    def cost_per_hour(self) -> float:
        return sum(group.count * group.cost_per_hour for group in self.replicas)

    @property
    def cost_per_token(self) -> float | None:
        """C / (3600 V): the fleet's USD per useful token."""
        throughput = self.useful_tokens_per_s
        return self.cost_per_hour / (SECONDS_PER_HOUR * throughput) if throughput > 0 else None

    @property
    def gpus(self) -> int:
        return sum(group.count * group.gpus for group in self.replicas)

    def gpus_by_pool(self) -> dict[str, int]:
        used: Counter[str] = Counter()
        for group in self.replicas:
            for stage in group.stages:
                used[stage.pool] += group.count * stage.tp
        return dict(used)

    def placement_key(self) -> tuple[Any, ...]:
        """The replicas alone, canonically ordered: equal keys mean the same placement."""
        return tuple(sorted((g.cloud, g.region, g.stages, g.count) for g in self.replicas))

    def to_json(self) -> dict[str, Any]:
        """The `replan solve` JSON object of the contract, plus solver details."""
        scenario = self.scenario
        as_json: dict[str, Any] = {
            "strategy": self.strategy,
            "status": self.status,
            "tokens_per_s": self.tokens_per_s,
            "useful_tokens_per_s": self.useful_tokens_per_s,
            "cost_per_hour": self.cost_per_hour,
            "cost_per_token": self.cost_per_token,
            "gpus": self.gpus,
            "replicas": [replica_json(scenario, group) for group in self.replicas],
        }
        if scenario is not None:
            as_json.update(fleet_json(scenario, self.replicas))
        return {
            **as_json,
            "mip_gap": self.mip_gap,
            "solve_seconds": self.solve_seconds,
            "iterations": self.iterations,
            **({"message": self.message} if self.message else {}),
            **self.extra,
        }


def replica_figures(
    scenario: Scenario, stages: tuple[Stage, ...], model: str | None = None
) -> tuple[float, float]:
    """(tokens_per_s, cost_per_hour) of one replica of `model` (default: the first model),
    from its stages and the scenario only."""
    name = model or None
    rates = [
        scenario.stage_tokens_per_s(scenario.pool(s.pool), s.tp, s.layers, name) for s in stages
    ]
    cost = sum(s.tp * scenario.pool(s.pool).price_per_gpu_hour for s in stages)
    return min(rates), cost


def group_replicas(
    scenario: Scenario, replicas: list[tuple[str, str, tuple[Stage, ...], str]]
) -> tuple[ReplicaGroup, ...]:
    """Group replicas (cloud, region, stages, model) with identical stages under a count,
    figures recomputed from the stages; ordered by model, then place and stages."""
    counts = Counter(replicas)
    order = {model.name: index for index, model in enumerate(scenario.models)}
    groups = []
    for (cloud, region, stages, model), count in sorted(
        counts.items(), key=lambda kv: (order.get(kv[0][3], 0), kv[0])
    ):
        tokens_per_s, cost_per_hour = replica_figures(scenario, stages, model)
        groups.append(
            ReplicaGroup(count, cloud, region, stages, tokens_per_s, cost_per_hour, model)
        )
    return tuple(groups)


def plan_violations(scenario: Scenario, plan: Plan, rel_tol: float = 1e-9) -> list[str]:
    """Every way the plan breaks the contract's feasibility rules (empty when feasible)."""
    problems: list[str] = []
    options = scenario.solver
    if not plan.replicas:
        problems.append("the plan has no replica")
    for index, group in enumerate(plan.replicas):
        problems.extend(_replica_violations(scenario, f"replicas[{index}]", group, rel_tol))
    if problems:
        return problems
    for pool_id, used in plan.gpus_by_pool().items():
        if used > scenario.pool(pool_id).available:
            problems.append(
                f"pool {pool_id}: uses {used} GPUs, {scenario.pool(pool_id).available} available"
            )
    tokens_per_s = plan.tokens_per_s
    cost_per_hour = plan.cost_per_hour
    if tokens_per_s < options.demand_tokens_per_s * (1 - rel_tol):
        problems.append(f"throughput {tokens_per_s:g} below demand {options.demand_tokens_per_s:g}")
    problems.extend(fleet_violations(scenario, plan.replicas, rel_tol))
    budget = options.budget_per_hour
    if budget is not None and cost_per_hour > budget * (1 + rel_tol):
        problems.append(f"cost {cost_per_hour:g} $/h above budget {budget:g}")
    return problems


def _replica_violations(
    scenario: Scenario, where: str, group: ReplicaGroup, rel_tol: float
) -> list[str]:
    """What breaks the replica rules in one group (its model's layers, memory and rates)."""
    problems: list[str] = []
    options = scenario.solver
    try:
        model = scenario.model_named(group.model) if group.model else scenario.model
    except KeyError:
        return [f"{where}: unknown model {group.model}"]
    if group.count < 1:
        problems.append(f"{where}: count {group.count} < 1")
    if not 1 <= len(group.stages) <= options.max_stages:
        problems.append(f"{where}: {len(group.stages)} stages, max_stages {options.max_stages}")
    if sum(s.layers for s in group.stages) != model.num_layers:
        problems.append(f"{where}: layers do not sum to {model.num_layers}")
    pools_used = set()
    for s in group.stages:
        try:
            pool = scenario.pool(s.pool)
        except KeyError:
            problems.append(f"{where}: unknown pool {s.pool}")
            continue
        pools_used.add(pool.id)
        if pool.location != (group.cloud, group.region):
            problems.append(f"{where}: stage on {pool.id} outside {group.cloud}/{group.region}")
        if pool.rate(model.name) is None:
            problems.append(f"{where}: model {model.name} cannot use pool {pool.id}")
        if s.layers < 1:
            problems.append(f"{where}: stage on {pool.id} has {s.layers} layers")
        if s.tp not in options.tp_degrees or s.tp > pool.max_tp:
            problems.append(f"{where}: tp {s.tp} not allowed on {pool.id}")
        if scenario.efficiency(pool, s.tp, model.name) is None:
            problems.append(f"{where}: no TP efficiency for tp {s.tp} on {pool.id}")
        usable_gb = s.tp * pool.memory_gb * options.memory_utilization
        if s.layers * model.layer_memory_gb > usable_gb * (1 + rel_tol):
            problems.append(f"{where}: {s.layers} layers exceed the memory of {pool.id}")
    if options.homogeneous_replicas and len(pools_used) > 1:
        problems.append(f"{where}: mixes pools {sorted(pools_used)} in a homogeneous scenario")
    return problems
