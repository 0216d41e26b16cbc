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
    fleet_scenario,
    max_tp_for,
    per_gpu_prices,
    pool_entries,
    write_scenario,
)
from tasks.prices import fetch_prices
from tasks.validation import read_price_csv, validate_pools

ROOT = Path(__file__).resolve().parents[2]
PRICES = ROOT / "tests" / "data" / "pools" / "prices-ok.csv"
SMALL = ROOT / "tests" / "data" / "inventory" / "small.yaml"
EXAMPLE = ROOT / "config" / "inventory.yaml"
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


# --- price mode `both` and the fleet (issues 8, 10) ----------------------------------------


def _fleet_solver_present() -> bool:
    """Whether `solver.scenario.Scenario` reads fleet documents (it has `models`)."""
    from solver import scenario

    return "models" in getattr(scenario.Scenario, "__dataclass_fields__", {})


def test_both_mode_gives_one_pool_per_market(prices: pd.DataFrame) -> None:
    build = build_pools(prices, load_inventory(SMALL), "tiny", price_mode="both")
    pools = _by_id(build.pools)
    assert sorted(pools) == [
        "aws/us-east-1/T4/on-demand",
        "aws/us-east-1/T4/spot",
        "aws/us-east-1/V100/on-demand",
        "aws/us-east-1/V100/spot",
        "aws/us-west-2/T4/on-demand",
        "aws/us-west-2/T4/spot",
    ]
    spot, on_demand = pools["aws/us-east-1/V100/spot"], pools["aws/us-east-1/V100/on-demand"]
    assert (spot["market"], spot["price_per_gpu_hour"], spot["max_tp"]) == ("spot", 0.918, 4)
    assert (on_demand["market"], on_demand["price_per_gpu_hour"]) == ("on-demand", 3.06)
    assert on_demand["max_tp"] == 8  # p3.16xlarge has an on-demand price only
    entries = {e["id"]: e for e in pool_entries(build.pools)}
    assert entries["aws/us-east-1/V100/spot"]["market"] == "spot"
    assert validate_pools(build.pools, "tiny").ok


def test_single_market_modes_keep_todays_pool_entries(prices: pd.DataFrame) -> None:
    build = build_pools(prices, load_inventory(SMALL), "tiny", price_mode="spot")
    assert all("market" not in entry for entry in pool_entries(build.pools))
    assert set(build.pools["market"]) == {"spot"}


def test_quota_with_market_covers_only_that_market(prices: pd.DataFrame) -> None:
    document = yaml.safe_load(SMALL.read_text(encoding="utf-8"))
    document["quotas"] = [{"cloud": "aws", "market": "spot", "max_gpus": 6}]
    pools = _by_id(
        build_pools(prices, inventory_from_dict(document), "tiny", price_mode="both").pools
    )
    assert sorted(pools) == [
        "aws/us-east-1/T4/spot",
        "aws/us-east-1/V100/spot",
        "aws/us-west-2/T4/spot",
    ]
    assert {p["available"] for p in pools.values()} == {6}


def test_fleet_scenario_document(prices: pd.DataFrame) -> None:
    document, notes = fleet_scenario(prices, load_inventory(SMALL))
    assert [m["name"] for m in document["models"]] == ["tiny", "derived"]
    assert document["models"][0]["demand_tokens_per_s"] == 0.0
    pools = {p["id"]: p for p in document["pools"]}
    assert len(pools) == 6
    assert pools["aws/us-east-1/V100/spot"]["tokens_per_s"] == {"tiny": 1000.0, "derived": 400.0}
    assert pools["aws/us-east-1/V100/spot"]["market"] == "spot"
    assert pools["aws/us-east-1/V100/spot"]["available"] == 10  # offer 12 capped by the aws 10
    assert pools["aws/us-east-1/T4/spot"]["tp_efficiency"] == {"tiny": {1: 1.0, 2: 0.8, 4: 0.6}}
    # quotas covering more than one pool cap their sum; the zero gcp quota covers none
    assert document["quotas"] == [
        {"cloud": "aws", "region": "us-east-1", "gpu": "V100", "max_gpus": 12},
        {"cloud": "aws", "region": "us-east-1", "gpu": "T4", "max_gpus": 8},
        {"cloud": "aws", "max_gpus": 10},
    ]
    assert document["solver"] == {"time_limit_s": 120.0}  # the default: every solve bounded
    assert any("quota 0" in note for note in notes)


