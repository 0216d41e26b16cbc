"""Compare a fresh plan with the last published one, and decide whether to publish a switch.

Works on plan JSON dicts (the `replan solve` contract, `Plan.to_json()`), so a plan read back
from the state store and a plan just solved compare alike. Pure: no Prefect, no I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from solver.plan import (
    SECONDS_PER_HOUR,
    Plan,
    ReplicaGroup,
    Stage,
    plan_violations,
    replica_figures,
)
from solver.scenario import Scenario

DEFAULT_THRESHOLD = 0.02  # relative saving of $/token or $/hour that justifies a switch

ReplicaKey = tuple[str, str, tuple[Stage, ...]]
"""(cloud, region, ordered stages): what one replica places, prices left out."""

PlanJson = Mapping[str, Any]


# -- placements ---------------------------------------------------------------------------


def stages_of(replica: Mapping[str, Any]) -> tuple[Stage, ...]:
    """The replica's stages as `Stage`s (a stored plan may lack `gpu`)."""
    return tuple(
        Stage(str(s["pool"]), str(s.get("gpu", "")), int(s["tp"]), int(s["layers"]))
        for s in replica.get("stages") or []
    )


def placement_of(plan_json: PlanJson | None) -> Counter[ReplicaKey]:
    """The plan's canonical replica multiset: equal counters mean the same placement."""
    placement: Counter[ReplicaKey] = Counter()
    for replica in (plan_json or {}).get("replicas") or []:
        key = (str(replica["cloud"]), str(replica["region"]), stages_of(replica))
        placement[key] += int(replica.get("count", 1))
    return +placement  # drops zero counts


def pools_of(key: ReplicaKey) -> tuple[str, ...]:
    """Distinct pools a replica uses, in stage order."""
    return tuple(dict.fromkeys(stage.pool for stage in key[2]))


def gpus_by_type(placement: Counter[ReplicaKey]) -> dict[str, int]:
    """GPUs used per GPU type."""
    used: Counter[str] = Counter()
    for (_cloud, _region, stages), count in placement.items():
        for stage in stages:
            used[stage.gpu or "?"] += count * stage.tp
    return dict(sorted(used.items()))


def gpus_by_pool(placement: Counter[ReplicaKey]) -> dict[str, int]:
    """GPUs used per pool."""
    used: Counter[str] = Counter()
    for (_cloud, _region, stages), count in placement.items():
        for stage in stages:
            used[stage.pool] += count * stage.tp
    return dict(sorted(used.items()))


def _delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """after − before for every key of either, zero deltas left out."""
    keys = sorted(set(before) | set(after))
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in keys if after.get(k, 0) != before.get(k, 0)
    }


# -- the diff -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaChange:
    """`count` replicas of one configuration added to or removed from the placement."""

    count: int
    cloud: str
    region: str
    stages: tuple[Stage, ...]

    @property
    def pools(self) -> tuple[str, ...]:
        return pools_of((self.cloud, self.region, self.stages))

    @property
    def gpus_per_replica(self) -> int:
        return sum(stage.tp for stage in self.stages)

    def describe(self) -> str:
        """e.g. `aws/us-east-1/V100 tp1 32L` (stages joined by ` → `)."""
        return " → ".join(f"{s.pool} tp{s.tp} {s.layers}L" for s in self.stages)


