"""Replica groups of a plan: what one launch spec describes, and what changed since a plan."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MARKETS = ("on-demand", "spot")
MAX_NAME_CHARS = 63


class ExportError(ValueError):
    """The plan or the destination cannot be exported; the message is one line."""


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: `tp` GPUs of one pool holding `layers` consecutive layers."""

    pool: str
    gpu: str
    market: str
    tp: int
    layers: int

    @property
    def use_spot(self) -> bool:
        return self.market == "spot"


@dataclass(frozen=True)
class ReplicaGroup:
    """`count` identical replicas of one model: one launch spec."""

    model: str
    cloud: str
    region: str
    stages: tuple[Stage, ...]
    count: int

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.model, self.cloud, self.region, self.stages)

    @property
    def pp(self) -> int:
        return len(self.stages)

    @property
    def tp_degrees(self) -> list[int]:
        return [s.tp for s in self.stages]

    @property
    def layer_split(self) -> list[int]:
        return [s.layers for s in self.stages]

    @property
    def uneven_split(self) -> bool:
        return len(set(self.layer_split)) > 1

    @property
    def gpus_per_replica(self) -> int:
        return sum(self.tp_degrees)

    @property
    def single_pool(self) -> bool:
        """Every stage on the same pool (so the same GPU type and market)."""
        return len({s.pool for s in self.stages}) == 1

    @property
    def native(self) -> bool:
        """SkyServe can launch it as one task: one pool, one TP degree on every stage."""
        return self.single_pool and len(set(self.tp_degrees)) == 1

    @property
    def name(self) -> str:
        """A stable service name derived from the group's placement (same group, same name)."""
        digest = hashlib.sha256(json.dumps(_key_json(self)).encode()).hexdigest()[:6]
        first = self.stages[0]
        if self.native:
            base = f"{self.model}-{self.cloud}-{self.region}-{first.gpu}"
            base += "-spot" if first.use_spot else ""
            base += f"-tp{first.tp}" + (f"-pp{self.pp}" if self.pp > 1 else "")
            if self.uneven_split:
                base += f"-{digest}"
        else:
            base = f"{self.model}-{self.cloud}-{self.region}-mixed-pp{self.pp}-{digest}"
        name = _slug(base)
        if len(name) > MAX_NAME_CHARS:
            name = f"{name[: MAX_NAME_CHARS - 7].rstrip('-')}-{digest}"
        return name

    def describe(self) -> str:
        """One line: where and how each stage runs."""
        stages = " + ".join(
            f"{s.gpu}:{s.tp} ({s.market}, {s.layers} layers, pool {s.pool})" for s in self.stages
        )
        return f"{self.model} in {self.cloud}/{self.region}: {stages}"


def _key_json(group: ReplicaGroup) -> list[Any]:
    return [
        group.model,
        group.cloud,
        group.region,
        [[s.pool, s.gpu, s.market, s.tp, s.layers] for s in group.stages],
    ]


def _slug(text: str) -> str:
    """Lowercase letters, digits and single hyphens, starting with a letter."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug if slug[:1].isalpha() else f"r-{slug}"


def _market(stage: Mapping[str, Any], notes: list[str], where: str) -> str:
    market = stage.get("market")
    if market is None:
        pool = str(stage.get("pool", ""))
        if pool.endswith("/spot"):
            return "spot"
        notes.append(
            f"{where}: the plan does not say the market of pool {pool!r} (a pre-fleet plan); "
            "exported as on-demand"
        )
        return "on-demand"
    if market not in MARKETS:
        raise ExportError(f"{where}: market must be one of {', '.join(MARKETS)}, got {market!r}")
    return str(market)


def _positive_int(value: Any, where: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ExportError(f"{where}: {field} must be an integer >= 1, got {value!r}")
    return value


def plan_groups(
    plan: Mapping[str, Any], *, default_model: str | None = None
) -> tuple[list[ReplicaGroup], list[str]]:
    """The plan's replica groups in plan order (identical ones merged), and notes on gaps."""
    groups, notes, _ = plan_groups_by_replica(plan, default_model=default_model)
    return groups, notes


def plan_groups_by_replica(
    plan: Mapping[str, Any], *, default_model: str | None = None
) -> tuple[list[ReplicaGroup], list[str], list[tuple[Any, ...]]]:
    """`plan_groups`, plus the group key of every entry of the plan's `replicas`."""
    notes: list[str] = []
    keys: list[tuple[Any, ...]] = []
    replicas = plan.get("replicas")
    if not isinstance(replicas, list):
        raise ExportError("plan: replicas must be a list")
    merged: dict[tuple[Any, ...], ReplicaGroup] = {}
    for index, replica in enumerate(replicas):
        where = f"plan: replicas[{index}]"
        if not isinstance(replica, Mapping):
            raise ExportError(f"{where}: must be an object")
        model = replica.get("model") or default_model
        if not model:
            raise ExportError(f"{where}: model is missing and no model name was given")
        count = _positive_int(replica.get("count", 1), where, "count")
        stages_json = replica.get("stages")
        if not isinstance(stages_json, list) or not stages_json:
            raise ExportError(f"{where}: stages must be a non-empty list")
        stages = []
        for s_index, stage in enumerate(stages_json):
            s_where = f"{where}.stages[{s_index}]"
            if not isinstance(stage, Mapping) or "pool" not in stage:
                raise ExportError(f"{s_where}: must be an object with a pool")
            pool = str(stage["pool"])
            gpu = str(stage.get("gpu") or pool.removesuffix("/spot").rsplit("/", 1)[-1])
            stages.append(
                Stage(
                    pool=pool,
                    gpu=gpu,
                    market=_market(stage, notes, s_where),
                    tp=_positive_int(stage.get("tp"), s_where, "tp"),
                    layers=_positive_int(stage.get("layers"), s_where, "layers"),
                )
            )
        for field in ("cloud", "region"):
            if not replica.get(field):
                raise ExportError(f"{where}: {field} is missing")
        group = ReplicaGroup(
            model=str(model),
            cloud=str(replica["cloud"]),
            region=str(replica["region"]),
            stages=tuple(stages),
            count=count,
        )
        keys.append(group.key)
        if group.key in merged:
            old = merged[group.key]
            group = ReplicaGroup(old.model, old.cloud, old.region, old.stages, old.count + count)
        merged[group.key] = group
    names: dict[str, ReplicaGroup] = {}
    for group in merged.values():
        if group.name in names:
            raise ExportError(f"plan: two replica groups share the name {group.name}")
        names[group.name] = group
    return list(merged.values()), notes, keys


@dataclass(frozen=True)
class GroupChange:
    """How one replica group's count moves from the previous plan to this one."""

    group: ReplicaGroup
    before: int
    after: int

    @property
    def action(self) -> str:
        if self.before == 0:
            return "launch"
        if self.after == 0:
            return "stop"
        if self.after > self.before:
            return "scale up"
        if self.after < self.before:
            return "scale down"
        return "keep"


def diff_groups(previous: list[ReplicaGroup], current: list[ReplicaGroup]) -> list[GroupChange]:
    """Every group of either plan with its count before and after, current plan order first."""
    before = {g.key: g for g in previous}
    after = {g.key: g for g in current}
    changes = [
        GroupChange(g, before[g.key].count if g.key in before else 0, g.count) for g in current
    ]
    changes += [GroupChange(g, g.count, 0) for g in previous if g.key not in after]
    return changes
