"""Scenario types: the models, GPU pools, quotas and solver options of the placement contract.

A scenario is a fleet: one or more models share the pools and the quotas. A scenario with a
single `model:` is a fleet of one, and every figure is the one of placement-model.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_TP_DEGREES: tuple[int, ...] = (1, 2, 4, 8)
DEFAULT_TP_EFFICIENCY: Mapping[int, float] = {1: 1.0, 2: 0.9, 4: 0.8, 8: 0.7}
MARKETS: tuple[str, ...] = ("on-demand", "spot")
SPOT_LOSS_DOMAINS: tuple[str, ...] = ("none", "region", "cloud")


class ScenarioError(ValueError):
    """Bad scenario input; the message names the file, the field and the row."""


@dataclass(frozen=True)
class Model:
    name: str
    num_layers: int
    layer_memory_gb: float
    demand_tokens_per_s: float = 0.0  # D_m: this model's throughput floor
    useful_tokens_per_s: float | None = None  # U_m: throughput that counts; None: all of it


EfficiencyMap = Mapping[int, float]


@dataclass(frozen=True)
class Pool:
    id: str
    gpu: str
    cloud: str
    region: str
    available: int
    max_tp: int
    price_per_gpu_hour: float
    memory_gb: float
    tokens_per_s: float | Mapping[str, float]  # one number, or model name -> tokens/s
    tp_efficiency: EfficiencyMap | Mapping[str, EfficiencyMap] | None = None
    market: str = "on-demand"

    @property
    def location(self) -> tuple[str, str]:
        return (self.cloud, self.region)

    @property
    def spot(self) -> bool:
        return self.market == "spot"

    def rate(self, model_name: str) -> float | None:
        """Tokens/s one GPU reaches on `model_name`; None when the model cannot use the pool."""
        if isinstance(self.tokens_per_s, Mapping):
            return self.tokens_per_s.get(model_name)
        return self.tokens_per_s

    def profile(self, model_name: str) -> EfficiencyMap | None:
        """The pool's own TP-efficiency map for `model_name`, None when it has none."""
        profile = self.tp_efficiency
        if profile is None or not profile:
            return None
        if all(isinstance(value, Mapping) for value in profile.values()):
            return profile.get(model_name)  # type: ignore[return-value]
        return profile  # type: ignore[return-value]

    def efficiency(
        self, model_name: str, tp: int, default: EfficiencyMap | None = None
    ) -> float | None:
        """TP efficiency at degree `tp`: the pool's profile for the model, else `default`."""
        profile = self.profile(model_name)
        if profile is None:
            profile = default
        return None if profile is None else profile.get(tp)


@dataclass(frozen=True)
class Quota:
    """A cap on the GPUs used of every pool that matches all the fields given (None: any)."""

    cloud: str | None
    region: str | None
    gpu: str | None
    market: str | None
    max_gpus: int

    def matches(self, pool: Pool) -> bool:
        wanted = (self.cloud, self.region, self.gpu, self.market)
        have = (pool.cloud, pool.region, pool.gpu, pool.market)
        return all(w is None or w == h for w, h in zip(wanted, have, strict=True))

    @property
    def label(self) -> str:
        """E.g. `nebius/*/*/*`: the fields in order, `*` where any value matches."""
        parts = (self.cloud, self.region, self.gpu, self.market)
        return "/".join("*" if part is None else part for part in parts)


@dataclass(frozen=True)
class SolverOptions:
    tp_degrees: tuple[int, ...] = DEFAULT_TP_DEGREES
    tp_efficiency: Mapping[int, float] = field(default_factory=lambda: dict(DEFAULT_TP_EFFICIENCY))
    max_stages: int = 8
    memory_utilization: float = 0.9
    homogeneous_replicas: bool = False
    demand_tokens_per_s: float = 0.0
    budget_per_hour: float | None = None
    cost_throughput_weight: float = 0.95
    target_cost_per_token: float | None = None
    max_iterations: int = 5
    time_limit_s: float | None = None
    mip_rel_gap: float | None = None
    survive_spot_loss: str = "none"  # none | region | cloud
    survive_fraction: float = 1.0


