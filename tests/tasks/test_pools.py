"""Pools: per-GPU prices per mode, max_tp, quotas, the scenario file, and the `pools` command."""

from __future__ import annotations

import io
import math
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from flows.cli import main
from solver import load_scenario, solve
from tasks.inventory import inventory_from_dict, load_inventory
from tasks.pools import (
    PoolsError,
    build_pools,
    build_scenario,
    max_tp_for,
    per_gpu_prices,
    write_scenario,
)
from tasks.validation import read_price_csv, validate_pools

ROOT = Path(__file__).resolve().parents[2]
PRICES = ROOT / "tests" / "data" / "pools" / "prices-ok.csv"
SMALL = ROOT / "tests" / "data" / "inventory" / "small.yaml"
BAD = ROOT / "tests" / "data" / "bad"
NOW = "2025-06-02T00:00:00Z"


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return read_price_csv(PRICES)


def _by_id(frame: pd.DataFrame) -> dict[str, dict]:
    return {row["id"]: row for row in frame.to_dict("records")}


@pytest.mark.parametrize(("gpus", "tp"), [(1, 1), (2, 2), (3, 2), (4, 4), (7, 4), (8, 8), (12, 8)])
def test_max_tp_examples(gpus: int, tp: int) -> None:
    assert max_tp_for(gpus) == tp


@given(st.integers(min_value=1, max_value=10_000))
def test_max_tp_is_the_largest_power_of_two_that_fits(gpus: int) -> None:
    tp = max_tp_for(gpus)
    assert tp & (tp - 1) == 0 and tp <= gpus < 2 * tp


def test_per_gpu_prices_by_mode(prices: pd.DataFrame) -> None:
    row = prices.index[prices["instance_type"] == "p3.8xlarge"][0]
    assert per_gpu_prices(prices, "spot")[row] == pytest.approx(4.2 / 4)
    assert per_gpu_prices(prices, "on-demand")[row] == pytest.approx(12.24 / 4)
    assert per_gpu_prices(prices, "cheapest")[row] == pytest.approx(4.2 / 4)
    no_spot = prices.index[prices["instance_type"] == "p3.16xlarge"][0]
    assert math.isnan(per_gpu_prices(prices, "spot")[no_spot])
    assert per_gpu_prices(prices, "cheapest")[no_spot] == pytest.approx(24.48 / 8)
    with pytest.raises(PoolsError, match="price mode"):
        per_gpu_prices(prices, "reserved")


def test_spot_pools(prices: pd.DataFrame) -> None:
    build = build_pools(prices, load_inventory(SMALL), "tiny", price_mode="spot")
    pools = _by_id(build.pools)
    assert sorted(pools) == ["aws/us-east-1/T4", "aws/us-east-1/V100", "aws/us-west-2/T4"]
    v100 = pools["aws/us-east-1/V100"]
    # cheapest over zones and instance types: p3.2xlarge in use1-az1 at 0.918 per GPU
    assert v100["price_per_gpu_hour"] == pytest.approx(0.918)
    assert v100["cheapest_instance_type"] == "p3.2xlarge" and v100["cheapest_zone"] == "use1-az1"
    assert v100["max_tp"] == 4  # p3.16xlarge has no spot price: its 8 GPUs do not count
    assert v100["available"] == 10  # offer quota 12 capped by the aws quota 10
    assert v100["memory_gb"] == 16 and v100["tokens_per_s"] == 1000
    assert pools["aws/us-west-2/T4"]["available"] == 10  # the aws cloud quota grants it
    assert pools["aws/us-east-1/T4"]["tp_efficiency"] == {1: 1.0, 2: 0.8, 4: 0.6}
    notes = "\n".join(build.notes)
    assert "Radeon Pro V520" in notes  # not in the inventory
    assert "quota 0 (gcp/us-central1/A100)" in notes
    assert validate_pools(build.pools, "tiny").ok


def test_on_demand_and_cheapest_pools(prices: pd.DataFrame) -> None:
    inventory = load_inventory(SMALL)
    on_demand = _by_id(build_pools(prices, inventory, "tiny", price_mode="on-demand").pools)
    assert on_demand["aws/us-east-1/V100"]["price_per_gpu_hour"] == pytest.approx(3.06)
    assert on_demand["aws/us-east-1/V100"]["max_tp"] == 8
    cheapest = _by_id(build_pools(prices, inventory, "tiny", price_mode="cheapest").pools)
    assert cheapest["aws/us-east-1/V100"]["price_per_gpu_hour"] == pytest.approx(0.918)
    assert cheapest["aws/us-east-1/V100"]["max_tp"] == 8


