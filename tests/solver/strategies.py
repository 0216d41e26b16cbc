"""Hypothesis strategies for small random scenarios in the contract's YAML shape.

Sized so that the exhaustive reference (tests/solver/reference.py) stays fast:
1-2 (cloud, region) pairs, 1-4 pools, 1-8 layers, 1-3 stages, 0-4 GPUs per pool and at
most MAX_TOTAL_GPUS in all (the plan count grows steeply with the total).
Prices and throughputs sit on coarse grids so that ties happen. Memory is set so that a
stage of t GPUs holds t * (c + 0.3) layers for an integer c >= 0: never an exact
boundary of the memory rule, so float rounding cannot change which splits fit.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

GPU_NAMES = ("A100", "L20", "A10", "V100", "T4")
PLACES = (("c0", "r0"), ("c0", "r1"), ("c1", "r0"))
TP_CHOICES = (1, 2, 4)
EFFICIENCY_GRID = tuple(round(0.5 + 0.05 * i, 2) for i in range(11))  # 0.5 .. 1.0
MAX_TOTAL_GPUS = 8
DEMAND_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8)
BUDGET_FRACTIONS = (0.15, 0.3, 0.5, 0.7, 0.85, 1.0)

_prices = st.integers(2, 100).map(lambda k: round(0.05 * k, 2))  # 0.10 .. 5.00
_rates = st.integers(10, 500).map(lambda k: 10 * k)  # 100 .. 5000
_any_degrees = st.lists(st.sampled_from(TP_CHOICES), min_size=1, max_size=3, unique=True)
_with_one = _any_degrees.map(lambda d: [1, *d])  # TP 1 allowed: most scenarios
_degrees = st.one_of(_with_one, _with_one, _any_degrees).map(lambda d: sorted(set(d)))
_available = st.one_of(st.integers(1, 4), st.integers(0, 4))  # 0 now and then


@st.composite
def _efficiency_map(draw: st.DrawFn, degrees: tuple[int, ...], string_keys: bool) -> dict:
    """A degree -> efficiency map over `degrees`, 1 -> 1.0 when 1 is present."""
    table: dict[Any, float] = {}
    for tp in degrees:
        value = 1.0 if tp == 1 else draw(st.sampled_from(EFFICIENCY_GRID))
        table[str(tp) if string_keys else tp] = value
    return table


@st.composite
def _pool(
    draw: st.DrawFn,
    index: int,
    place: tuple[str, str],
    num_layers: int,
    layer_mem: float,
    utilisation: float,
) -> dict:
    """One pool; its per-GPU layer capacity is drawn so that pipelines/TP are sometimes needed."""
    cloud, region = place
    capacity = draw(  # layers one GPU holds: 0 (TP needed), < L (pipeline or TP), >= L
        st.one_of(st.integers(1, num_layers), st.just(num_layers), st.integers(0, num_layers))
    )
    pool: dict[str, Any] = {
        "id": f"{cloud}/{region}/p{index}",
        "gpu": draw(st.sampled_from(GPU_NAMES)),
        "cloud": cloud,
        "region": region,
        "available": draw(_available),
        "max_tp": draw(st.sampled_from(TP_CHOICES)),
        "price_per_gpu_hour": draw(_prices),
        "memory_gb": round((capacity + 0.3) * layer_mem / utilisation, 4),
        "tokens_per_s": draw(_rates),
    }
    if draw(st.integers(0, 3)) == 0:  # a measured profile, possibly missing degrees
        degrees = tuple(draw(_degrees))
        pool["tp_efficiency"] = draw(_efficiency_map(degrees, draw(st.booleans())))
    return pool


def _round_up(value: float, step: float) -> float:
    """Value rounded up to a multiple of step (at least one step)."""
    steps = max(1, -int(-value // step))
    return round(steps * step, 2)


@st.composite
def small_scenarios(
    draw: st.DrawFn,
    draw_demand: bool = True,
    draw_budget: bool = True,
    require_demand: bool = False,
    require_budget: bool = False,
) -> dict:
    """A small scenario dict; demand/budget sometimes (or always, with require_*)."""
    places = draw(st.lists(st.sampled_from(PLACES), min_size=1, max_size=2, unique=True))
    n_pools = draw(st.integers(len(places), 4))
    where = list(places) + [draw(st.sampled_from(places)) for _ in range(n_pools - len(places))]
    num_layers = draw(st.integers(1, 8))
    layer_mem = draw(st.integers(1, 8).map(lambda k: 0.5 * k))
    utilisation = draw(st.sampled_from((0.8, 0.9, 1.0)))
    pools = [
        draw(_pool(i, place, num_layers, layer_mem, utilisation)) for i, place in enumerate(where)
    ]
    spare = MAX_TOTAL_GPUS
    for pool in pools:
        pool["available"] = min(pool["available"], spare)
        spare -= pool["available"]
    solver: dict[str, Any] = {
        "tp_degrees": draw(_degrees),
        "max_stages": draw(st.integers(1, 3)),
        "memory_utilization": utilisation,
    }
    if draw(st.booleans()):
        solver["tp_efficiency"] = draw(_efficiency_map(TP_CHOICES, draw(st.booleans())))
    if draw(st.integers(0, 3)) == 0:
        solver["homogeneous_replicas"] = True
    if draw(st.booleans()):
        solver["cost_throughput_weight"] = draw(st.sampled_from((0.0, 0.5, 0.8, 0.95)))
    # T <= sum_p available_p * tokens_per_s_p and C <= sum_p available_p * price_p for
    # every plan, so demand and budget are drawn as fractions of those bounds.
    t_bound = sum(p["available"] * p["tokens_per_s"] for p in pools)
    c_bound = sum(p["available"] * p["price_per_gpu_hour"] for p in pools)
    if require_demand or (draw_demand and draw(st.booleans())):
        fraction = draw(st.sampled_from(DEMAND_FRACTIONS))
        solver["demand_tokens_per_s"] = _round_up(fraction * t_bound, 10)
    if require_budget or (draw_budget and draw(st.booleans())):
        fraction = draw(st.sampled_from(BUDGET_FRACTIONS))
        solver["budget_per_hour"] = _round_up(fraction * c_bound, 0.05)
    model = {"name": "random", "num_layers": num_layers, "layer_memory_gb": layer_mem}
    return {"model": model, "pools": pools, "solver": solver}


def strategy_scenarios(strategy: str) -> st.SearchStrategy[dict]:
    """Scenarios valid for `strategy`: demand > 0 for min-cost, a budget for max-throughput."""
    if strategy == "min-cost":
        return small_scenarios(require_demand=True)
    if strategy == "max-throughput":
        return small_scenarios(require_budget=True)
    if strategy in ("exact", "weighted", "iterative"):
        return small_scenarios()
    raise ValueError(f"unknown strategy {strategy!r}")
