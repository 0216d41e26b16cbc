"""Fleets: shared pools and quotas, per-model demand, useful caps, spot markets — every strategy
against a brute force over tiny fleets, plus hand-computed cases."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solver import plan_violations, scenario_from_dict, solve
from tests.solver.fleet_brute import brute_optimum, objective
from tests.solver.strategies import strategy_scenarios

EXAMPLES = int(os.environ.get("REPLAN_PROPERTY_EXAMPLES", "60"))
FLEET_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PLACES = (("c0", "r0"), ("c0", "r1"), ("c1", "r0"))
MAX_GPUS = 6


def _pool(pool_id: str, rates: Any, **fields: Any) -> dict[str, Any]:
    cloud, region, gpu = pool_id.split("/")[:3]
    base = {
        "id": pool_id,
        "gpu": gpu,
        "cloud": cloud,
        "region": region,
        "available": 2,
        "max_tp": 1,
        "price_per_gpu_hour": 1.0,
        "memory_gb": 16,
        "tokens_per_s": rates,
    }
    return {**base, **fields}


def _models(**demands: float) -> list[dict[str, Any]]:
    return [
        {"name": name, "num_layers": 1, "layer_memory_gb": 4, "demand_tokens_per_s": demand}
        for name, demand in demands.items()
    ]


def _fleet(models: list[dict], pools: list[dict], quotas=(), **solver: Any) -> dict[str, Any]:
    return {
        "models": models,
        "pools": pools,
        "quotas": list(quotas),
        "solver": {"tp_degrees": [1], "max_stages": 1, **solver},
    }


# --- hand-computed ---------------------------------------------------------------------------


def test_two_models_share_a_quota_instead_of_each_taking_it_whole() -> None:
    """The issue's case: small needs 4 GPUs, big 8, of one pool whose quota is 8. Planned one at
    a time each fits; as one fleet big gets the cheaper pool only as far as the quota allows."""
    pools = [
        _pool("azure/eastus/A100", {"small": 100, "big": 100}, available=16, price_per_gpu_hour=1),
        _pool("azure/eastus/H100", {"small": 100, "big": 100}, available=16, price_per_gpu_hour=3),
    ]
    quotas = [{"cloud": "azure", "region": "eastus", "gpu": "A100", "max_gpus": 8}]
    document = _fleet(_models(small=400, big=800), pools, quotas)
    plan = solve(scenario_from_dict(document), "min-cost")
    as_json = plan.to_json()
    assert plan.status == "optimal" and plan_violations(plan.scenario, plan) == []
    used = {p["pool"]: p["used_gpus"] for p in as_json["capacity"]["pools"]}
    assert used == {"azure/eastus/A100": 8, "azure/eastus/H100": 4}
    assert as_json["cost_per_hour"] == pytest.approx(8 * 1 + 4 * 3)
    assert as_json["capacity"]["quotas"][0]["used_gpus"] == 8
    by_model = {m["name"]: m["tokens_per_s"] for m in as_json["models"]}
    assert by_model == {"small": pytest.approx(400), "big": pytest.approx(800)}


def test_exact_fleet_by_hand() -> None:
    """big runs only on X (2 GPUs, $1): both GPUs to meet 200; small then takes Y ($3).
    C = 5, V = 300; one more Y replica gives 8 / 400, worse."""
    pools = [
        _pool("c/r/X", {"small": 100, "big": 100}),
        _pool("c/r2/Y", {"small": 100}, price_per_gpu_hour=3),
    ]
    document = _fleet(_models(small=100, big=200), pools)
    plan = solve(scenario_from_dict(document), "exact").to_json()
    assert plan["status"] == "optimal"
    assert (plan["cost_per_hour"], plan["tokens_per_s"], plan["gpus"]) == (5, 300, 3)
    assert plan["cost_per_token"] == pytest.approx(5 / (3600 * 300))
    assert sorted((r["model"], r["stages"][0]["pool"], r["count"]) for r in plan["replicas"]) == [
        ("big", "c/r/X", 2),
        ("small", "c/r2/Y", 1),
    ]


def test_useful_cap_stops_counting_throughput() -> None:
    """small's useful throughput is capped at 150. big alone (1 replica, $1, 100 tokens/s)
    ties at $0.01 per token/s with big + small (2, 200) or 2 x big: lower cost wins. A second
    small replica would count only 50 tokens/s. With $4/h, max-throughput fills the 4 GPUs
    with big or 1 small + 3 big: V = 400 either way, never 2 small."""
    pools = [_pool("c/r/X", {"small": 100, "big": 100}, available=4)]
    models = _models(small=0, big=100)
    models[0]["useful_tokens_per_s"] = 150
    document = _fleet(models, pools)
    plan = solve(scenario_from_dict(document), "exact").to_json()
    assert plan["status"] == "optimal"
    counts = {r["model"]: r["count"] for r in plan["replicas"]}
    assert counts == {"big": 1}
    document["solver"]["budget_per_hour"] = 4
    fastest = solve(scenario_from_dict(document), "max-throughput").to_json()
    assert fastest["useful_tokens_per_s"] == pytest.approx(400)
    assert fastest["tokens_per_s"] == pytest.approx(400)
    small = next(m for m in fastest["models"] if m["name"] == "small")
    assert small["tokens_per_s"] <= 100


def test_infeasible_fleet_names_the_model_and_what_binds() -> None:
    pools = [
        _pool("c/r/X", {"small": 100, "big": 100}),
        _pool("c/r2/Y", {"small": 100}, price_per_gpu_hour=3),
    ]
    alone = _fleet(_models(small=100, big=300), pools)
    plan = solve(scenario_from_dict(alone), "exact")
    assert plan.status == "infeasible" and plan.replicas == ()
    assert "model big: demand 300 tokens/s" in plan.message
    assert "pool c/r/X (2/2 GPUs)" in plan.message
    together = _fleet(_models(small=100, big=200), pools, [{"cloud": "c", "max_gpus": 2}])
    plan = solve(scenario_from_dict(together), "exact")
    assert plan.status == "infeasible"
    assert "models small, big" in plan.message and "quota c/*/*/* (2/2 GPUs)" in plan.message


def test_one_model_fleet_equals_the_single_model_form() -> None:
    pools = [_pool("c/r/X", 100, available=3), _pool("c/r/Y", 150, price_per_gpu_hour=2)]
    single = {
        "model": {"name": "m", "num_layers": 1, "layer_memory_gb": 4},
        "pools": pools,
        "solver": {"tp_degrees": [1], "max_stages": 1, "demand_tokens_per_s": 350},
    }
    fleet = _fleet(_models(m=350), [dict(p, tokens_per_s={"m": p["tokens_per_s"]}) for p in pools])
    for strategy in ("exact", "min-cost", "weighted", "iterative"):
        one = solve(scenario_from_dict(single), strategy).to_json()
        many = solve(scenario_from_dict(fleet), strategy).to_json()
        for key in ("status", "tokens_per_s", "cost_per_hour", "gpus", "cost_per_token"):
            assert one[key] == pytest.approx(many[key]), (strategy, key)


@FLEET_SETTINGS
@given(strategy_scenarios("exact"))
def test_models_list_of_one_gives_the_model_answer(document: dict) -> None:
    """Any placement-model scenario rewritten as `models:` (demand moved to the model, rates
    as maps) has the same exact optimum: cost, throughput and GPUs."""
    solver = dict(document["solver"])
    demand = solver.pop("demand_tokens_per_s", 0.0)
    model = {**document["model"], "demand_tokens_per_s": demand}
    pools = [dict(p, tokens_per_s={model["name"]: p["tokens_per_s"]}) for p in document["pools"]]
    fleet = {"models": [model], "pools": pools, "solver": solver}
    one = solve(scenario_from_dict(document), "exact").to_json()
    many = solve(scenario_from_dict(fleet), "exact").to_json()
    assert one["status"] == many["status"]
    if one["status"] == "optimal":
        assert math.isclose(one["cost_per_hour"], many["cost_per_hour"], rel_tol=1e-9)
        assert math.isclose(one["tokens_per_s"], many["tokens_per_s"], rel_tol=1e-9)
        assert one["gpus"] == many["gpus"]


# --- brute force over tiny fleets ------------------------------------------------------------


@st.composite
def tiny_fleets(draw: st.DrawFn, strategy: str) -> dict[str, Any]:
    """2 one-layer models over 2-3 pools in 1-3 places, quotas, both markets, resilience."""
    places = draw(st.lists(st.sampled_from(PLACES), min_size=1, max_size=3, unique=True))
    names = ("a", "b")
    pools: list[dict[str, Any]] = []
    spare = MAX_GPUS
    for index in range(draw(st.integers(2, 3))):
        cloud, region = draw(st.sampled_from(places))
        rates = {
            name: draw(st.integers(1, 30)) * 10 for name in names if draw(st.integers(0, 3)) > 0
        }
        available = min(spare, draw(st.integers(0, 3)))
        spare -= available
        pools.append(
            {
                "id": f"{cloud}/{region}/g{index}",
                "gpu": draw(st.sampled_from(("A", "B"))),
                "cloud": cloud,
                "region": region,
                "available": available,
                "max_tp": draw(st.sampled_from((1, 2))),
                "price_per_gpu_hour": draw(st.integers(1, 20)) * 0.25,
                "memory_gb": 16,
                "tokens_per_s": rates or {"a": 100},
                "market": draw(st.sampled_from(("on-demand", "spot"))),
            }
        )
    for name in names:  # every model served by some pool (else bad input)
        if not any(name in p["tokens_per_s"] for p in pools):
            pools[0]["tokens_per_s"][name] = 50
    t_bound = {
        name: sum(p["available"] * 2 * p["tokens_per_s"].get(name, 0) for p in pools)
        for name in names
    }
    models = []
    for name in names:
        model = {
            "name": name,
            "num_layers": 1,
            "layer_memory_gb": draw(st.sampled_from((4, 4, 20))),  # 20 GB needs TP 2
            "demand_tokens_per_s": draw(st.sampled_from((0, 0, 0.1, 0.3, 0.6))) * t_bound[name],
        }
        if draw(st.integers(0, 3)) == 0:
            model["useful_tokens_per_s"] = draw(st.integers(1, 40)) * 10
        models.append(model)
    if strategy == "min-cost" and all(m["demand_tokens_per_s"] <= 0 for m in models):
        models[0]["demand_tokens_per_s"] = max(10.0, 0.2 * t_bound["a"])
    quotas = []
    for _ in range(draw(st.integers(0, 2))):
        pool = draw(st.sampled_from(pools))
        fields = draw(st.sets(st.sampled_from(("cloud", "region", "gpu", "market")), max_size=3))
        quota = {key: pool.get(key, "on-demand") for key in fields}
        quota["max_gpus"] = draw(st.integers(0, 4))
        quotas.append(quota)
    solver: dict[str, Any] = {"tp_degrees": [1, 2], "max_stages": 1}
    solver["survive_spot_loss"] = draw(st.sampled_from(("none", "region", "cloud")))
    solver["survive_fraction"] = draw(st.sampled_from((0.5, 1.0)))
    c_bound = sum(p["available"] * p["price_per_gpu_hour"] for p in pools)
    if strategy == "max-throughput" or draw(st.integers(0, 3)) == 0:
        solver["budget_per_hour"] = round(
            max(0.25, draw(st.sampled_from((0.3, 0.6, 1.0))) * c_bound), 2
        )
    if strategy == "weighted":
        solver["cost_throughput_weight"] = draw(st.sampled_from((0.0, 0.5, 0.95)))
    return {"models": models, "pools": pools, "quotas": quotas, "solver": solver}


def _check_fleet(document: dict[str, Any], strategy: str, columns_on_demand: bool) -> None:
    best = brute_optimum(document, strategy)
    scenario = scenario_from_dict(document)
    plan = solve(scenario, strategy, columns_on_demand=columns_on_demand)
    building = "on-demand" if columns_on_demand else "listed"
    assert plan.extra.get("model_building", building) == building
    if best is None:
        assert plan.status == "infeasible", plan.to_json()
        return
    assert plan.status == "optimal", plan.to_json()
    assert plan_violations(scenario, plan) == []
    t, v, c = plan.tokens_per_s, plan.useful_tokens_per_s, plan.cost_per_hour
    got = objective(document, strategy, t, v, c)
    assert math.isclose(got, best.objective, rel_tol=1e-6, abs_tol=1e-12), (got, best)
    if strategy == "exact":
        assert math.isclose(c, best.cost_per_hour, rel_tol=1e-6)
        assert plan.gpus == best.gpus


@pytest.mark.parametrize("columns_on_demand", [False, True], ids=["listed", "on-demand"])
@pytest.mark.parametrize("strategy", ["exact", "min-cost", "max-throughput", "weighted"])
def test_fleet_strategy_matches_brute_force(strategy: str, columns_on_demand: bool) -> None:
    """Both ways of building the model: every configuration listed, or generated from duals."""

    @FLEET_SETTINGS
    @given(tiny_fleets(strategy))
    def check(document: dict[str, Any]) -> None:
        _check_fleet(document, strategy, columns_on_demand)

    check()


@FLEET_SETTINGS
@given(tiny_fleets("exact"))
def test_fleet_iterative_is_feasible_and_never_beats_exact(document: dict[str, Any]) -> None:
    scenario = scenario_from_dict(document)
    exact = solve(scenario, "exact")
    iterative = solve(scenario, "iterative")
    if exact.status == "infeasible":
        assert iterative.status == "infeasible"
        return
    assert iterative.status == "feasible"
    assert plan_violations(scenario, iterative) == []
    assert iterative.cost_per_token >= exact.cost_per_token * (1 - 1e-9)


# --- fleets of pipelines: disjoint models against the one-model reference ---------------------


def _split(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A fleet of two models on disjoint pools (even / odd rows of a one-model scenario), with
    the one-model scenario of each; the demand is shared out half and half."""
    solver = {k: v for k, v in document["solver"].items() if k != "budget_per_hour"}
    demand = solver.pop("demand_tokens_per_s", 0.0)
    halves = []
    for parity, name in ((0, "a"), (1, "b")):
        pools = [p for i, p in enumerate(document["pools"]) if i % 2 == parity]
        model = {**document["model"], "name": name}
        single = {
            "model": model,
            "pools": pools,
            "solver": {**solver, "demand_tokens_per_s": round(demand / 2, 3)},
        }
        halves.append(single)
    fleet = {
        "models": [
            {**h["model"], "demand_tokens_per_s": h["solver"]["demand_tokens_per_s"]}
            for h in halves
        ],
        "pools": [
            dict(p, tokens_per_s={h["model"]["name"]: p["tokens_per_s"]})
            for h in halves
            for p in h["pools"]
        ],
        "solver": solver,
    }
    return fleet, halves[0], halves[1]


