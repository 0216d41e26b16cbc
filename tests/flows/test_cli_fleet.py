"""`replan solve` and `replan compare` on fleet scenarios: JSON keys, per-model lines, exits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.cli import main


def _pool(pool_id: str, rates: dict[str, float], price: float, market: str) -> dict[str, Any]:
    cloud, region, gpu = pool_id.split("/")[:3]
    return {
        "id": pool_id,
        "gpu": gpu,
        "cloud": cloud,
        "region": region,
        "available": 4,
        "max_tp": 2,
        "price_per_gpu_hour": price,
        "memory_gb": 24,
        "tokens_per_s": rates,
        "market": market,
    }


FLEET: dict[str, Any] = {
    "models": [
        {"name": "chat", "num_layers": 4, "layer_memory_gb": 2, "demand_tokens_per_s": 300},
        {
            "name": "code",
            "num_layers": 8,
            "layer_memory_gb": 2,
            "demand_tokens_per_s": 100,
            "useful_tokens_per_s": 150,
        },
    ],
    "pools": [
        _pool("aws/east/L4/spot", {"chat": 200, "code": 90}, 0.3, "spot"),
        _pool("aws/west/L4/spot", {"chat": 200, "code": 90}, 0.35, "spot"),
        _pool("aws/east/L4/on-demand", {"chat": 200, "code": 90}, 0.8, "on-demand"),
    ],
    "quotas": [{"cloud": "aws", "market": "spot", "max_gpus": 5}],
    "solver": {"survive_spot_loss": "region", "survive_fraction": 1.0},
}


def _write(tmp_path: Path, document: dict[str, Any], name: str = "fleet.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_solve_prints_the_fleet_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", str(_write(tmp_path, FLEET)), "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    for key in ("tokens_per_s", "useful_tokens_per_s", "cost_per_hour", "cost_per_token", "gpus"):
        assert key in plan
    assert plan["cost_per_token"] == pytest.approx(
        plan["cost_per_hour"] / (3600 * plan["useful_tokens_per_s"])
    )
    assert [m["name"] for m in plan["models"]] == ["chat", "code"]
    for model in plan["models"]:
        assert set(model) >= {
            "name",
            "demand_tokens_per_s",
            "tokens_per_s",
            "useful_tokens_per_s",
            "cost_per_hour",
            "cost_per_token",
            "gpus",
            "replicas",
        }
        assert model["tokens_per_s"] >= model["demand_tokens_per_s"]
    assert {r["model"] for r in plan["replicas"]} <= {"chat", "code"}
    assert all("market" in s for r in plan["replicas"] for s in r["stages"])
    (quota,) = plan["capacity"]["quotas"]
    assert quota["label"] == "aws/*/*/spot" and quota["used_gpus"] <= 5
    assert len(plan["capacity"]["pools"]) == 3
    domains = plan["resilience"]["domains"]
    assert [d["domain"] for d in domains] == ["aws/east", "aws/west"]
    for domain in domains:
        for model in domain["models"]:
            assert model["tokens_per_s_left"] >= model["required_tokens_per_s"] * (1 - 1e-9)


def test_solve_table_has_a_line_per_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["solve", str(_write(tmp_path, FLEET)), "--format", "table"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("chat ") for line in lines)
    assert any(line.startswith("code ") for line in lines)


def test_compare_prints_each_model_under_each_strategy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", str(_write(tmp_path, FLEET))]) == 0
    out = capsys.readouterr().out
    assert "min-cost" in out  # some model has a demand
    assert out.count("  chat") >= 3 and out.count("  code") >= 3


def test_infeasible_fleet_exits_3_naming_model_and_binding_quota(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads(json.dumps(FLEET))
    document["pools"] = document["pools"][:2]
    document["solver"] = {}
    document["quotas"][0]["max_gpus"] = 1
    assert main(["solve", str(_write(tmp_path, document))]) == 3
    captured = capsys.readouterr()
    assert json.loads(captured.out)["status"] == "infeasible"
    assert "model chat: demand 300 tokens/s" in captured.err
    assert "quota aws/*/*/spot (1/1 GPUs)" in captured.err


def test_unknown_field_exits_2_naming_file_row_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads(json.dumps(FLEET))
    document["pools"][1]["zone"] = "a"
    path = _write(tmp_path, document, "typo.yaml")
    assert main(["solve", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: pools[1] (aws/west/L4/spot): unknown field 'zone'; allowed: id," in err
    assert main(["compare", str(path)]) == 2
