"""Scenario loading: defaults, and errors that name the file, the row and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from solver import ScenarioError, load_scenario, scenario_from_dict

POOL = {
    "id": "aws/us-east-1/T4",
    "gpu": "T4",
    "cloud": "aws",
    "region": "us-east-1",
    "available": 4,
    "max_tp": 4,
    "price_per_gpu_hour": 0.5,
    "memory_gb": 16,
    "tokens_per_s": 1000,
}


def _document(**pool_changes: object) -> dict:
    pools = [dict(POOL, id=f"aws/us-east-1/G{i}") for i in range(3)] + [{**POOL, **pool_changes}]
    return {"model": {"name": "m", "num_layers": 32, "layer_memory_gb": 0.5}, "pools": pools}


def test_defaults_follow_the_contract() -> None:
    scenario = scenario_from_dict(_document())
    options = scenario.solver
    assert options.tp_degrees == (1, 2, 4, 8)
    assert dict(options.tp_efficiency) == {1: 1.0, 2: 0.9, 4: 0.8, 8: 0.7}
    assert (options.max_stages, options.memory_utilization) == (8, 0.9)
    assert options.homogeneous_replicas is False
    assert (options.demand_tokens_per_s, options.budget_per_hour) == (0.0, None)
    assert options.cost_throughput_weight == 0.95


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"price_per_gpu_hour": -0.2},
            "pools[3] (aws/us-east-1/T4): price_per_gpu_hour must be > 0, got -0.2",
        ),
        ({"available": 1.5}, "pools[3] (aws/us-east-1/T4): available must be an integer"),
        ({"available": -1}, "available must be >= 0"),
        ({"memory_gb": "lots"}, "memory_gb must be a number, got 'lots'"),
        ({"tokens_per_s": float("nan")}, "tokens_per_s must be finite"),
        ({"max_tp": 0}, "max_tp must be >= 1"),
        ({"tp_efficiency": {"two": 0.9}}, "tp_efficiency degree must be an integer"),
        ({"tp_efficiency": {2: 1.5}}, "must be <= 1"),
        ({"id": "aws/us-east-1/G0"}, "id 'aws/us-east-1/G0' repeats pools[0]"),
        ({"gpu": None}, "gpu is required"),
    ],
)
def test_bad_pool_field_is_named(change: dict, expected: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario_from_dict(_document(**change), source="fleet.yaml")
    assert str(caught.value).startswith("fleet.yaml: ")
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("solver_options", "expected"),
    [
        ({"max_stages": 0}, "solver: max_stages must be >= 1"),
        ({"cost_throughput_weight": 1.0}, "cost_throughput_weight must be < 1"),
        ({"tp_degrees": []}, "tp_degrees must be a non-empty list"),
        ({"budget_per_hour": 0}, "budget_per_hour must be > 0"),
        ({"homogeneous_replicas": "yes"}, "homogeneous_replicas must be true or false"),
        ({"max_stage": 3}, "unknown option 'max_stage'"),
    ],
)
def test_bad_solver_option_is_named(solver_options: dict, expected: str) -> None:
    with pytest.raises(ScenarioError, match=expected):
        scenario_from_dict({**_document(), "solver": solver_options})


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_bytes(b"model: {num_layers: 3\n")
    with pytest.raises(ScenarioError, match=r"broken\.yaml: not valid"):
        load_scenario(broken)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00model")
    with pytest.raises(ScenarioError, match=r"binary\.yaml: not UTF-8"):
        load_scenario(binary)
    with pytest.raises(ScenarioError, match=r"missing\.yaml: cannot read"):
        load_scenario(tmp_path / "missing.yaml")


def test_json_and_yaml_load_alike(tmp_path: Path) -> None:
    import json

    document = _document()
    (tmp_path / "s.json").write_text(json.dumps(document))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(document))
    assert load_scenario(tmp_path / "s.json") == load_scenario(tmp_path / "s.yaml")
