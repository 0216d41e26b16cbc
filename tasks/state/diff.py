"""The diff and the switch decision keyed on model and market: a fleet placement names the
model each replica serves, and the same GPUs on spot and on-demand are different placements.

Built on `solver.diff` (its `PlanDiff`, `ReplicaChange` and `decide`); a pre-fleet plan (no
model, no market) diffs exactly as `solver.diff.diff_plans` diffs it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from solver.diff import (
    Decision,
    PlanDiff,
    ReplicaChange,
    cost_per_token_of,
    decide,
    gpus_by_pool,
    gpus_by_type,
    plan_from_json,
    stages_of,
)
from solver.plan import Stage

PlanJson = Mapping[str, Any]
FleetKey = tuple[str, str, str, tuple[Stage, ...], tuple[str, ...]]
"""(model, cloud, region, ordered stages, the stages' markets): what one replica places."""


@dataclass(frozen=True)
class FleetReplicaChange(ReplicaChange):
    """`count` replicas of one model's configuration added or removed."""

    model: str = ""
    markets: tuple[str, ...] = ()

    def describe(self) -> str:
        """e.g. `llama-8b: aws/us-east-1/V100/spot tp1 32L`."""
        text = super().describe()
        return f"{self.model}: {text}" if self.model else text


def _markets(replica: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(stage.get("market") or "") for stage in replica.get("stages") or [])


def fleet_placement(plan: PlanJson | None) -> Counter[FleetKey]:
    """The plan's replica multiset keyed on model and market: equal counters, same fleet."""
    placement: Counter[FleetKey] = Counter()
    for replica in (plan or {}).get("replicas") or []:
        key = (
            str(replica.get("model") or ""),
            str(replica["cloud"]),
            str(replica["region"]),
            stages_of(replica),
            _markets(replica),
        )
        placement[key] += int(replica.get("count", 1))
    return +placement


def _without_model(placement: Counter[FleetKey]) -> Counter[tuple[str, str, tuple[Stage, ...]]]:
    blind: Counter[tuple[str, str, tuple[Stage, ...]]] = Counter()
    for (_model, cloud, region, stages, _markets), count in placement.items():
        blind[(cloud, region, stages)] += count
    return blind


def _changes(placement: Counter[FleetKey]) -> tuple[FleetReplicaChange, ...]:
    return tuple(
        FleetReplicaChange(count, cloud, region, stages, model=model, markets=markets)
        for (model, cloud, region, stages, markets), count in sorted(placement.items())
    )


def _figure(plan: PlanJson | None, key: str) -> float | None:
    if plan is None or plan.get(key) is None:
        return None
    return float(plan[key])


def fleet_diff_plans(previous: PlanJson | None, current: PlanJson) -> PlanDiff:
    """Replicas added and removed per model and market, GPUs by type and pool, the figures."""
    before, after = fleet_placement(previous), fleet_placement(current)
    return PlanDiff(
        first=previous is None,
        changed=before != after,
        added=_changes(after - before),
        removed=_changes(before - after),
        gpus_by_type_before=gpus_by_type(_without_model(before)),
        gpus_by_type_after=gpus_by_type(_without_model(after)),
        gpus_by_pool_before=gpus_by_pool(_without_model(before)),
        gpus_by_pool_after=gpus_by_pool(_without_model(after)),
        cost_per_hour_before=_figure(previous, "cost_per_hour"),
        cost_per_hour_after=_figure(current, "cost_per_hour"),
        tokens_per_s_before=_figure(previous, "tokens_per_s"),
        tokens_per_s_after=_figure(current, "tokens_per_s"),
        cost_per_token_before=cost_per_token_of(previous),
        cost_per_token_after=cost_per_token_of(current),
    )


def _keyed(plan: PlanJson) -> dict[str, Any]:
    """A copy whose stage pools also name the model and market, so that `solver.diff.decide`
    (which compares placements without either) sees a change of model or market."""
    replicas = []
    for replica in plan.get("replicas") or []:
        model = str(replica.get("model") or "")
        stages = [
            {**stage, "pool": f"{model}|{stage.get('market') or ''}|{stage['pool']}"}
            for stage in replica.get("stages") or []
        ]
        replicas.append({**replica, "stages": stages})
    return {**dict(plan), "replicas": replicas}


def fleet_decide(
    previous: PlanJson | None,
    previous_violations: tuple[str, ...] | list[str],
    current: PlanJson,
    threshold: float,
) -> Decision:
    """`solver.diff.decide` with placements compared on model and market too."""
    return decide(
        _keyed(previous) if previous is not None else None,
        previous_violations,
        _keyed(current),
        threshold,
    )


# -- last night's fleet against tonight's scenario --------------------------------------------


def on_fleet_pools(plan: PlanJson, pool_ids: set[str]) -> dict[str, Any]:
    """The plan with pre-fleet pool ids (`cloud/region/GPU`, market in the stage) renamed to
    tonight's fleet pool ids (`cloud/region/GPU/market`) where such a pool exists."""
    replicas = []
    for replica in plan.get("replicas") or []:
        stages = []
        for stage in replica.get("stages") or []:
            fleet_id = f"{stage['pool']}/{stage.get('market')}"
            if stage["pool"] not in pool_ids and stage.get("market") and fleet_id in pool_ids:
                stage = {**stage, "pool": fleet_id}
            stages.append(stage)
        replicas.append({**replica, "stages": stages})
    return {**dict(plan), "replicas": replicas}


def _fleet_plan(plan: PlanJson, scenario: Any, reprice: bool) -> Any:
    """A `solver.plan.Plan` of the JSON, each replica's model kept, figures at tonight's
    prices when `reprice` (a replica on a pool gone or unusable keeps its stored figures)."""
    return plan_from_json(plan, scenario, reprice=reprice, default_model=scenario.model.name)


def _pools_of(plan: PlanJson) -> set[str]:
    return {
        str(stage["pool"])
        for replica in plan.get("replicas") or []
        for stage in replica.get("stages") or []
    }


def reprice_fleet(plan: PlanJson, scenario: Any) -> dict[str, Any]:
    """The fleet plan JSON with every figure at tonight's prices and rates, per model.

    Adds `repriced: true` when every replica could be recomputed, else `false` (a pool left).
    """
    known = {pool.id for pool in scenario.pools}
    as_json = _fleet_plan(plan, scenario, reprice=True).to_json()
    keys = ("tokens_per_s", "useful_tokens_per_s", "cost_per_hour", "cost_per_token", "gpus")
    figures = {key: as_json[key] for key in keys if key in as_json}
    figures.update(replicas=as_json["replicas"], models=as_json.get("models"))
    return {**dict(plan), **figures, "repriced": _pools_of(plan) <= known}


def recheck_fleet(plan: PlanJson, scenario: Any) -> list[str]:
    """Why last night's fleet no longer fits tonight's scenario (empty when it still does):
    pools gone, quotas below use, a model's demand or resilience no longer met."""
    from solver.plan import Plan, plan_violations

    known = {pool.id for pool in scenario.pools}
    gone = sorted(_pools_of(plan) - known)
    reasons = [f"pool {pool} is no longer offered" for pool in gone]
    rebuilt = _fleet_plan(plan, scenario, reprice=True)
    if gone:
        kept = tuple(g for g in rebuilt.replicas if not {s.pool for s in g.stages} & set(gone))
        if not kept:
            return reasons
        rebuilt = Plan(rebuilt.strategy, rebuilt.status, kept, scenario=scenario)
    violations = plan_violations(scenario, rebuilt)
    if gone:
        # the rest is checked without the lost replicas; a throughput shortfall only restates
        # that a pool left
        violations = [v for v in violations if "throughput " not in v]
    return reasons + violations


@dataclass(frozen=True)
class FleetComparison:
    """Last night's fleet against tonight's: the diff, the decision, the re-priced plan."""

    diff: PlanDiff
    decision: Decision
    previous_repriced: dict[str, Any] | None
    previous: dict[str, Any] | None  # the published plan on tonight's pool ids


def compare_fleet_to_published(
    previous: PlanJson | None, current: PlanJson, scenario: Any, threshold: float
) -> FleetComparison:
    """recheck → reprice → diff → decide for fleet plans, keyed on model and market."""
    if previous is None:
        return FleetComparison(
            fleet_diff_plans(None, current), fleet_decide(None, (), current, threshold), None, None
        )
    renamed = on_fleet_pools(previous, {pool.id for pool in scenario.pools})
    violations = tuple(recheck_fleet(renamed, scenario))
    repriced = reprice_fleet(renamed, scenario)
    return FleetComparison(
        fleet_diff_plans(renamed, current),
        fleet_decide(repriced, violations, current, threshold),
        repriced,
        renamed,
    )
