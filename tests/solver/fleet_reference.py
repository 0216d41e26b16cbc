"""Exhaustive reference solver for tiny fleets (tests only).

Written straight from the contract (spec/fleet-model.md on top of placement-model.md),
independent of `solver/`: plain scenario dicts in, every feasible fleet plan enumerated
(multisets of per-model replica configurations), no optimisation library. The replicas of
one model are those of `tests/solver/reference.py`, run on a one-model view of the fleet
(the pools that model can use, with its own rate and efficiency map): the per-replica rules
are the same. Only for tiny fleets (2 models, a few pools, a few GPUs, short pipelines).

Decisions where the contract is silent:
- A pool `tokens_per_s` given as a number applies to every model of the fleet.
- A pool `tp_efficiency` map by model name that lacks a model: that model uses the
  solver-wide map on that pool.
- A `models:` document ignores `solver.demand_tokens_per_s`; a `model:` document's
  model has that demand (CONTRACT.md) and no useful cap.
- Plans whose useful throughput V is 0 have no C/V: they are not candidates of `exact`
  (nor of `max-throughput`, whose objective is V, they are never better than V > 0 there).
- Tie order after the objective (within 1e-9): exact → lower C, then fewer GPUs (the
  contract); min-cost → higher V, then fewer GPUs; max-throughput and weighted → lower C,
  then fewer GPUs. Only `objective` is determined by the contract for the last three.
- Comparisons (demand, budget, resilience, ties) use a relative tolerance of 1e-9.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from tests.solver import reference
from tests.solver.reference import Replica

REL_TOL = reference.REL_TOL
STRATEGIES = reference.STRATEGIES
MARKETS = ("on-demand", "spot")
DOMAIN_KINDS = ("none", "region", "cloud")
QUOTA_FIELDS = ("cloud", "region", "gpu", "market")
_FLEET_SOLVER_KEYS = ("survive_spot_loss", "survive_fraction")


@dataclass(frozen=True)
class FleetModel:
    """One model of the fleet with its demand D_m and useful cap U_m (None: no cap)."""

    name: str
    num_layers: int
    layer_memory_gb: float
    demand_tokens_per_s: float
    useful_tokens_per_s: float | None

    def useful(self, tokens_per_s: float) -> float:
        """V_m = min(T_m, U_m)."""
        if self.useful_tokens_per_s is None:
            return tokens_per_s
        return min(tokens_per_s, self.useful_tokens_per_s)


@dataclass(frozen=True)
class ModelFigures:
    """Per-model totals of a fleet plan."""

    name: str
    tokens_per_s: float
    useful_tokens_per_s: float
    cost_per_hour: float
    gpus: int


@dataclass(frozen=True)
class FleetResult:
    """The reference optimum of one strategy on a fleet."""

    strategy: str
    objective: float
    cost_per_hour: float
    tokens_per_s: float
    useful_tokens_per_s: float
    gpus: int
    plan_count: int  # feasible fleet plans enumerated
    ties: int  # feasible plans whose objective is within 1e-9 of the optimum
    models: tuple[ModelFigures, ...]
    replicas: tuple[tuple[str, Replica, int], ...]  # (model name, replica, count)
    markets: dict[str, str]  # pool id -> market, for the JSON stages

    @property
    def cost_per_token(self) -> float:
        """Fleet $/token = C / (3600 V)."""
        return self.cost_per_hour / (3600.0 * self.useful_tokens_per_s)

    def to_json(self) -> dict[str, Any]:
        """The plan in the CONTRACT.md JSON shape (top-level figures, replicas, models)."""
        return {
            "strategy": self.strategy,
            "status": "optimal",
            "tokens_per_s": self.tokens_per_s,
            "useful_tokens_per_s": self.useful_tokens_per_s,
            "cost_per_hour": self.cost_per_hour,
            "cost_per_token": self.cost_per_token,
            "gpus": self.gpus,
            "replicas": [
                {"model": name, **_replica_json(rep, count, self.markets)}
                for name, rep, count in self.replicas
            ],
            "models": [
                {
                    "name": m.name,
                    "tokens_per_s": m.tokens_per_s,
                    "useful_tokens_per_s": m.useful_tokens_per_s,
                    "cost_per_hour": m.cost_per_hour,
                    "gpus": m.gpus,
                }
                for m in self.models
            ],
        }


def _replica_json(replica: Replica, count: int, markets: dict[str, str]) -> dict[str, Any]:
    out = replica.to_json(count)
    for stage in out["stages"]:
        stage["market"] = markets[stage["pool"]]
    return out


# ---------------------------------------------------------------- the fleet view


@dataclass(frozen=True)
class _Fleet:
    """A fleet scenario with defaults applied, as the enumeration needs it."""

    models: tuple[FleetModel, ...]
    pools: tuple[dict, ...]  # with "market" set
    solver: dict  # reference defaults plus survive_spot_loss / survive_fraction
    quotas: tuple[dict, ...]
    views: tuple[dict, ...]  # per model: a one-model scenario (reference.with_defaults)

    @property
    def budget(self) -> float | None:
        budget = self.solver["budget_per_hour"]
        return None if budget is None else float(budget)


def model_rate(pool: dict, model_name: str) -> float | None:
    """tokens_per_s of `pool` for one model; None when the model cannot use the pool."""
    rate = pool.get("tokens_per_s")
    if isinstance(rate, dict):
        value = rate.get(model_name)
        return None if value is None else float(value)
    return None if rate is None else float(rate)


def _model_efficiency(pool: dict, model_name: str) -> dict | None:
    """The pool's degree -> efficiency map for one model (None: use the solver-wide map)."""
    table = pool.get("tp_efficiency")
    if not table:
        return None
    if any(isinstance(v, dict) for v in table.values()):
        return table.get(model_name) or None
    return table