@dataclass(frozen=True)
class Scenario:
    """Models, pools, solver options and quotas.

    `solver.demand_tokens_per_s` floors the fleet's total throughput; with a single model it
    is that model's demand (the reader sets both).
    """

    models: tuple[Model, ...]
    pools: tuple[Pool, ...]
    solver: SolverOptions
    quotas: tuple[Quota, ...] = ()

    @property
    def model(self) -> Model:
        """The first (or only) model, for one-model callers."""
        return self.models[0]

    @property
    def is_fleet(self) -> bool:
        """More than one model, quotas, spot pools or useful caps: beyond placement-model.md."""
        return (
            len(self.models) > 1
            or bool(self.quotas)
            or any(p.spot for p in self.pools)
            or any(m.useful_tokens_per_s is not None for m in self.models)
        )

    @property
    def demand_tokens_per_s(self) -> float:
        """The fleet's least throughput: the total floor or the sum of the models' demands."""
        total = sum(m.demand_tokens_per_s for m in self.models)
        return max(self.solver.demand_tokens_per_s, total)

    def pool(self, pool_id: str) -> Pool:
        for pool in self.pools:
            if pool.id == pool_id:
                return pool
        raise KeyError(pool_id)

    def model_named(self, name: str) -> Model:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)

    def model_index(self, name: str) -> int:
        for index, model in enumerate(self.models):
            if model.name == name:
                return index
        raise KeyError(name)

    def efficiency(self, pool: Pool, tp: int, model: str | None = None) -> float | None:
        """TP efficiency of `pool` at degree `tp`: the pool's profile where it has one."""
        name = self.model.name if model is None else model
        return pool.efficiency(name, tp, self.solver.tp_efficiency)

    def stage_tokens_per_s(
        self, pool: Pool, tp: int, layers: int, model: str | None = None
    ) -> float:
        """Stage rate r = tokens_per_s * (L / n) * t * efficiency, exactly as the contract."""
        target = self.model if model is None else self.model_named(model)
        efficiency = self.efficiency(pool, tp, target.name)
        if efficiency is None:
            raise KeyError(f"no TP efficiency for degree {tp} on pool {pool.id}")
        rate = pool.rate(target.name)
        if rate is None:
            raise KeyError(f"model {target.name} cannot use pool {pool.id}")
        return rate * (target.num_layers / layers) * tp * efficiency

    def quota_limit(self, pool: Pool) -> int:
        """GPUs of `pool` usable at most: its availability and every quota matching it."""
        return min([pool.available, *(q.max_gpus for q in self.quotas if q.matches(pool))])

    def for_model(self, index: int) -> Scenario:
        """The one-model scenario of model `index`: pool rates and profiles read for it.

        Pool indices are kept: a pool the model cannot use gets no GPUs (available 0), and
        each pool's availability is cut to its quotas. The single-model, quota-free scenario
        is returned as it is.
        """
        model = self.models[index]
        plain = all(
            not isinstance(p.tokens_per_s, Mapping) and p.profile(model.name) is p.tp_efficiency
            for p in self.pools
        )
        if len(self.models) == 1 and not self.quotas and plain:
            return self
        pools = []
        for pool in self.pools:
            rate = pool.rate(model.name)
            pools.append(
                replace(
                    pool,
                    tokens_per_s=1.0 if rate is None else rate,
                    tp_efficiency=pool.profile(model.name),
                    available=0 if rate is None else self.quota_limit(pool),
                )
            )
        options = replace(self.solver, demand_tokens_per_s=model.demand_tokens_per_s)
        return Scenario((model,), tuple(pools), options)

    def with_options(self, **changes: Any) -> Scenario:
        """A copy with some solver options replaced (a one-model demand moves with its model)."""
        options = {**self.solver.__dict__, **changes}
        models = self.models
        if len(models) == 1 and "demand_tokens_per_s" in changes:
            models = (replace(models[0], demand_tokens_per_s=changes["demand_tokens_per_s"]),)
        return Scenario(models, self.pools, SolverOptions(**options), self.quotas)
