"""Fleet figures of a plan from its replicas and the scenario: per model, capacity, resilience.

Used by `Plan.to_json` (the contract's `models`, `capacity` and `resilience` blocks) and by
`plan_violations` (quotas, per-model demand, resilience re-checked from the stages).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from solver.scenario import Pool, Scenario

if TYPE_CHECKING:
    from solver.plan import ReplicaGroup

SECONDS_PER_HOUR = 3600.0


def model_of(scenario: Scenario | None, group: ReplicaGroup) -> str:
    """The group's model name (a pre-fleet group serves the scenario's first model)."""
    if group.model or scenario is None:
        return group.model
    return scenario.model.name


def tokens_by_model(scenario: Scenario, groups: Iterable[ReplicaGroup]) -> dict[str, float]:
    """T_m per model name (every model of the scenario, 0 when it has no replica)."""
    result = {model.name: 0.0 for model in scenario.models}
    for group in groups:
        name = model_of(scenario, group)
        result[name] = result.get(name, 0.0) + group.count * group.tokens_per_s
    return result


def useful_tokens_per_s(scenario: Scenario, groups: Iterable[ReplicaGroup]) -> float:
    """V = sum_m min(T_m, U_m)."""
    total = 0.0
    for name, tokens in tokens_by_model(scenario, groups).items():
        try:
            cap = scenario.model_named(name).useful_tokens_per_s
        except KeyError:
            cap = None
        total += tokens if cap is None else min(tokens, cap)
    return total


def _market(scenario: Scenario | None, pool_id: str) -> str:
    if scenario is None:
        return "on-demand"
    try:
        return scenario.pool(pool_id).market
    except KeyError:
        return "on-demand"


def replica_json(scenario: Scenario | None, group: ReplicaGroup) -> dict[str, Any]:
    """One replica group in the contract's JSON shape, with its model and each stage's market."""
    return {
        "count": group.count,
        "model": model_of(scenario, group),
        "cloud": group.cloud,
        "region": group.region,
        "tokens_per_s": group.tokens_per_s,
        "cost_per_hour": group.cost_per_hour,
        "stages": [
            {
                "pool": s.pool,
                "gpu": s.gpu,
                "tp": s.tp,
                "layers": s.layers,
                "market": _market(scenario, s.pool),
            }
            for s in group.stages
        ],
    }


def gpus_by_pool(groups: Iterable[ReplicaGroup]) -> dict[str, int]:
    used: dict[str, int] = {}
    for group in groups:
        for stage in group.stages:
            used[stage.pool] = used.get(stage.pool, 0) + group.count * stage.tp
    return used


def _exposed(scenario: Scenario, group: ReplicaGroup, domain: tuple[str, ...]) -> bool:
    """A replica is exposed to a domain when one of its stages is on a spot pool inside it."""
    for stage in group.stages:
        try:
            pool: Pool = scenario.pool(stage.pool)
        except KeyError:
            continue
        where = (pool.cloud, pool.region) if len(domain) == 2 else (pool.cloud,)
        if pool.spot and where == domain:
            return True
    return False


def spot_domains(scenario: Scenario) -> list[tuple[str, ...]]:
    """Failure domains holding a spot pool: (cloud, region) or (cloud,), sorted."""
    kind = scenario.solver.survive_spot_loss
    if kind == "none":
        return []
    return sorted(
        {(p.cloud, p.region) if kind == "region" else (p.cloud,) for p in scenario.pools if p.spot}
    )


def tokens_left(
    scenario: Scenario, groups: list[ReplicaGroup], domain: tuple[str, ...]
) -> dict[str, float]:
    """Per model name: throughput of its replicas not exposed to `domain`."""
    left = {model.name: 0.0 for model in scenario.models}
    for group in groups:
        if not _exposed(scenario, group, domain):
            name = model_of(scenario, group)
            left[name] = left.get(name, 0.0) + group.count * group.tokens_per_s
    return left


def fleet_json(scenario: Scenario, groups: tuple[ReplicaGroup, ...]) -> dict[str, Any]:
    """The contract's `models`, `capacity` and (with survive_spot_loss) `resilience` blocks."""
    result: dict[str, Any] = {
        "models": [_model_json(scenario, groups, name) for name in _names(scenario)],
        "capacity": _capacity_json(scenario, groups),
    }
    if scenario.solver.survive_spot_loss != "none":
        result["resilience"] = _resilience_json(scenario, list(groups))
    return result


def _names(scenario: Scenario) -> list[str]:
    return [model.name for model in scenario.models]


