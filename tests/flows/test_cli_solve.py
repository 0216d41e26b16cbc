"""`replan solve` and `replan compare` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import main

SEED = Path(__file__).resolve().parents[2] / "scenarios" / "seed.yaml"
REPLAN = Path(sys.executable).with_name("replan")


def test_solve_json_follows_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", str(SEED), "--strategy", "exact", "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    for key in ("strategy", "status", "tokens_per_s", "cost_per_hour", "cost_per_token"):
        assert key in plan
    assert plan["status"] == "optimal"
    replica = plan["replicas"][0]
    assert replica["count"] == 1 and (replica["cloud"], replica["region"]) == ("seed", "lab")
    assert replica["stages"] == [
        {"pool": "seed/V100", "gpu": "V100", "tp": 1, "layers": 32, "market": "on-demand"}
    ]


def test_console_script_runs_the_seed() -> None:
    done = subprocess.run(
        [str(REPLAN), "solve", str(SEED), "--format", "table"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "V100 TP1" in done.stdout and "optimal" in done.stdout


def test_bad_input_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SEED.read_text().replace("price_per_gpu_hour: 0.30", "price_per_gpu_hour: -0.2"))
    assert main(["solve", str(bad)]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["status"] == "error"
    assert "pools[3] (seed/V100): price_per_gpu_hour must be > 0, got -0.2" in captured.err


def test_infeasible_exits_3_saying_what_binds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "too-much.yaml"
    scenario.write_text(
        SEED.read_text().replace("demand_tokens_per_s: 900", "demand_tokens_per_s: 1e7")
    )
    assert main(["solve", str(scenario)]) == 3
    captured = capsys.readouterr()
    plan = json.loads(captured.out)
    assert plan["status"] == "infeasible" and plan["replicas"] == []
    assert "demand 1e+07 tokens/s is above what all available GPUs can deliver" in captured.err


def test_strategy_without_its_input_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", str(SEED), "--strategy", "max-throughput"]) == 2
    assert "budget_per_hour is required" in capsys.readouterr().err


def test_compare_prints_each_strategy_with_its_gap(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(SEED)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == {"exact", "iterative", "weighted", "min-cost"}
    assert "1x V100 TP1" in rows["exact"] and "+0.0%" in rows["exact"]
    assert "+60.3%" in rows["iterative"]


def test_table_says_when_a_plan_is_not_proven_optimal() -> None:
    from flows.commands.render import plan_table

    replica = {
        "count": 1,
        "cloud": "aws",
        "region": "us-east-1",
        "tokens_per_s": 1000.0,
        "cost_per_hour": 1.0,
        "stages": [{"pool": "aws/us-east-1/T4", "gpu": "T4", "tp": 1, "layers": 32}],
    }
    plan = {
        "strategy": "exact",
        "status": "feasible",
        "tokens_per_s": 1000.0,
        "cost_per_hour": 1.0,
        "cost_per_token": 1.0 / 3.6e6,
        "gpus": 1,
        "replicas": [replica],
        "message": "not proven optimal: the time limit ended the search; at most 2 % above",
    }
    lines = plan_table(plan).splitlines()
    assert lines[0].startswith("exact: feasible")
    assert lines[1] == plan["message"]
    assert "not proven" not in plan_table({**plan, "status": "optimal", "message": ""})
