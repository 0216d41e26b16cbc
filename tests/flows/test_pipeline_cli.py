"""prices → validate → pools → solve, as a user chains the commands, on two sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from flows.cli import main
from tests.solver.reference import recheck_plan
from tests.support.http_server import LoopbackServer, Reply

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "config" / "inventory.yaml"
AWS_SPOT = ROOT / "tests" / "data" / "prices" / "aws" / "spot.json"


def _chain(prices: Path, model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    """validate → pools → solve on a price file; returns the plan after re-checking it."""
    assert main(["validate", "--prices", str(prices), "--inventory", str(INVENTORY)]) == 0
    scenario = tmp_path / f"{model}.yaml"
    pools_args = ["--prices", str(prices), "--inventory", str(INVENTORY), "--model", model]
    assert main(["pools", *pools_args, "--out", str(scenario)]) == 0
    capsys.readouterr()
    assert main(["solve", str(scenario), "--strategy", "exact", "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["status"] == "optimal"
    document = yaml.safe_load(scenario.read_text())
    tokens_per_s, cost_per_hour = recheck_plan(document, plan)
    assert tokens_per_s >= document["solver"]["demand_tokens_per_s"]
    assert cost_per_hour == pytest.approx(plan["cost_per_hour"], rel=1e-9)
    return plan


def test_bundled_snapshot_to_a_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = tmp_path / "prices.csv"
    assert main(["prices", "--out", str(prices)]) == 0
    capsys.readouterr()
    # the snapshot keeps its true date: validate states its age and passes, as `run` does
    assert main(["validate", "--prices", str(prices)]) == 0
    out = capsys.readouterr().out
    assert "WARN prices: the bundled snapshot is dated, not live [snapshot_age" in out
    assert "days old; the 7-day freshness limit applies to live prices only" in out
    assert main(["validate", "--prices", str(prices), "--max-age-days", "7"]) == 2
    plan = _chain(prices, "llama-3.1-8b", tmp_path, capsys)
    assert {r["cloud"] for r in plan["replicas"]} <= {"aws", "gcp", "azure", "lambda", "nebius"}


def test_local_server_source_to_a_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = tmp_path / "prices.csv"
    with LoopbackServer() as server:
        server.route("/spot.json", Reply.file(AWS_SPOT))
        fetched = main(
            [
                "prices",
                "--source",
                "aws-spot",
                "--from",
                server.url_for("/spot.json"),
                "--out",
                str(prices),
            ]
        )
        assert fetched == 0 and len(server.requests_to("/spot.json")) == 1
    plan = _chain(prices, "llama-3.1-70b", tmp_path, capsys)
    # the feed prices p3/p4d/p4de/p5 in three regions; the inventory grants quotas in two
    pools = {s["pool"] for r in plan["replicas"] for s in r["stages"]}
    assert pools and all(p.startswith(("aws/us-east-1/", "aws/us-west-2/")) for p in pools)
