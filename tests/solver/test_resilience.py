"""Plans that survive a failure domain's spot loss (issue 10): hand-computed cases."""

from __future__ import annotations

from typing import Any

import pytest

from solver import plan_violations, scenario_from_dict, solve


def _document(loss: str, fraction: float = 1.0, on_demand: int = 4) -> dict[str, Any]:
    """One model (demand 200) on spot in two regions of cloud c ($0.3) and on-demand ($1)."""

    def pool(pool_id: str, price: float, market: str, available: int) -> dict[str, Any]:
        cloud, region, gpu = pool_id.split("/")[:3]
        return {
            "id": pool_id,
            "gpu": gpu,
            "cloud": cloud,
            "region": region,
            "available": available,
            "max_tp": 1,
            "price_per_gpu_hour": price,
            "memory_gb": 16,
            "tokens_per_s": 100,
            "market": market,
        }

    return {
        "model": {"name": "m", "num_layers": 1, "layer_memory_gb": 4},
        "pools": [
            pool("c/r1/G/spot", 0.3, "spot", 4),
            pool("c/r2/G/spot", 0.3, "spot", 4),
            pool("c/r1/G/on-demand", 1.0, "on-demand", on_demand),
        ],
        "solver": {
            "tp_degrees": [1],
            "max_stages": 1,
            "demand_tokens_per_s": 200,
            "survive_spot_loss": loss,
            "survive_fraction": fraction,
        },
    }


def _use(plan_json: dict[str, Any]) -> dict[str, int]:
    return {p["pool"]: p["used_gpus"] for p in plan_json["capacity"]["pools"] if p["used_gpus"]}


@pytest.mark.parametrize(
    ("loss", "fraction", "cost", "use"),
    [
        ("none", 1.0, 0.6, None),  # two spot replicas anywhere
        ("region", 1.0, 1.2, {"c/r1/G/spot": 2, "c/r2/G/spot": 2}),  # each region alone: 200
        ("region", 0.5, 0.6, {"c/r1/G/spot": 1, "c/r2/G/spot": 1}),  # each region alone: 100
        ("cloud", 1.0, 2.0, {"c/r1/G/on-demand": 2}),  # cloud c's spot may vanish: on-demand
        ("cloud", 0.5, 1.3, {"c/r1/G/on-demand": 1, "c/r1/G/spot": 1}),
    ],
)
@pytest.mark.parametrize("columns_on_demand", [False, True], ids=["listed", "on-demand"])
def test_min_cost_survives_the_loss_of_any_domain(
    loss: str, fraction: float, cost: float, use: dict[str, int] | None, columns_on_demand: bool
) -> None:
    scenario = scenario_from_dict(_document(loss, fraction))
    plan = solve(scenario, "min-cost", columns_on_demand=columns_on_demand)
    assert plan.status == "optimal" and plan_violations(scenario, plan) == []
    as_json = plan.to_json()
    assert as_json["cost_per_hour"] == pytest.approx(cost)
    if use is not None:
        if loss == "cloud" and fraction == 0.5:  # the spot replica may sit in either region
            assert sum(_use(as_json).values()) == 2
            assert _use(as_json)["c/r1/G/on-demand"] == 1
        else:
            assert _use(as_json) == use


@pytest.mark.parametrize("columns_on_demand", [False, True], ids=["listed", "on-demand"])
def test_exact_spreads_spot_and_reports_what_each_loss_leaves(columns_on_demand: bool) -> None:
    """Every spot-only plan costs $0.003 per token/s; the cheapest that keeps 200 tokens/s
    after either region's loss has two replicas in each (C = 1.2), ties broken by cost."""
    scenario = scenario_from_dict(_document("region"))
    as_json = solve(scenario, "exact", columns_on_demand=columns_on_demand).to_json()
    assert as_json["status"] == "optimal"
    assert as_json["cost_per_hour"] == pytest.approx(1.2) and as_json["gpus"] == 4
    resilience = as_json["resilience"]
    assert (resilience["domain_kind"], resilience["fraction"]) == ("region", 1.0)
    assert resilience["spot_share"] == 1.0
    assert [d["domain"] for d in resilience["domains"]] == ["c/r1", "c/r2"]
    for domain in resilience["domains"]:
        (model,) = domain["models"]
        assert model == {
            "name": "m",
            "demand_tokens_per_s": 200,
            "required_tokens_per_s": 200,
            "tokens_per_s_left": pytest.approx(200),
        }
    assert all(
        stage["market"] == "spot" for replica in as_json["replicas"] for stage in replica["stages"]
    )


def test_every_strategy_keeps_the_resilience_rows() -> None:
    document = _document("region")
    document["solver"]["budget_per_hour"] = 3.0
    scenario = scenario_from_dict(document)
    for strategy in ("exact", "min-cost", "max-throughput", "weighted", "iterative"):
        plan = solve(scenario, strategy)
        assert plan.status in ("optimal", "feasible"), strategy
        assert plan_violations(scenario, plan) == [], strategy


def test_a_plan_without_resilience_is_flagged() -> None:
    unprotected = solve(scenario_from_dict(_document("none")), "min-cost")
    violations = plan_violations(scenario_from_dict(_document("region")), unprotected)
    assert any(v.startswith("spot loss in c/r") and "needs 200" in v for v in violations)


def test_resilience_that_cannot_hold_names_the_domain_and_what_binds() -> None:
    plan = solve(scenario_from_dict(_document("cloud", on_demand=1)), "exact")
    assert plan.status == "infeasible"
    assert "losing the spot capacity of c leaves at most 100 tokens/s" in plan.message
    assert "pool c/r1/G/on-demand (1/1 GPUs)" in plan.message