def test_fleet_models_useful_throughput_and_resilience(prices: pd.DataFrame) -> None:
    document = yaml.safe_load(SMALL.read_text(encoding="utf-8"))
    document["models"]["tiny"]["serving"] = {
        "demand_tokens_per_s": 900,
        "useful_tokens_per_s": 1200,
        "max_stages": 2,
    }
    document["serving"] = {"survive_spot_loss": "region", "survive_fraction": 0.5}
    fleet, _ = fleet_scenario(prices, inventory_from_dict(document), models=["tiny"])
    assert fleet["models"] == [
        {
            "name": "tiny",
            "num_layers": 4,
            "layer_memory_gb": 0.5,
            "demand_tokens_per_s": 900.0,
            "useful_tokens_per_s": 1200.0,
        }
    ]
    assert fleet["solver"] == {
        "max_stages": 2,
        "survive_spot_loss": "region",
        "survive_fraction": 0.5,
        "time_limit_s": 120.0,
    }
    assert all(set(p["tokens_per_s"]) == {"tiny"} for p in fleet["pools"])


def test_fleet_refusals(prices: pd.DataFrame) -> None:
    inventory = load_inventory(SMALL)
    with pytest.raises(PoolsError, match="one market per pool"):
        fleet_scenario(prices, inventory, price_mode="cheapest")
    with pytest.raises(PoolsError, match="gpt-9"):
        fleet_scenario(prices, inventory, models=["tiny", "gpt-9"])
    document = yaml.safe_load(SMALL.read_text(encoding="utf-8"))
    document["gpus"]["H100"]["models"] = {"tiny": document["gpus"]["H100"]["models"]["tiny"]}
    document["models"]["lonely"] = {"num_layers": 2, "layer_memory_gb": 1.0}
    document["gpus"]["H100"]["models"]["lonely"] = {"tokens_per_s": 10, "source": "test"}
    with pytest.raises(PoolsError, match="no pool can serve model\\(s\\) lonely"):
        fleet_scenario(prices, inventory_from_dict(document))  # only lambda has H100: no quota
    document = yaml.safe_load(SMALL.read_text(encoding="utf-8"))
    document["models"]["tiny"]["serving"] = {"max_stages": 2}
    document["models"]["derived"]["serving"] = {"max_stages": 3}
    with pytest.raises(PoolsError, match="max_stages differs"):
        fleet_scenario(prices, inventory_from_dict(document))


def test_fleet_in_one_market_names_pools_with_it(prices: pd.DataFrame) -> None:
    document, _ = fleet_scenario(prices, load_inventory(SMALL), price_mode="spot")
    assert {p["id"] for p in document["pools"]} == {
        "aws/us-east-1/T4/spot",
        "aws/us-east-1/V100/spot",
        "aws/us-west-2/T4/spot",
    }


def _with_buckets(prices: pd.DataFrame) -> pd.DataFrame:
    table = prices.copy()
    buckets = {"p3.2xlarge": ">20%", "p3.8xlarge": "<5%"}
    table["spot_interruption"] = [buckets.get(t) for t in table["instance_type"]]
    return table


def test_max_spot_interruption_leaves_out_spot_offers_above_it(prices: pd.DataFrame) -> None:
    document = yaml.safe_load(SMALL.read_text(encoding="utf-8"))
    document["serving"] = {"max_spot_interruption": "10-15%"}
    inventory = inventory_from_dict(document)
    build = build_pools(_with_buckets(prices), inventory, "tiny", price_mode="both")
    pools = _by_id(build.pools)
    spot = pools["aws/us-east-1/V100/spot"]
    assert spot["price_per_gpu_hour"] == pytest.approx(4.2 / 4)  # p3.2xlarge (>20%) left out
    assert spot["spot_interruption"] == "<5%" and spot["cheapest_instance_type"] == "p3.8xlarge"
    assert pools["aws/us-east-1/V100/on-demand"]["price_per_gpu_hour"] == 3.06  # untouched
    assert pools["aws/us-west-2/T4/spot"]["spot_interruption"] is None  # no bucket: kept
    notes = "\n".join(build.notes)
    assert "2 spot price rows left out" in notes and "above 10-15%" in notes
    assert "gcp publish no such feed" in notes
    assert validate_pools(build.pools, "tiny").ok
    # without a ceiling the cheaper, more interrupted offer wins
    plain = _by_id(
        build_pools(_with_buckets(prices), load_inventory(SMALL), "tiny", price_mode="both").pools
    )
    assert plain["aws/us-east-1/V100/spot"]["price_per_gpu_hour"] == pytest.approx(0.918)