@dataclass(frozen=True)
class PlanDiff:
    """What moved between the previous placement and the current one."""

    first: bool  # no previous plan
    changed: bool
    added: tuple[ReplicaChange, ...]
    removed: tuple[ReplicaChange, ...]
    gpus_by_type_before: dict[str, int]
    gpus_by_type_after: dict[str, int]
    gpus_by_pool_before: dict[str, int]
    gpus_by_pool_after: dict[str, int]
    cost_per_hour_before: float | None
    cost_per_hour_after: float | None
    tokens_per_s_before: float | None
    tokens_per_s_after: float | None
    cost_per_token_before: float | None
    cost_per_token_after: float | None

    @property
    def gpus_by_type_delta(self) -> dict[str, int]:
        return _delta(self.gpus_by_type_before, self.gpus_by_type_after)

    @property
    def gpus_by_pool_delta(self) -> dict[str, int]:
        return _delta(self.gpus_by_pool_before, self.gpus_by_pool_after)

    @property
    def replicas_added_by_pool(self) -> dict[str, int]:
        """Replicas added that have a stage on the pool."""
        return _count_by_pool(self.added)

    @property
    def replicas_removed_by_pool(self) -> dict[str, int]:
        """Replicas removed that had a stage on the pool."""
        return _count_by_pool(self.removed)

    def to_json(self) -> dict[str, Any]:
        """JSON-able summary (for the state store or an artifact)."""

        def changes(items: Sequence[ReplicaChange]) -> list[dict[str, Any]]:
            return [
                {
                    "count": c.count,
                    "cloud": c.cloud,
                    "region": c.region,
                    "stages": [s.__dict__ for s in c.stages],
                }
                for c in items
            ]

        return {
            "first": self.first,
            "changed": self.changed,
            "added": changes(self.added),
            "removed": changes(self.removed),
            "replicas_added_by_pool": self.replicas_added_by_pool,
            "replicas_removed_by_pool": self.replicas_removed_by_pool,
            "gpus_by_type_before": self.gpus_by_type_before,
            "gpus_by_type_after": self.gpus_by_type_after,
            "gpus_by_type_delta": self.gpus_by_type_delta,
            "gpus_by_pool_delta": self.gpus_by_pool_delta,
            "cost_per_hour_before": self.cost_per_hour_before,
            "cost_per_hour_after": self.cost_per_hour_after,
            "tokens_per_s_before": self.tokens_per_s_before,
            "tokens_per_s_after": self.tokens_per_s_after,
            "cost_per_token_before": self.cost_per_token_before,
            "cost_per_token_after": self.cost_per_token_after,
        }