def _read_models(doc: dict) -> tuple[FleetModel, ...]:
    if doc.get("models") is not None:
        return tuple(
            FleetModel(
                name=str(m["name"]),
                num_layers=int(m["num_layers"]),
                layer_memory_gb=float(m["layer_memory_gb"]),
                demand_tokens_per_s=float(m.get("demand_tokens_per_s") or 0),
                useful_tokens_per_s=(
                    None
                    if m.get("useful_tokens_per_s") is None
                    else float(m["useful_tokens_per_s"])
                ),
            )
            for m in doc["models"]
        )
    m = doc["model"]
    demand = float((doc.get("solver") or {}).get("demand_tokens_per_s") or 0)
    return (
        FleetModel(str(m["name"]), int(m["num_layers"]), float(m["layer_memory_gb"]), demand, None),
    )


def _fleet(doc: dict) -> _Fleet:
    """Defaults applied: models, pools with markets, solver options, quotas, model views."""
    models = _read_models(doc)
    raw_solver = dict(doc.get("solver") or {})
    survive = str(raw_solver.pop("survive_spot_loss", None) or "none")
    fraction = raw_solver.pop("survive_fraction", None)
    if survive not in DOMAIN_KINDS:
        raise ValueError(f"survive_spot_loss {survive!r} not in {DOMAIN_KINDS}")
    pools = tuple({**p, "market": p.get("market") or "on-demand"} for p in doc.get("pools") or [])
    base_solver = reference.with_defaults({"model": {}, "pools": [], "solver": raw_solver})
    solver = {
        **base_solver["solver"],
        "survive_spot_loss": survive,
        "survive_fraction": 1.0 if fraction is None else float(fraction),
    }
    views = []
    for model in models:
        view_pools = []
        for pool in pools:
            rate = model_rate(pool, model.name)
            if rate is None:
                continue
            skip = ("tokens_per_s", "tp_efficiency")
            view_pool = {k: v for k, v in pool.items() if k not in skip}
            view_pool["tokens_per_s"] = rate
            table = _model_efficiency(pool, model.name)
            if table is not None:
                view_pool["tp_efficiency"] = copy.deepcopy(table)
            view_pools.append(view_pool)
        view = {
            "model": {
                "name": model.name,
                "num_layers": model.num_layers,
                "layer_memory_gb": model.layer_memory_gb,
            },
            "pools": view_pools,
            "solver": {**raw_solver, "demand_tokens_per_s": 0, "budget_per_hour": None},
        }
        views.append(reference.with_defaults(view))
    quotas = tuple(dict(q) for q in doc.get("quotas") or [])
    return _Fleet(models, pools, solver, quotas, tuple(views))


def quota_matches(quota: dict, pool: dict) -> bool:
    """A quota matches a pool when every field it gives equals the pool's."""
    market = pool.get("market") or "on-demand"
    values = {
        "cloud": pool["cloud"],
        "region": pool["region"],
        "gpu": pool["gpu"],
        "market": market,
    }
    return all(quota.get(f) is None or str(quota[f]) == str(values[f]) for f in QUOTA_FIELDS)


