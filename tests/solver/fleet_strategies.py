"""Hypothesis strategies for tiny random fleets in the scenario format of spec/fleet-model.md.

Sized so that the exhaustive fleet reference (tests/solver/fleet_reference.py) stays fast:
1-2 models (mostly 2), 2-4 pools over 1-3 (cloud, region) places, both markets (a GPU
sometimes offered on both, spot cheaper), 0-3 GPUs per pool and at most MAX_TOTAL_GPUS
in all, 1-4 layers, 1-2 stages, TP 1-2. Every model can use at least one pool (a model no
pool serves is bad input, exit 2); every quota matches at least one pool (a quota naming
nothing is bad input). Memory is set as in tests/solver/strategies.py: a stage of t GPUs
holds t * (c + 0.3) layers of the model with the largest layers, never an exact boundary.
Prices and rates sit on coarse grids so that ties happen.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

GPU_NAMES = ("A100", "L4", "T4")
PLACES = (("c0", "r0"), ("c0", "r1"), ("c1", "r0"))
MODEL_NAMES = ("m0", "m1")
TP_CHOICES = (1, 2)
EFFICIENCY_GRID = (0.5, 0.6, 0.75, 0.8, 0.9, 1.0)
MAX_TOTAL_GPUS = 8
DEMAND_FRACTIONS = (0.05, 0.1, 0.15, 0.25)
USEFUL_FRACTIONS = (0.1, 0.25, 0.5)
BUDGET_FRACTIONS = (0.3, 0.5, 0.7, 1.0)
SURVIVE_FRACTIONS = (0.5, 0.75, 1.0)

_prices = st.integers(2, 40).map(lambda k: round(0.1 * k, 2))  # 0.2 .. 4.0
_rates = st.integers(1, 20).map(lambda k: 100 * k)  # 100 .. 2000
_available = st.one_of(st.integers(1, 3), st.integers(1, 3), st.integers(0, 3))


def _round_up(value: float, step: float) -> float:
    """Value rounded up to a multiple of step (at least one step)."""
    steps = max(1, -int(-value // step))
    return round(steps * step, 2)


@st.composite
def _efficiency_map(draw: st.DrawFn, partial: bool = True) -> dict:
    """A degree -> efficiency map over 1 and 2, or (partial) sometimes one of them only."""
    choices = ((1,), (1, 2), (1, 2), (2,)) if partial else ((1, 2),)
    degrees = draw(st.sampled_from(choices))
    string_keys = draw(st.booleans())
    return {
        (str(tp) if string_keys else tp): 1.0 if tp == 1 else draw(st.sampled_from(EFFICIENCY_GRID))
        for tp in degrees
    }


@st.composite
def _models(draw: st.DrawFn) -> list[dict]:
    count = draw(st.sampled_from((1, 2, 2, 2)))
    return [
        {
            "name": MODEL_NAMES[i],
            "num_layers": draw(st.integers(1, 4)),
            "layer_memory_gb": draw(st.integers(1, 4).map(lambda k: 0.5 * k)),
        }
        for i in range(count)
    ]


@st.composite
def _pools(draw: st.DrawFn, models: list[dict], utilisation: float) -> list[dict]:
    """2-4 pools; each model gets a rate on a random subset (at least one pool per model)."""
    places = draw(st.lists(st.sampled_from(PLACES), min_size=1, max_size=3, unique=True))
    n_pools = draw(st.integers(max(2, len(places)), 4))
    biggest_layer = max(m["layer_memory_gb"] for m in models)
    most_layers = max(m["num_layers"] for m in models)
    pools: list[dict] = []
    while len(pools) < n_pools:
        place = places[len(pools)] if len(pools) < len(places) else draw(st.sampled_from(places))
        cloud, region = place
        most = most_layers
        capacity = draw(  # layers of the biggest model one GPU holds: 0 (TP needed) now and then
            st.one_of(st.just(most), st.integers(1, most), st.integers(0, most))
        )
        pool: dict[str, Any] = {
            "gpu": draw(st.sampled_from(GPU_NAMES)),
            "cloud": cloud,
            "region": region,
            "available": draw(_available),
            "max_tp": draw(st.sampled_from((1, 2, 2))),
            "price_per_gpu_hour": draw(_prices),
            "memory_gb": round((capacity + 0.3) * biggest_layer / utilisation, 4),
            "market": draw(st.sampled_from(("on-demand", "spot"))),
        }
        pools.append(pool)
        if len(pools) < n_pools and draw(st.integers(0, 2)) == 0:  # the same GPUs, other market
            twin = {
                **pool,
                "available": draw(_available),
                "market": "spot" if pool["market"] == "on-demand" else "on-demand",
            }
            spot, on_demand = (pool, twin) if pool["market"] == "spot" else (twin, pool)
            spot["price_per_gpu_hour"] = round(max(0.1, on_demand["price_per_gpu_hour"] * 0.4), 2)
            pools.append(twin)
    for i, pool in enumerate(pools):
        pool["id"] = f"{pool['cloud']}/{pool['region']}/p{i}/{pool['market']}"
    for pool in pools:  # per-model rates
        pool["tokens_per_s"] = {}
    for model in models:
        first = draw(st.integers(0, len(pools) - 1))
        users = [i for i in range(len(pools)) if i == first or draw(st.integers(0, 3)) > 0]
        for i in users:
            pools[i]["tokens_per_s"][model["name"]] = draw(_rates)
    if len(models) == 1 and draw(st.booleans()):  # one model: a plain number now and then
        for pool in pools:
            if pool["tokens_per_s"]:
                pool["tokens_per_s"] = pool["tokens_per_s"][models[0]["name"]]
    pools = [p for p in pools if p["tokens_per_s"]]  # a pool no model uses says nothing
    for pool in pools:
        if draw(st.integers(0, 3)) == 0:  # a measured profile: one map or one per model
            if isinstance(pool["tokens_per_s"], dict) and draw(st.booleans()):
                pool["tp_efficiency"] = {
                    name: draw(_efficiency_map())
                    for name in pool["tokens_per_s"]
                    if draw(st.booleans())
                } or draw(_efficiency_map())
            else:
                pool["tp_efficiency"] = draw(_efficiency_map())
    spare = MAX_TOTAL_GPUS
    for pool in pools:
        pool["available"] = min(pool["available"], spare)
        spare -= pool["available"]
    return pools


@st.composite
def _quota(draw: st.DrawFn, pools: list[dict]) -> dict:
    """A quota built from one pool's fields (so it matches at least that pool)."""
    pool = draw(st.sampled_from(pools))
    fields = draw(
        st.lists(st.sampled_from(("cloud", "region", "gpu", "market")), unique=True, max_size=3)
    )
    quota: dict[str, Any] = {f: pool[f] for f in fields}
    if "region" in quota and draw(st.integers(0, 3)) > 0:
        quota["cloud"] = pool["cloud"]  # mostly; a region alone matches it in every cloud
    matched = sum(p["available"] for p in pools if all(p[f] == value for f, value in quota.items()))
    # mostly below what the matched pools hold, so that the quota can bind
    quota["max_gpus"] = draw(st.integers(1, matched - 1) if matched >= 2 else st.integers(0, 4))
    return quota