def test_pool_without_profile_fails_validation(prices: pd.DataFrame) -> None:
    build = build_pools(prices, load_inventory(SMALL), "derived", price_mode="on-demand")
    pools = _by_id(build.pools)
    assert pools["aws/us-east-1/V100"]["tokens_per_s"] == 400
    document = yaml.safe_load(SMALL.read_text(encoding="utf-8"))
    del document["gpus"]["V100"]["models"]["derived"]
    build = build_pools(prices, inventory_from_dict(document), "derived")
    report = validate_pools(build.pools, "derived")
    assert not report.ok
    assert "pool aws/us-east-1/V100" in report.render()


def test_unknown_model(prices: pd.DataFrame) -> None:
    with pytest.raises(PoolsError, match="not in the inventory"):
        build_pools(prices, load_inventory(SMALL), "gpt-9")


def test_scenario_round_trips_through_the_solver_reader(prices: pd.DataFrame, tmp_path) -> None:
    inventory = load_inventory(SMALL)
    build = build_pools(prices, inventory, "derived", price_mode="cheapest")
    scenario = build_scenario(build.pools, inventory.models["derived"])
    path = write_scenario(scenario, tmp_path / "out" / "scenario.yaml", header="test header")
    assert path.read_text(encoding="utf-8").startswith("# test header\n")
    loaded = load_scenario(path)
    assert loaded.model.num_layers == 32
    assert loaded.model.layer_memory_gb == pytest.approx(
        inventory.models["derived"].layer_memory_gb
    )
    assert {p.id for p in loaded.pools} == set(build.pools["id"])
    assert os.listdir(path.parent) == ["scenario.yaml"]  # no temp file left behind


def test_failed_write_keeps_the_old_scenario(tmp_path, monkeypatch) -> None:
    target = tmp_path / "scenario.yaml"
    target.write_text("old\n", encoding="utf-8")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_scenario({"model": {}, "pools": [], "solver": {}}, target)
    assert target.read_text(encoding="utf-8") == "old\n"
    assert os.listdir(tmp_path) == ["scenario.yaml"]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_pools_command_then_solve(tmp_path) -> None:
    out = tmp_path / "scenario.yaml"
    code, stdout, stderr = _run(
        ["pools", "--prices", str(PRICES), "--inventory", str(SMALL), "--model", "tiny",
         "--out", str(out), "--now", NOW]
    )  # fmt: skip
    assert code == 0, stderr
    assert "3 pools for tiny (spot)" in stdout
    plan = solve(load_scenario(out), "exact")
    assert plan.status == "optimal"
    assert plan.cost_per_hour == pytest.approx(0.19)  # one T4 in us-west-2 at spot 0.19


def test_validate_command(tmp_path) -> None:
    code, stdout, _ = _run(
        ["validate", "--prices", str(PRICES), "--inventory", str(SMALL), "--now", NOW]
    )
    assert code == 0 and stdout.count(": ok (") == 2
    code, stdout, _ = _run(["validate", "--prices", str(BAD / "prices-negative.csv"), "--now", NOW])
    assert code == 2 and "row 2 aws/us-east-1/use1-az1/p3.8xlarge: -12.24" in stdout
    assert _run(["validate"])[0] == 2


@pytest.mark.parametrize(
    "bad",
    sorted(p.name for p in BAD.iterdir() if p.suffix in (".csv", ".yaml")),
)
def test_bad_input_stops_the_pools_command(bad: str, tmp_path) -> None:
    """Nothing downstream runs: exit 2, the report on stderr, no scenario written."""
    out = tmp_path / "scenario.yaml"
    prices = BAD / bad if bad.endswith(".csv") else PRICES
    inventory = BAD / bad if bad.endswith(".yaml") else SMALL
    model = "m" if bad.endswith(".yaml") else "tiny"
    code, stdout, stderr = _run(
        ["pools", "--prices", str(prices), "--inventory", str(inventory), "--model", model,
         "--out", str(out), "--now", NOW]
    )  # fmt: skip
    assert code == 2
    assert "INVALID" in stderr and stdout == ""
    assert not out.exists()