def quota_label(quota: dict) -> str:
    """cloud/region/gpu/market with '*' for fields left out."""
    return "/".join("*" if quota.get(f) is None else str(quota[f]) for f in QUOTA_FIELDS)


def _domain(kind: str, cloud: str, region: str) -> tuple[str, ...]:
    return (cloud, region) if kind == "region" else (cloud,)


def spot_domains(fleet_doc: dict) -> list[tuple[str, ...]]:
    """Failure domains that hold a spot pool (empty when survive_spot_loss is none)."""
    fleet = _fleet(fleet_doc)
    return _spot_domains(fleet)


def _spot_domains(fleet: _Fleet) -> list[tuple[str, ...]]:
    kind = fleet.solver["survive_spot_loss"]
    if kind == "none":
        return []
    found = {
        _domain(kind, str(p["cloud"]), str(p["region"]))
        for p in fleet.pools
        if p["market"] == "spot"
    }
    return sorted(found)


def _exposed_domains(fleet: _Fleet, pool_ids: list[str]) -> frozenset[tuple[str, ...]]:
    """Domains a replica with stages on `pool_ids` is exposed to."""
    kind = fleet.solver["survive_spot_loss"]
    if kind == "none":
        return frozenset()
    by_id = {p["id"]: p for p in fleet.pools}
    return frozenset(
        _domain(kind, str(by_id[p]["cloud"]), str(by_id[p]["region"]))
        for p in pool_ids
        if by_id[p]["market"] == "spot"
    )


# ---------------------------------------------------------------- enumeration


@dataclass(frozen=True)
class _Column:
    """One replica configuration of one model, with its use of every shared resource."""

    model: int
    replica: Replica
    resources: tuple[tuple[int, int], ...]  # (resource index, GPUs): pools then quotas
    exposed: frozenset[tuple[str, ...]]


@dataclass(frozen=True)
class _Point:
    """One feasible fleet plan."""

    columns: tuple[int, ...]  # sorted column indices, with repeats
    model_tokens: tuple[float, ...]
    tokens_per_s: float
    useful_tokens_per_s: float
    cost_per_hour: float
    gpus: int


def _columns(fleet: _Fleet) -> tuple[list[_Column], list[int]]:
    """Every model's replica configurations and the capacity of every resource."""
    pool_index = {p["id"]: i for i, p in enumerate(fleet.pools)}
    capacity = [int(p["available"]) for p in fleet.pools]
    capacity += [int(q["max_gpus"]) for q in fleet.quotas]
    quota_pools = [{p["id"] for p in fleet.pools if quota_matches(q, p)} for q in fleet.quotas]
    columns = []
    for m, view in enumerate(fleet.views):
        for rep in reference._replicas(view):
            use = {pool_index[p]: n for p, n in rep.usage}
            for qi, members in enumerate(quota_pools):
                total = sum(n for p, n in rep.usage if p in members)
                if total:
                    use[len(fleet.pools) + qi] = total
            if any(n > capacity[r] for r, n in use.items()):
                continue  # alone it breaks a quota: part of no feasible plan
            pool_ids = [s.pool for s in rep.stages]
            columns.append(
                _Column(m, rep, tuple(sorted(use.items())), _exposed_domains(fleet, pool_ids))
            )
    return columns, capacity


def _resilient(
    fleet: _Fleet, columns: list[_Column], path: list[int], domains: list[tuple[str, ...]]
) -> bool:
    """Every domain's spot loss leaves every model at least f * D_m.

    What is left is summed over the replicas not exposed (never T_m minus what is lost:
    float cancellation would turn an exact 0 >= 0 into a false refusal).
    """
    fraction = fleet.solver["survive_fraction"]
    for domain in domains:
        left = [0.0] * len(fleet.models)
        for j in path:
            col = columns[j]
            if domain not in col.exposed:
                left[col.model] += col.replica.tokens_per_s
        for m, model in enumerate(fleet.models):
            need = fraction * model.demand_tokens_per_s
            if not reference._at_least(left[m], need):
                return False
    return True


