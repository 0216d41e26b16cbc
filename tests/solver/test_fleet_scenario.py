"""Fleet scenarios: models, per-model rates, markets, quotas; bad input named (file, row, field)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from solver import ScenarioError, load_scenario, scenario_from_dict
from solver.scenario import Quota


def fleet_document() -> dict[str, Any]:
    """Two models over three pools; one spot pool, a cloud-wide quota."""
    return {
        "models": [
            {"name": "small", "num_layers": 2, "layer_memory_gb": 1.0, "demand_tokens_per_s": 100},
            {
                "name": "big",
                "num_layers": 4,
                "layer_memory_gb": 2.0,
                "demand_tokens_per_s": 50,
                "useful_tokens_per_s": 80,
            },
        ],
        "pools": [
            {
                "id": "aws/east/A100",
                "gpu": "A100",
                "cloud": "aws",
                "region": "east",
                "available": 4,
                "max_tp": 4,
                "price_per_gpu_hour": 2.0,
                "memory_gb": 80,
                "tokens_per_s": {"small": 300, "big": 100},
                "tp_efficiency": {"big": {1: 1.0, 2: 0.8}},
            },
            {
                "id": "aws/east/A100/spot",
                "gpu": "A100",
                "cloud": "aws",
                "region": "east",
                "available": 2,
                "max_tp": 4,
                "price_per_gpu_hour": 0.8,
                "memory_gb": 80,
                "tokens_per_s": {"small": 300},
                "market": "spot",
            },
            {
                "id": "gcp/west/L4",
                "gpu": "L4",
                "cloud": "gcp",
                "region": "west",
                "available": 8,
                "max_tp": 8,
                "price_per_gpu_hour": 0.7,
                "memory_gb": 24,
                "tokens_per_s": 120,
            },
        ],
        "quotas": [
            {"cloud": "aws", "max_gpus": 5},
            {"gpu": "L4", "market": "on-demand", "max_gpus": 6},
        ],
        "solver": {"survive_spot_loss": "region", "survive_fraction": 0.5},
    }


def test_fleet_document_reads_into_models_pools_and_quotas() -> None:
    scenario = scenario_from_dict(fleet_document())
    assert [m.name for m in scenario.models] == ["small", "big"]
    assert scenario.model.name == "small"
    assert scenario.models[1].useful_tokens_per_s == 80
    assert scenario.demand_tokens_per_s == 150
    a100, spot, l4 = scenario.pools
    assert (a100.rate("small"), a100.rate("big"), spot.rate("big"), l4.rate("big")) == (
        300,
        100,
        None,
        120,
    )
    assert (a100.market, spot.market, spot.spot) == ("on-demand", "spot", True)
    assert scenario.efficiency(a100, 2, "big") == 0.8
    assert scenario.efficiency(a100, 2, "small") == 0.9  # the solver-wide map
    assert scenario.quotas[0] == Quota("aws", None, None, None, 5)
    assert scenario.quotas[1].label == "*/*/L4/on-demand"
    assert [q.matches(spot) for q in scenario.quotas] == [True, False]
    assert scenario.quota_limit(a100) == 4 and scenario.quota_limit(l4) == 6
    assert (scenario.solver.survive_spot_loss, scenario.solver.survive_fraction) == ("region", 0.5)


def test_one_model_document_takes_its_demand_from_the_solver_section() -> None:
    document = fleet_document()
    model = {k: v for k, v in document["models"][0].items() if k != "demand_tokens_per_s"}
    pools = [dict(p, tokens_per_s=300) for p in document["pools"]]
    for pool in pools:
        pool.pop("tp_efficiency", None)
    scenario = scenario_from_dict(
        {"model": model, "pools": pools, "solver": {"demand_tokens_per_s": 90}}
    )
    assert scenario.models[0].demand_tokens_per_s == 90
    assert scenario.with_options(demand_tokens_per_s=7).model.demand_tokens_per_s == 7
    assert scenario.for_model(0) is scenario


def test_per_model_view_keeps_pool_indices_and_cuts_quotas() -> None:
    scenario = scenario_from_dict(fleet_document())
    big = scenario.for_model(1)
    assert [p.id for p in big.pools] == [p.id for p in scenario.pools]
    assert [p.available for p in big.pools] == [4, 0, 6]  # spot: big cannot use it; L4 quota 6
    assert big.pools[0].tokens_per_s == 100 and big.pools[0].tp_efficiency == {1: 1.0, 2: 0.8}
    assert big.solver.demand_tokens_per_s == 50


def _edit(path: str, value: Any) -> dict[str, Any]:
    """The fleet document with one key set (path like `pools.0.market`; None deletes)."""
    document = copy.deepcopy(fleet_document())
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is None:
        del node[key]
    else:
        node[key] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("modle", 1, ": unknown field 'modle'; allowed: model, models, pools, quotas, solver"),
        ("models.1.layers", 3, "models[1] (big): unknown field 'layers'; allowed: name,"),
        ("pools.2.zone", "a", "pools[2] (gcp/west/L4): unknown field 'zone'; allowed: id, gpu,"),
        ("quotas.0.maximum", 3, "quotas[0]: unknown field 'maximum'; allowed: cloud, region,"),
        ("solver.survive", "region", "solver: unknown option 'survive'; allowed: tp_degrees,"),
        (
            "pools.0.tokens_per_s",
            {"small": 300, "huge": 1},
            "pools[0] (aws/east/A100): tokens_per_s names unknown model 'huge'; models: small, big",
        ),
        (
            "pools.0.tp_efficiency",
            {"tiny": {1: 1.0}},
            "pools[0] (aws/east/A100): tp_efficiency names unknown model 'tiny'",
        ),
        ("pools.0.tokens_per_s", {"small": -3}, "tokens_per_s.small: v must be > 0"),
        ("pools.0.tokens_per_s", {}, "tokens_per_s must be a number or a non-empty map"),
        ("pools.1.market", "reserved", "pools[1] (aws/east/A100/spot): market must be one of"),
        ("quotas.0.cloud", "nebius", "quotas[0] (nebius/*/*/*): matches no pool"),
        ("quotas.1.market", "spot", "quotas[1] (*/*/L4/spot): matches no pool"),
        ("quotas.0.max_gpus", -1, "quotas[0]: max_gpus must be >= 0"),
        ("quotas.0.max_gpus", 1.5, "quotas[0]: max_gpus must be an integer"),
        ("quotas.0.max_gpus", None, "quotas[0]: max_gpus is required"),
        ("models.0.name", "big", "models[1] (big): name 'big' repeats models[0]"),
        ("models.1.name", None, "models[1]: name is required"),
        ("models.1.demand_tokens_per_s", -5, "models[1] (big): demand_tokens_per_s must be >= 0"),
        ("models.1.useful_tokens_per_s", 0, "useful_tokens_per_s must be > 0"),
        ("models", [], "models: must be a non-empty list"),
        ("model", {"num_layers": 2, "layer_memory_gb": 1}, "give either model (one) or models"),
        ("solver.survive_spot_loss", "zone", "survive_spot_loss must be one of none, region"),
        ("solver.survive_fraction", 0, "survive_fraction must be > 0"),
        ("solver.survive_fraction", 1.5, "survive_fraction must be <= 1"),
    ],
)
def test_bad_fleet_input_is_named(path: str, value: Any, expected: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario_from_dict(_edit(path, value), source="fleet.yaml")
    assert str(caught.value).startswith("fleet.yaml: ")
    assert expected in str(caught.value)


def test_a_model_no_pool_serves_is_bad_input() -> None:
    document = fleet_document()
    document["pools"][0]["tokens_per_s"] = {"small": 300}
    document["pools"][0].pop("tp_efficiency")
    document["pools"][2]["tokens_per_s"] = {"small": 120}
    with pytest.raises(ScenarioError, match=r"models\[1\] \(big\): no pool gives a tokens_per_s"):
        scenario_from_dict(document, source="fleet.yaml")


def test_single_model_document_rejects_unknown_model_fields() -> None:
    document = {
        "model": {"name": "m", "num_layers": 2, "layer_memory_gb": 1, "demand_tokens_per_s": 5},
        "pools": fleet_document()["pools"][2:],
    }
    with pytest.raises(ScenarioError, match="model: unknown field 'demand_tokens_per_s'"):
        scenario_from_dict(document)


def test_fleet_file_loads_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet_document()))
    assert load_scenario(path) == scenario_from_dict(fleet_document(), source=str(path))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_edit("quotas.0.cloud", "nebius")))
    with pytest.raises(ScenarioError, match=r"bad\.yaml: quotas\[0\]"):
        load_scenario(bad)
