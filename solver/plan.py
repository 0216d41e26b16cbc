"""Plans: replicas grouped by identical stages, figures recomputed from the stages alone."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

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

    @property
    def tokens_per_s(self) -> float:
        return sum(group.count * group.tokens_per_s for group in self.replicas)

    @property
    def cost_per_hour(self) -> float:
        return sum(group.count * group.cost_per_hour for group in self.replicas)

    @property
    def cost_per_token(self) -> float | None:
        throughput = self.tokens_per_s
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
        return {
            "strategy": self.strategy,
            "status": self.status,
            "tokens_per_s": self.tokens_per_s,
            "cost_per_hour": self.cost_per_hour,
            "cost_per_token": self.cost_per_token,
            "gpus": self.gpus,
            "replicas": [
                {
                    "count": group.count,
                    "cloud": group.cloud,
                    "region": group.region,
                    "tokens_per_s": group.tokens_per_s,
                    "cost_per_hour": group.cost_per_hour,
                    "stages": [
                        {"pool": s.pool, "gpu": s.gpu, "tp": s.tp, "layers": s.layers}
                        for s in group.stages
                    ],
                }
                for group in self.replicas
            ],
            "mip_gap": self.mip_gap,
            "solve_seconds": self.solve_seconds,
            "iterations": self.iterations,
            **({"message": self.message} if self.message else {}),
            **self.extra,
        }


def replica_figures(scenario: Scenario, stages: tuple[Stage, ...]) -> tuple[float, float]:
    """(tokens_per_s, cost_per_hour) of one replica, from its stages and the scenario only."""
    rates = [scenario.stage_tokens_per_s(scenario.pool(s.pool), s.tp, s.layers) for s in stages]
    cost = sum(s.tp * scenario.pool(s.pool).price_per_gpu_hour for s in stages)
    return min(rates), cost


def group_replicas(
    scenario: Scenario, replicas: list[tuple[str, str, tuple[Stage, ...]]]
) -> tuple[ReplicaGroup, ...]:
    """Group replicas with identical stages under a count, figures recomputed from stages."""
    counts = Counter(replicas)
    groups = []
    for (cloud, region, stages), count in sorted(counts.items(), key=lambda kv: kv[0]):
        tokens_per_s, cost_per_hour = replica_figures(scenario, stages)
        groups.append(ReplicaGroup(count, cloud, region, stages, tokens_per_s, cost_per_hour))
    return tuple(groups)


def plan_violations(scenario: Scenario, plan: Plan, rel_tol: float = 1e-9) -> list[str]:
    """Every way the plan breaks the contract's feasibility rules (empty when feasible)."""
    problems: list[str] = []
    options = scenario.solver
    model = scenario.model
    if not plan.replicas:
        problems.append("the plan has no replica")
    for index, group in enumerate(plan.replicas):
        where = f"replicas[{index}]"
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
            if s.layers < 1:
                problems.append(f"{where}: stage on {pool.id} has {s.layers} layers")
            if s.tp not in options.tp_degrees or s.tp > pool.max_tp:
                problems.append(f"{where}: tp {s.tp} not allowed on {pool.id}")
            if scenario.efficiency(pool, s.tp) is None:
                problems.append(f"{where}: no TP efficiency for tp {s.tp} on {pool.id}")
            usable_gb = s.tp * pool.memory_gb * options.memory_utilization
            if s.layers * model.layer_memory_gb > usable_gb * (1 + rel_tol):
                problems.append(f"{where}: {s.layers} layers exceed the memory of {pool.id}")
        if options.homogeneous_replicas and len(pools_used) > 1:
            problems.append(f"{where}: mixes pools {sorted(pools_used)} in a homogeneous scenario")
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
    budget = options.budget_per_hour
    if budget is not None and cost_per_hour > budget * (1 + rel_tol):
        problems.append(f"cost {cost_per_hour:g} $/h above budget {budget:g}")
    return problems