def _count_by_pool(changes: Sequence[ReplicaChange]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for change in changes:
        for pool in change.pools:
            counts[pool] += change.count
    return dict(sorted(counts.items()))


def _changes(placement: Counter[ReplicaKey]) -> tuple[ReplicaChange, ...]:
    return tuple(
        ReplicaChange(count, cloud, region, stages)
        for (cloud, region, stages), count in sorted(placement.items())
    )


def diff_plans(previous: PlanJson | None, current: PlanJson) -> PlanDiff:
    """Replicas added and removed, GPUs by type and pool, and the figures before and after."""
    before = placement_of(previous)
    after = placement_of(current)
    return PlanDiff(
        first=previous is None,
        changed=before != after,
        added=_changes(after - before),
        removed=_changes(before - after),
        gpus_by_type_before=gpus_by_type(before),
        gpus_by_type_after=gpus_by_type(after),
        gpus_by_pool_before=gpus_by_pool(before),
        gpus_by_pool_after=gpus_by_pool(after),
        cost_per_hour_before=_figure(previous, "cost_per_hour"),
        cost_per_hour_after=_figure(current, "cost_per_hour"),
        tokens_per_s_before=_figure(previous, "tokens_per_s"),
        tokens_per_s_after=_figure(current, "tokens_per_s"),
        cost_per_token_before=cost_per_token_of(previous),
        cost_per_token_after=cost_per_token_of(current),
    )


def _figure(plan_json: PlanJson | None, key: str) -> float | None:
    if plan_json is None or plan_json.get(key) is None:
        return None
    return float(plan_json[key])


def cost_per_token_of(plan_json: PlanJson | None) -> float | None:
    """$/token of a plan JSON: its own field, else cost_per_hour / (3600 × tokens_per_s)."""
    if plan_json is None:
        return None
    stated = _figure(plan_json, "cost_per_token")
    if stated is not None:
        return stated
    cost_per_hour = _figure(plan_json, "cost_per_hour")
    tokens_per_s = _figure(plan_json, "tokens_per_s")
    if cost_per_hour is None or not tokens_per_s:
        return None
    return cost_per_hour / (SECONDS_PER_HOUR * tokens_per_s)


def gap_to_exact(plan_json: PlanJson | None, exact_json: PlanJson | None) -> float | None:
    """cpt_plan / cpt_exact - 1: how much more a token costs than under the exact plan."""
    plan_cpt, exact_cpt = cost_per_token_of(plan_json), cost_per_token_of(exact_json)
    if plan_cpt is None or not exact_cpt or not math.isfinite(plan_cpt * exact_cpt):
        return None
    return plan_cpt / exact_cpt - 1.0


# -- last night's placement against tonight's scenario ------------------------------------


def plan_from_json(
    plan_json: PlanJson,
    scenario: Scenario | None = None,
    *,
    reprice: bool = True,
    default_model: str = "",
) -> Plan:
    """Rebuild a `Plan`; with a scenario (and `reprice`), replica figures are recomputed at its
    prices. A replica without a `model` gets `default_model` ("": the scenario's first model).

    A replica on a pool the scenario no longer has keeps its stored figures.
    """
    groups = []
    for replica in plan_json.get("replicas") or []:
        stages = stages_of(replica)
        tokens_per_s = float(replica.get("tokens_per_s") or 0.0)
        cost_per_hour = float(replica.get("cost_per_hour") or 0.0)
        model = str(replica.get("model") or default_model)
        if scenario is not None and reprice:
            # A pool gone or a stage unusable keeps the stored figures: recheck_previous says why.
            with suppress(KeyError, ValueError, ZeroDivisionError):
                tokens_per_s, cost_per_hour = replica_figures(scenario, stages, model)
        groups.append(
            ReplicaGroup(
                count=int(replica.get("count", 1)),
                cloud=str(replica["cloud"]),
                region=str(replica["region"]),
                stages=stages,
                tokens_per_s=tokens_per_s,
                cost_per_hour=cost_per_hour,
                model=model,
            )
        )
    return Plan(
        strategy=str(plan_json.get("strategy", "exact")),
        status=str(plan_json.get("status", "optimal")),
        replicas=tuple(groups),
        scenario=scenario,
    )


def reprice_plan(plan_json: PlanJson, scenario: Scenario) -> dict[str, Any]:
    """The plan JSON with its figures recomputed at tonight's prices and rates.

    Adds `repriced: true` when every replica could be recomputed, else `false` (a pool left).
    """
    known = {pool.id for pool in scenario.pools}
    all_known = all(
        key_pool in known for key in placement_of(plan_json) for key_pool in pools_of(key)
    )
    rebuilt = plan_from_json(plan_json, scenario)
    return {**dict(plan_json), **_figures_json(rebuilt), "repriced": all_known}


def _figures_json(plan: Plan) -> dict[str, Any]:
    as_json = plan.to_json()
    keys = (
        "tokens_per_s",
        "useful_tokens_per_s",
        "cost_per_hour",
        "cost_per_token",
        "gpus",
        "replicas",
    )
    return {key: as_json[key] for key in keys}


def recheck_previous(previous_plan_json: PlanJson, scenario: Scenario) -> list[str]:
    """Why last night's placement no longer fits tonight's scenario (empty when it still does).

    Pools gone, quota below use, demand no longer met, budget exceeded at tonight's prices,
    plus any other contract rule `plan_violations` finds.
    """
    known = {pool.id for pool in scenario.pools}
    gone = sorted(
        {pool for key in placement_of(previous_plan_json) for pool in pools_of(key)} - known
    )
    reasons = [f"pool {pool} is no longer offered" for pool in gone]
    plan = plan_from_json(previous_plan_json, scenario)
    if gone:
        plan = _without_pools(plan, set(gone))
        if not plan.replicas:
            return reasons
    violations = plan_violations(scenario, plan)
    if gone:
        # The rest is checked without the lost replicas; its throughput shortfall only restates
        # that a pool left, so it is not repeated.
        violations = [v for v in violations if not v.startswith("throughput ")]
    return reasons + [_plain(v) for v in violations]


def _without_pools(plan: Plan, pools: set[str]) -> Plan:
    kept = tuple(g for g in plan.replicas if not {s.pool for s in g.stages} & pools)
    return Plan(plan.strategy, plan.status, kept, scenario=plan.scenario)


def _plain(violation: str) -> str:
    """Reword the contract checker's quota message for a reader of the report."""
    if violation.startswith("pool ") and " available" in violation:
        return violation.replace(": uses ", ": quota fell below use: uses ", 1)
    return violation


# -- the decision -------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """Publish tonight's plan or keep the published one, and why."""

    publish: bool
    reason: str
    kind: str  # initial | infeasible | saving | unchanged | below-threshold | no-plan
    threshold: float = DEFAULT_THRESHOLD
    saving_cost_per_token: float | None = None  # relative, 0.05 = 5 % cheaper per token
    saving_cost_per_hour: float | None = None  # relative
    previous_cost_per_token: float | None = None  # last night's placement as compared
    previous_cost_per_hour: float | None = None
    previous_tokens_per_s: float | None = None
    violations: tuple[str, ...] = field(default_factory=tuple)


def _relative_saving(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before <= 0:
        return None
    return 1.0 - after / before


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def decide(
    previous: PlanJson | None,
    previous_violations: Sequence[str],
    current: PlanJson,
    threshold: float = DEFAULT_THRESHOLD,
) -> Decision:
    """Publish on the first run, when last night's plan broke, or when the saving is worth it.

    `previous` should be last night's placement re-priced at tonight's prices (`reprice_plan`):
    that is the fair comparison. A saving of either $/token or $/hour at or above `threshold`
    (relative) publishes the switch; smaller savings are kept back to avoid flapping.
    """
    previous_figures = {
        "previous_cost_per_token": cost_per_token_of(previous),
        "previous_cost_per_hour": _figure(previous, "cost_per_hour"),
        "previous_tokens_per_s": _figure(previous, "tokens_per_s"),
    }
    violations = tuple(previous_violations)
    common: dict[str, Any] = {"threshold": threshold, "violations": violations, **previous_figures}
    if str(current.get("status")) not in ("optimal", "feasible") or not current.get("replicas"):
        why = str(current.get("message") or current.get("status") or "no replica")
        return Decision(False, f"no feasible plan tonight: {why}", "no-plan", **common)
    if previous is None:
        return Decision(True, "initial plan", "initial", **common)
    if placement_of(previous) == placement_of(current):
        return Decision(False, "unchanged", "unchanged", **common)
    if violations:
        return Decision(
            True, "current plan infeasible: " + "; ".join(violations), "infeasible", **common
        )
    saving_cpt = _relative_saving(
        previous_figures["previous_cost_per_token"], cost_per_token_of(current)
    )
    saving_cost = _relative_saving(
        previous_figures["previous_cost_per_hour"], _figure(current, "cost_per_hour")
    )
    savings = {"saving_cost_per_token": saving_cpt, "saving_cost_per_hour": saving_cost}
    # A hair below the threshold through float noise still counts as reaching it.
    reach = threshold - 1e-12
    if saving_cpt is not None and saving_cpt >= reach:
        return Decision(True, f"saves {_pct(saving_cpt)} $/token", "saving", **common, **savings)
    if saving_cost is not None and saving_cost >= reach:
        return Decision(
            True, f"saves {_pct(saving_cost)} cost per hour", "saving", **common, **savings
        )
    best = max((s for s in (saving_cpt, saving_cost) if s is not None), default=0.0)
    return Decision(
        False,
        f"saving below threshold ({_pct(best)} < {threshold * 100:g}%)",
        "below-threshold",
        **common,
        **savings,
    )


@dataclass(frozen=True)
class Comparison:
    """Everything the report needs about last night versus tonight."""

    diff: PlanDiff
    decision: Decision
    previous_repriced: dict[str, Any] | None


def compare_to_published(
    previous: PlanJson | None,
    current: PlanJson,
    scenario: Scenario,
    threshold: float = DEFAULT_THRESHOLD,
) -> Comparison:
    """recheck → reprice → diff → decide in one call, for one-model scenarios.

    Replicas of several models carry their model, which this diff does not key on; such fleets
    are compared by `tasks.state.diff.compare_fleet_to_published`, and asking here is an error
    rather than wrong per-model figures.
    """
    if len(scenario.models) > 1:
        raise ValueError(
            "compare_to_published compares one-model plans; for several models use "
            "tasks.state.diff.compare_fleet_to_published"
        )
    if previous is None:
        return Comparison(diff_plans(None, current), decide(None, (), current, threshold), None)
    violations = recheck_previous(previous, scenario)
    repriced = reprice_plan(previous, scenario)
    return Comparison(
        diff_plans(previous, current), decide(repriced, violations, current, threshold), repriced
    )