def _rate_bound(pools: list[dict], name: str) -> float:
    """sum_p available_p * tokens_per_s_{p,m}: no plan gives the model more (TP eff <= 1)."""
    total = 0.0
    for pool in pools:
        rate = pool["tokens_per_s"]
        value = rate.get(name) if isinstance(rate, dict) else rate
        total += pool["available"] * (value or 0)
    return total


@st.composite
def fleet_scenarios(
    draw: st.DrawFn,
    require_demand: bool = False,
    require_budget: bool = False,
    resilience: bool | None = None,
) -> dict:
    """A tiny fleet document; `resilience` True/False forces survive_spot_loss on/off."""
    models = draw(_models())
    utilisation = draw(st.sampled_from((0.8, 0.9, 1.0)))
    pools = draw(_pools(models, utilisation))
    solver: dict[str, Any] = {
        "tp_degrees": draw(st.sampled_from(([1], [1, 2], [1, 2], [1, 2], [2]))),
        "max_stages": draw(st.sampled_from((2, 1, 2))),
        "memory_utilization": utilisation,
    }
    if draw(st.booleans()):
        solver["tp_efficiency"] = draw(_efficiency_map(partial=False))
    if draw(st.integers(0, 3)) == 0:
        solver["homogeneous_replicas"] = True
    if draw(st.booleans()):
        solver["cost_throughput_weight"] = draw(st.sampled_from((0.0, 0.5, 0.8, 0.95)))
    demanded = False
    for model in models:
        if draw(st.booleans()) or (require_demand and not demanded and model is models[-1]):
            fraction = draw(st.sampled_from(DEMAND_FRACTIONS))
            model["demand_tokens_per_s"] = _round_up(
                fraction * _rate_bound(pools, model["name"]), 10
            )
            demanded = True
        if draw(st.integers(0, 2)) == 0:
            fraction = draw(st.sampled_from(USEFUL_FRACTIONS))
            useful = _round_up(fraction * _rate_bound(pools, model["name"]), 10)
            model["useful_tokens_per_s"] = max(useful, model.get("demand_tokens_per_s", 0))
    c_bound = sum(p["available"] * p["price_per_gpu_hour"] for p in pools)
    if require_budget or draw(st.integers(0, 2)) == 0:
        solver["budget_per_hour"] = _round_up(
            draw(st.sampled_from(BUDGET_FRACTIONS)) * c_bound, 0.1
        )
    on = draw(st.booleans()) if resilience is None else resilience
    if on:
        solver["survive_spot_loss"] = draw(st.sampled_from(("region", "cloud")))
        if draw(st.integers(0, 2)) > 0:
            solver["survive_fraction"] = draw(st.sampled_from(SURVIVE_FRACTIONS))
    doc: dict[str, Any] = {"models": models, "pools": pools, "solver": solver}
    n_quotas = draw(st.integers(0, 2))
    if n_quotas:
        doc["quotas"] = [draw(_quota(pools)) for _ in range(n_quotas)]
    return doc


def fleet_strategy_scenarios(strategy: str, **kwargs: Any) -> st.SearchStrategy[dict]:
    """Fleets valid for `strategy`: a demand for min-cost, a budget for max-throughput."""
    if strategy == "min-cost":
        return fleet_scenarios(require_demand=True, **kwargs)
    if strategy == "max-throughput":
        return fleet_scenarios(require_budget=True, **kwargs)
    if strategy in ("exact", "weighted", "iterative"):
        return fleet_scenarios(**kwargs)
    raise ValueError(f"unknown strategy {strategy!r}")