def test_fleet_pools_command_writes_the_fleet(tmp_path) -> None:
    out = tmp_path / "fleet.yaml"
    code, stdout, stderr = _run(
        ["pools", "--prices", str(PRICES), "--inventory", str(SMALL), "--out", str(out),
         "--now", NOW]
    )  # fmt: skip
    assert code == 0, stderr
    assert "6 pools, 3 shared quotas for 2 models (both)" in stdout
    written = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert written["quotas"][-1] == {"cloud": "aws", "max_gpus": 10}
    assert "A fleet scenario" in out.read_text(encoding="utf-8")


def test_fleet_pools_command_refuses_a_model_no_pool_serves(tmp_path) -> None:
    document = yaml.safe_load(SMALL.read_text(encoding="utf-8"))
    document["models"]["lonely"] = {"num_layers": 2, "layer_memory_gb": 1.0}
    document["gpus"]["H100"]["models"]["lonely"] = {"tokens_per_s": 10, "source": "test"}
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(document), encoding="utf-8")
    out = tmp_path / "fleet.yaml"
    code, _, stderr = _run(
        ["pools", "--prices", str(PRICES), "--inventory", str(inventory), "--out", str(out),
         "--now", NOW]
    )  # fmt: skip
    assert code == 2 and not out.exists()
    assert "pools[lonely]" in stderr and "at least one pool" in stderr
    assert f"fleet pools of {inventory}" in stderr


@pytest.mark.skipif(not _fleet_solver_present(), reason="the fleet solver has not landed")
def test_fleet_document_loads_in_the_fleet_solver(prices: pd.DataFrame) -> None:
    from solver.scenario import scenario_from_dict

    document = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    inventory = inventory_from_dict(document, str(EXAMPLE))
    snapshot = fetch_prices("snapshot")
    fleet, _ = fleet_scenario(snapshot, inventory)
    scenario = scenario_from_dict(fleet, "fleet")
    assert [m.name for m in scenario.models] == ["llama-3.1-8b", "llama-3.1-70b"]
    assert {p.market for p in scenario.pools} == {"spot", "on-demand"}
    assert len(scenario.quotas) == len(fleet["quotas"]) > 0
    assert scenario.solver.survive_spot_loss == "region"


def test_fleet_quotas_as_the_example_states_them() -> None:
    """Every inventory quota covering two or more pools caps their sum; each pool's available
    is the smallest quota covering it; no emitted quota covers nothing."""
    inventory = load_inventory(EXAMPLE)
    fleet, notes = fleet_scenario(fetch_prices("snapshot"), inventory)
    pools = fleet["pools"]

    def covers(quota: dict, pool: dict) -> bool:
        return all(quota.get(k) in (None, pool[k]) for k in ("cloud", "region", "gpu", "market"))

    for quota in fleet["quotas"]:
        assert sum(covers(quota, pool) for pool in pools) >= 2, quota
    nebius = [q for q in fleet["quotas"] if q == {"cloud": "nebius", "max_gpus": 16}]
    assert len(nebius) == 1  # the cloud-wide grant caps the sum of every nebius pool
    for pool in pools:
        covering = inventory.matching_quotas(
            pool["cloud"], pool["region"], pool["gpu"], pool["market"]
        )
        assert pool["available"] == min(q.max_gpus for q in covering)
        assert pool["id"].endswith("/" + pool["market"])
    assert {p["market"] for p in pools} == {"spot", "on-demand"}
    assert any("publish no such feed" in note for note in notes)  # the snapshot has no buckets