@pytest.mark.parametrize("columns_on_demand", [False, True], ids=["listed", "on-demand"])
def test_disjoint_fleet_min_cost_is_the_sum_of_its_models(columns_on_demand: bool) -> None:
    """Models that share no pool: the fleet's least cost is each model's least cost (from the
    exhaustive one-model reference, with pipelines and TP) added up."""
    from tests.solver.reference import reference_optimum

    @FLEET_SETTINGS
    @given(strategy_scenarios("min-cost").filter(lambda d: len(d["pools"]) >= 2))
    def check(document: dict[str, Any]) -> None:
        fleet, first, second = _split(document)
        references = [reference_optimum(h, "min-cost") for h in (first, second)]
        plan = solve(scenario_from_dict(fleet), "min-cost", columns_on_demand=columns_on_demand)
        if any(r is None for r in references):
            assert plan.status == "infeasible"
            return
        assert plan.status == "optimal", plan.to_json()
        expected = sum(r.cost_per_hour for r in references)
        assert math.isclose(plan.cost_per_hour, expected, rel_tol=1e-6)
        assert plan_violations(plan.scenario, plan) == []

    check()


def test_fleet_plan_json_round_trips_through_the_diff_reader() -> None:
    from solver.diff import plan_from_json, recheck_previous

    pools = [
        _pool("c/r/X", {"small": 100, "big": 60}, available=3),
        _pool("c/r2/Y", {"small": 100}, price_per_gpu_hour=3),
    ]
    document = _fleet(_models(small=100, big=120), pools)
    scenario = scenario_from_dict(document)
    as_json = solve(scenario, "exact").to_json()
    rebuilt = plan_from_json(as_json, scenario).to_json()
    for key in ("tokens_per_s", "useful_tokens_per_s", "cost_per_hour", "gpus", "models"):
        assert rebuilt[key] == as_json[key], key
    assert recheck_previous(as_json, scenario) == []
    tighter = _fleet(_models(small=100, big=120), pools, [{"gpu": "X", "max_gpus": 1}])
    assert any(
        "quota */*/X/*" in reason
        for reason in recheck_previous(as_json, scenario_from_dict(tighter))
    )