def _points(fleet: _Fleet) -> tuple[list[_Column], list[_Point]]:
    """Every feasible fleet plan (availability, quotas, demands, budget, resilience)."""
    columns, remaining = _columns(fleet)
    budget = fleet.budget
    domains = _spot_domains(fleet)
    n_models = len(fleet.models)
    points: list[_Point] = []
    path: list[int] = []

    def fits(j: int, cost: float) -> bool:
        col = columns[j]
        if budget is not None and not reference._at_most(cost + col.replica.cost_per_hour, budget):
            return False  # every replica costs > 0, so C only grows along a branch
        return all(remaining[r] >= n for r, n in col.resources)

    def record(cost: float, gpus: int) -> None:
        model_tokens = [0.0] * n_models  # summed afresh: no drift from running sums
        for j in path:
            model_tokens[columns[j].model] += columns[j].replica.tokens_per_s
        for m, model in enumerate(fleet.models):
            if not reference._at_least(model_tokens[m], model.demand_tokens_per_s):
                return
        if domains and not _resilient(fleet, columns, path, domains):
            return
        useful = sum(model.useful(model_tokens[m]) for m, model in enumerate(fleet.models))
        points.append(
            _Point(tuple(path), tuple(model_tokens), sum(model_tokens), useful, cost, gpus)
        )

    def visit(candidates: list[int], cost: float, gpus: int) -> None:
        for j in candidates:
            col = columns[j]
            for r, n in col.resources:
                remaining[r] -= n
            path.append(j)
            new_cost, new_gpus = cost + col.replica.cost_per_hour, gpus + col.replica.gpus
            record(new_cost, new_gpus)
            children = [k for k in candidates if k >= j and fits(k, new_cost)]
            if children:
                visit(children, new_cost, new_gpus)
            path.pop()
            for r, n in col.resources:
                remaining[r] += n

    visit([j for j in range(len(columns)) if fits(j, 0.0)], 0.0, 0)
    return columns, points


# ---------------------------------------------------------------- optimum


def fleet_norms(doc: dict) -> tuple[float, float]:
    """T_norm = sum_m sum_p available_p * rate_{p,m}; C_norm = sum_p available_p * price_p."""
    fleet = _fleet(doc)
    return _norms(fleet)


def _norms(fleet: _Fleet) -> tuple[float, float]:
    t_norm = sum(
        int(p["available"]) * (model_rate(p, m.name) or 0.0)
        for p in fleet.pools
        for m in fleet.models
    )
    c_norm = sum(int(p["available"]) * float(p["price_per_gpu_hour"]) for p in fleet.pools)
    return t_norm, c_norm


def fleet_objective(doc: dict, strategy: str, cost: float, tokens: float, useful: float) -> float:
    """The strategy's objective of a fleet plan with figures (C, T, V)."""
    return _objective(_fleet(doc), strategy, cost, tokens, useful)


def _objective(fleet: _Fleet, strategy: str, cost: float, tokens: float, useful: float) -> float:
    if strategy == "exact":
        return cost / useful
    if strategy == "min-cost":
        return cost
    if strategy == "max-throughput":
        return useful
    w = float(fleet.solver["cost_throughput_weight"])
    t_norm, c_norm = _norms(fleet)
    return (1 - w) * tokens / t_norm - w * cost / c_norm