def _model_json(scenario: Scenario, groups: tuple[ReplicaGroup, ...], name: str) -> dict[str, Any]:
    mine = [g for g in groups if model_of(scenario, g) == name]
    model = scenario.model_named(name)
    tokens = sum(g.count * g.tokens_per_s for g in mine)
    cost = sum(g.count * g.cost_per_hour for g in mine)
    cap = model.useful_tokens_per_s
    useful = tokens if cap is None else min(tokens, cap)
    return {
        "name": name,
        "demand_tokens_per_s": model.demand_tokens_per_s,
        "tokens_per_s": tokens,
        "useful_tokens_per_s": useful,
        "cost_per_hour": cost,
        "cost_per_token": cost / (SECONDS_PER_HOUR * useful) if useful > 0 else None,
        "gpus": sum(g.count * g.gpus for g in mine),
        "replicas": [replica_json(scenario, g) for g in mine],
    }


def quota_use(scenario: Scenario, groups: Iterable[ReplicaGroup]) -> list[int]:
    """GPUs used under each quota, in the scenario's order."""
    used = gpus_by_pool(groups)
    return [
        sum(n for pool_id, n in used.items() if _known(scenario, pool_id, quota.matches))
        for quota in scenario.quotas
    ]


def _known(scenario: Scenario, pool_id: str, test: Any) -> bool:
    try:
        return bool(test(scenario.pool(pool_id)))
    except KeyError:
        return False


def _capacity_json(scenario: Scenario, groups: tuple[ReplicaGroup, ...]) -> dict[str, Any]:
    used = gpus_by_pool(groups)
    pools = [
        {
            "pool": pool.id,
            "market": pool.market,
            "used_gpus": used.get(pool.id, 0),
            "available_gpus": pool.available,
        }
        for pool in scenario.pools
    ]
    quotas = [
        {
            "label": quota.label,
            "cloud": quota.cloud,
            "region": quota.region,
            "gpu": quota.gpu,
            "market": quota.market,
            "used_gpus": count,
            "max_gpus": quota.max_gpus,
        }
        for quota, count in zip(scenario.quotas, quota_use(scenario, groups), strict=True)
    ]
    return {"pools": pools, "quotas": quotas}


def _resilience_json(scenario: Scenario, groups: list[ReplicaGroup]) -> dict[str, Any]:
    fraction = scenario.solver.survive_fraction
    domains = []
    for domain in spot_domains(scenario):
        left = tokens_left(scenario, groups, domain)
        models = [
            {
                "name": model.name,
                "demand_tokens_per_s": model.demand_tokens_per_s,
                "required_tokens_per_s": fraction * model.demand_tokens_per_s,
                "tokens_per_s_left": left.get(model.name, 0.0),
            }
            for model in scenario.models
        ]
        domains.append({"domain": "/".join(domain), "models": models})
    total_gpus = sum(g.count * g.gpus for g in groups)
    spot_gpus = sum(
        g.count * s.tp for g in groups for s in g.stages if _market(scenario, s.pool) == "spot"
    )
    return {
        "domain_kind": scenario.solver.survive_spot_loss,
        "fraction": fraction,
        "domains": domains,
        "spot_share": spot_gpus / total_gpus if total_gpus else 0.0,  # of the plan's GPUs
    }


def fleet_violations(
    scenario: Scenario, groups: tuple[ReplicaGroup, ...], rel_tol: float = 1e-9
) -> list[str]:
    """Quotas above max_gpus, a model below its demand, a spot domain's loss below f * D_m."""
    problems: list[str] = []
    for quota, used in zip(scenario.quotas, quota_use(scenario, groups), strict=True):
        if used > quota.max_gpus:
            problems.append(f"quota {quota.label}: uses {used} GPUs, max_gpus {quota.max_gpus}")
    by_model = tokens_by_model(scenario, groups)
    if len(scenario.models) > 1:
        for model in scenario.models:
            tokens = by_model.get(model.name, 0.0)
            if tokens < model.demand_tokens_per_s * (1 - rel_tol):
                problems.append(
                    f"model {model.name}: throughput {tokens:g} below demand "
                    f"{model.demand_tokens_per_s:g}"
                )
    fraction = scenario.solver.survive_fraction
    for domain in spot_domains(scenario):
        left = tokens_left(scenario, list(groups), domain)
        for model in scenario.models:
            need = fraction * model.demand_tokens_per_s
            if need > 0 and left.get(model.name, 0.0) < need * (1 - rel_tol):
                problems.append(
                    f"spot loss in {'/'.join(domain)}: model {model.name} keeps "
                    f"{left.get(model.name, 0.0):g} tokens/s, needs {need:g}"
                )
    return problems
