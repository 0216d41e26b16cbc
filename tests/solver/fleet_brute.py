"""Brute force over tiny fleets of one-layer models (tests only), written from fleet-model.md.

Every replica is one stage (max_stages 1): a (model, pool, tp) with rate = tokens_per_s_{p,m}
* tp * efficiency(tp) and cost tp * price. Every multiset of replicas within the pools'
availability is a candidate plan; the contract's rows (quotas, per-model demand, resilience,
budget) filter it, and each strategy's objective ranks what is left. Independent of `solver/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REL = 1e-9
DEFAULT_EFFICIENCY = {1: 1.0, 2: 0.9, 4: 0.8, 8: 0.7}


@dataclass(frozen=True)
class Kind:
    model: str
    pool: dict[str, Any]
    tp: int
    tokens_per_s: float
    cost_per_hour: float


@dataclass(frozen=True)
class Best:
    objective: float
    cost_per_hour: float
    gpus: int
    tokens_per_s: float
    useful_tokens_per_s: float


def _rate(pool: dict[str, Any], model: str) -> float | None:
    rates = pool["tokens_per_s"]
    return rates.get(model) if isinstance(rates, dict) else rates


def kinds(document: dict[str, Any]) -> list[Kind]:
    """Every one-stage replica of every model that fits a pool's memory and TP limits."""
    solver = document.get("solver", {})
    degrees = solver.get("tp_degrees", [1, 2, 4, 8])
    utilisation = solver.get("memory_utilization", 0.9)
    efficiency = {int(k): v for k, v in solver.get("tp_efficiency", DEFAULT_EFFICIENCY).items()}
    result = []
    for model in document["models"]:
        assert model["num_layers"] == 1, "one-layer models only"
        for pool in document["pools"]:
            rate = _rate(pool, model["name"])
            if rate is None:
                continue
            for tp in degrees:
                if tp > pool["max_tp"] or tp > pool["available"] or tp not in efficiency:
                    continue
                if model["layer_memory_gb"] > tp * pool["memory_gb"] * utilisation * (1 + REL):
                    continue
                rate_tp = rate * tp * efficiency[tp]
                result.append(
                    Kind(model["name"], pool, tp, rate_tp, tp * pool["price_per_gpu_hour"])
                )
    return result


def _plans(kinds_: list[Kind], document: dict[str, Any]):
    """Count vectors over kinds within every pool's availability (at least one replica)."""
    left = {pool["id"]: pool["available"] for pool in document["pools"]}
    counts = [0] * len(kinds_)

    def extend(index: int):
        if index == len(kinds_):
            if any(counts):
                yield list(counts)
            return
        kind = kinds_[index]
        pool_id = kind.pool["id"]
        most = left[pool_id] // kind.tp
        for n in range(most + 1):
            counts[index] = n
            left[pool_id] -= n * kind.tp
            yield from extend(index + 1)
            left[pool_id] += n * kind.tp
        counts[index] = 0

    yield from extend(0)


def _matches(quota: dict[str, Any], pool: dict[str, Any]) -> bool:
    market = pool.get("market", "on-demand")
    have = {"cloud": pool["cloud"], "region": pool["region"], "gpu": pool["gpu"], "market": market}
    return all(quota.get(key) in (None, value) for key, value in have.items())


def _feasible(document: dict[str, Any], kinds_: list[Kind], counts: list[int]) -> bool:
    solver = document.get("solver", {})
    for quota in document.get("quotas", []):
        used = sum(n * k.tp for k, n in zip(kinds_, counts, strict=True) if _matches(quota, k.pool))
        if used > quota["max_gpus"]:
            return False
    by_model = _tokens_by_model(document, kinds_, counts)
    for model in document["models"]:
        if by_model[model["name"]] < model.get("demand_tokens_per_s", 0) * (1 - REL):
            return False
    budget = solver.get("budget_per_hour")
    cost = sum(n * k.cost_per_hour for k, n in zip(kinds_, counts, strict=True))
    if budget is not None and cost > budget * (1 + REL):
        return False
    kind_of_domain = solver.get("survive_spot_loss", "none")
    if kind_of_domain == "none":
        return True
    fraction = solver.get("survive_fraction", 1.0)
    domains = {_domain(p, kind_of_domain) for p in document["pools"] if _spot(p)}
    for domain in domains:
        for model in document["models"]:
            left = sum(
                n * k.tokens_per_s
                for k, n in zip(kinds_, counts, strict=True)
                if k.model == model["name"]
                and not (_spot(k.pool) and _domain(k.pool, kind_of_domain) == domain)
            )
            if left < fraction * model.get("demand_tokens_per_s", 0) * (1 - REL):
                return False
    return True


def _spot(pool: dict[str, Any]) -> bool:
    return pool.get("market", "on-demand") == "spot"


def _domain(pool: dict[str, Any], kind: str) -> tuple[str, ...]:
    return (pool["cloud"], pool["region"]) if kind == "region" else (pool["cloud"],)


def _tokens_by_model(
    document: dict[str, Any], kinds_: list[Kind], counts: list[int]
) -> dict[str, float]:
    result = {model["name"]: 0.0 for model in document["models"]}
    for kind, n in zip(kinds_, counts, strict=True):
        result[kind.model] += n * kind.tokens_per_s
    return result


def useful(document: dict[str, Any], by_model: dict[str, float]) -> float:
    """V = sum_m min(T_m, U_m)."""
    caps = {m["name"]: m.get("useful_tokens_per_s") for m in document["models"]}
    return sum(t if caps[name] is None else min(t, caps[name]) for name, t in by_model.items())


def objective(document: dict[str, Any], strategy: str, t: float, v: float, c: float) -> float:
    """The strategy's objective, to minimise."""
    if strategy == "exact":
        return c / v
    if strategy == "min-cost":
        return c
    if strategy == "max-throughput":
        return -v
    w = document.get("solver", {}).get("cost_throughput_weight", 0.95)
    t_norm = sum(
        p["available"] * rate
        for m in document["models"]
        for p in document["pools"]
        if (rate := _rate(p, m["name"])) is not None
    )
    c_norm = sum(p["available"] * p["price_per_gpu_hour"] for p in document["pools"])
    return -((1 - w) * t / t_norm - w * c / c_norm)


def brute_optimum(document: dict[str, Any], strategy: str) -> Best | None:
    """The least objective over every feasible plan (exact: then lower C, then fewer GPUs)."""
    kinds_ = kinds(document)
    best: Best | None = None
    for counts in _plans(kinds_, document):
        if not _feasible(document, kinds_, counts):
            continue
        by_model = _tokens_by_model(document, kinds_, counts)
        t = sum(by_model.values())
        v = useful(document, by_model)
        c = sum(n * k.cost_per_hour for k, n in zip(kinds_, counts, strict=True))
        gpus = sum(n * k.tp for k, n in zip(kinds_, counts, strict=True))
        candidate = Best(objective(document, strategy, t, v, c), c, gpus, t, v)
        if best is None or _better(candidate, best):
            best = candidate
    return best


def _better(a: Best, b: Best) -> bool:
    scale = max(abs(a.objective), abs(b.objective), 1e-300)
    if abs(a.objective - b.objective) > REL * scale:
        return a.objective < b.objective
    if abs(a.cost_per_hour - b.cost_per_hour) > REL * max(a.cost_per_hour, b.cost_per_hour):
        return a.cost_per_hour < b.cost_per_hour
    return a.gpus < b.gpus