def _check_strategy(fleet: _Fleet, strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    if strategy == "min-cost" and not any(m.demand_tokens_per_s > 0 for m in fleet.models):
        raise ValueError("min-cost needs some model with demand_tokens_per_s > 0")
    if strategy == "max-throughput" and fleet.budget is None:
        raise ValueError("max-throughput needs solver.budget_per_hour")


def _keep_best(points: list[_Point], key: Any, minimise: bool) -> list[_Point]:
    values = [key(p) for p in points]
    best = min(values) if minimise else max(values)
    return [p for p, v in zip(points, values, strict=True) if reference._within(v, best)]


def fleet_reference_optimum(doc: dict, strategy: str) -> FleetResult | None:
    """The true optimum of `strategy` over every feasible fleet plan; None when there is none."""
    fleet = _fleet(doc)
    _check_strategy(fleet, strategy)
    columns, points = _points(fleet)
    if strategy in ("exact", "max-throughput"):
        points = [p for p in points if p.useful_tokens_per_s > 0]
    if not points:
        return None
    sense = 1 if strategy in ("exact", "min-cost") else -1

    def score(p: _Point) -> float:
        return sense * _objective(
            fleet, strategy, p.cost_per_hour, p.tokens_per_s, p.useful_tokens_per_s
        )

    tied = _keep_best(points, score, True)
    ties = len(tied)
    if strategy == "min-cost":
        tied = _keep_best(tied, lambda p: p.useful_tokens_per_s, False)
    else:
        tied = _keep_best(tied, lambda p: p.cost_per_hour, True)
    best = min(tied, key=lambda p: (p.gpus, p.cost_per_hour, -p.useful_tokens_per_s, p.columns))
    return _result(fleet, strategy, columns, best, len(points), ties)


def _result(
    fleet: _Fleet, strategy: str, columns: list[_Column], best: _Point, plan_count: int, ties: int
) -> FleetResult:
    counts: dict[int, int] = {}
    for j in best.columns:
        counts[j] = counts.get(j, 0) + 1
    replicas = tuple(
        (fleet.models[columns[j].model].name, columns[j].replica, n)
        for j, n in sorted(counts.items())
    )
    figures = []
    for m, model in enumerate(fleet.models):
        mine = [(columns[j].replica, n) for j, n in counts.items() if columns[j].model == m]
        tokens = sum(r.tokens_per_s * n for r, n in mine)
        figures.append(
            ModelFigures(
                name=model.name,
                tokens_per_s=tokens,
                useful_tokens_per_s=model.useful(tokens),
                cost_per_hour=sum(r.cost_per_hour * n for r, n in mine),
                gpus=sum(r.gpus * n for r, n in mine),
            )
        )
    return FleetResult(
        strategy=strategy,
        objective=_objective(
            fleet, strategy, best.cost_per_hour, best.tokens_per_s, best.useful_tokens_per_s
        ),
        cost_per_hour=best.cost_per_hour,
        tokens_per_s=best.tokens_per_s,
        useful_tokens_per_s=best.useful_tokens_per_s,
        gpus=best.gpus,
        plan_count=plan_count,
        ties=ties,
        models=tuple(figures),
        replicas=replicas,
        markets={p["id"]: p["market"] for p in fleet.pools},
    )


def fleet_plan_count(doc: dict) -> int:
    """How many feasible fleet plans the reference enumerates (sizing the generators)."""
    return len(_points(_fleet(doc))[1])


def model_replica_counts(doc: dict) -> dict[str, int]:
    """Feasible replica configurations per model (0: the model fits nowhere)."""
    fleet = _fleet(doc)
    return {
        m.name: len(reference._replicas(v)) for m, v in zip(fleet.models, fleet.views, strict=True)
    }


# ---------------------------------------------------------------- re-check


def recheck_fleet_plan(doc: dict, plan: dict) -> tuple[float, float, float]:
    """Recompute (C, T, V) of a fleet plan JSON from its stages; assert every fleet rule.

    Rules: each replica's (placement-model) rules for its model, the pool usable by that
    model, stage market = pool market, availability summed over models, every quota,
    every model's demand, the budget, and resilience (each spot domain's loss leaves each
    model at least f * D_m). Raises AssertionError naming the rule.
    """
    fleet = _fleet(doc)
    pools = {p["id"]: p for p in fleet.pools}
    names = [m.name for m in fleet.models]
    entries = plan.get("replicas") or []
    assert entries, "plan has no replicas"
    used = dict.fromkeys(pools, 0)
    model_tokens = dict.fromkeys(names, 0.0)
    cost_total = 0.0
    exposed: list[tuple[str, float, frozenset[tuple[str, ...]]]] = []  # per entry, x count
    for index, entry in enumerate(entries):
        where = f"replica {index}"
        name = entry.get("model")
        if name is None:
            assert len(names) == 1, f"{where}: no model named in a fleet of {len(names)}"
            name = names[0]
        assert name in names, f"{where}: unknown model {name!r}"
        m = names.index(name)
        view = fleet.views[m]
        view_pools = {p["id"]: p for p in view["pools"]}
        for i, stage in enumerate(entry.get("stages") or []):
            pool_id = stage.get("pool")
            assert pool_id in pools, f"{where} stage {i}: unknown pool {pool_id!r}"
            assert pool_id in view_pools, (
                f"{where} stage {i}: model {name!r} cannot use pool {pool_id!r} "
                f"(no tokens_per_s for it)"
            )
            if "market" in stage:
                assert stage["market"] == pools[pool_id]["market"], (
                    f"{where} stage {i}: market {stage['market']!r} != pool market "
                    f"{pools[pool_id]['market']!r}"
                )
        count, rate, cost, usage = reference._check_replica(view, index, entry, view_pools)
        model_tokens[name] += count * rate
        cost_total += count * cost
        for pool_id, n in usage.items():
            used[pool_id] += count * n
        stage_pools = [s["pool"] for s in entry["stages"]]
        exposed.append((name, count * rate, _exposed_domains(fleet, stage_pools)))
    for pool_id, n in used.items():
        available = int(pools[pool_id]["available"])
        assert n <= available, f"availability: pool {pool_id} uses {n} GPUs, {available} available"
    for quota in fleet.quotas:
        n = sum(used[p] for p in pools if quota_matches(quota, pools[p]))
        assert n <= int(quota["max_gpus"]), (
            f"quota {quota_label(quota)}: uses {n} GPUs, max_gpus {quota['max_gpus']}"
        )
    for model in fleet.models:
        got = model_tokens[model.name]
        assert reference._at_least(got, model.demand_tokens_per_s), (
            f"demand: model {model.name} has {got} tokens/s < demand {model.demand_tokens_per_s}"
        )
    budget = fleet.budget
    if budget is not None:
        assert reference._at_most(cost_total, budget), f"budget: cost {cost_total} > {budget}"
    fraction = fleet.solver["survive_fraction"]
    for domain in _spot_domains(fleet):
        for model in fleet.models:
            left = sum(t for n, t, doms in exposed if n == model.name and domain not in doms)
            need = fraction * model.demand_tokens_per_s
            assert reference._at_least(left, need), (
                f"resilience: losing spot in {'/'.join(domain)} leaves model {model.name} "
                f"{left} tokens/s < {fraction} x {model.demand_tokens_per_s}"
            )
    tokens_total = sum(model_tokens.values())
    useful_total = sum(m.useful(model_tokens[m.name]) for m in fleet.models)
    return cost_total, tokens_total, useful_total


def resilience_left(doc: dict, plan: dict) -> dict[tuple[str, ...], dict[str, float]]:
    """Per spot domain, per model: throughput left of a (re-checked) plan after that loss."""
    fleet = _fleet(doc)
    names = [m.name for m in fleet.models]
    out: dict[tuple[str, ...], dict[str, float]] = {}
    view_pools = [{p["id"]: p for p in v["pools"]} for v in fleet.views]
    rows = []
    for index, entry in enumerate(plan.get("replicas") or []):
        name = entry.get("model") or names[0]
        m = names.index(name)
        count, rate, _, _ = reference._check_replica(fleet.views[m], index, entry, view_pools[m])
        rows.append(
            (name, count * rate, _exposed_domains(fleet, [s["pool"] for s in entry["stages"]]))
        )
    for domain in _spot_domains(fleet):
        out[domain] = {
            name: sum(t for n, t, doms in rows if n == name and domain not in doms)
            for name in names
        }
    return out


def plan_model_figures(doc: dict, plan: dict) -> dict[str, ModelFigures]:
    """Per-model (T_m, V_m, C_m, GPUs) of a plan JSON, recomputed from its stages."""
    fleet = _fleet(doc)
    names = [m.name for m in fleet.models]
    totals = {name: [0.0, 0.0, 0] for name in names}  # tokens, cost, gpus
    for index, entry in enumerate(plan.get("replicas") or []):
        name = entry.get("model") or names[0]
        m = names.index(name)
        view_pools = {p["id"]: p for p in fleet.views[m]["pools"]}
        count, rate, cost, usage = reference._check_replica(
            fleet.views[m], index, entry, view_pools
        )
        totals[name][0] += count * rate
        totals[name][1] += count * cost
        totals[name][2] += count * sum(usage.values())
    return {
        model.name: ModelFigures(
            name=model.name,
            tokens_per_s=totals[model.name][0],
            useful_tokens_per_s=model.useful(totals[model.name][0]),
            cost_per_hour=totals[model.name][1],
            gpus=int(totals[model.name][2]),
        )
        for model in fleet.models
    }


def plan_capacity(doc: dict, plan: dict) -> tuple[dict[str, int], list[tuple[str, int, int]]]:
    """GPUs a plan JSON uses per pool, and (label, used, max_gpus) per quota in order."""
    fleet = _fleet(doc)
    used = {p["id"]: 0 for p in fleet.pools}
    for entry in plan.get("replicas") or []:
        for stage in entry["stages"]:
            used[stage["pool"]] += int(entry["count"]) * int(stage["tp"])
    by_id = {p["id"]: p for p in fleet.pools}
    quotas = [
        (
            quota_label(q),
            sum(n for p, n in used.items() if quota_matches(q, by_id[p])),
            int(q["max_gpus"]),
        )
        for q in fleet.quotas
    ]
    return used, quotas
