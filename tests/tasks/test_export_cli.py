"""`replan export` on real SQLite state stores: fleet and pre-fleet records, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flows.cli import main
from tasks.state import StateStore, default_state_url, publish_once, stable_hash

DATA = Path(__file__).parent.parent / "data" / "export"
CHANNEL = "report"


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def pre_fleet(plan: dict[str, Any], model: str) -> dict[str, Any]:
    """The plan as a pre-fleet run stored it: one model, no `model`, `market` or `models`."""
    replicas = []
    for replica in plan["replicas"]:
        if replica["model"] != model:
            continue
        stages = [
            {k: v for k, v in s.items() if k != "market"}
            | {"pool": s["pool"].removesuffix("/spot")}
            for s in replica["stages"]
        ]
        replicas.append({k: v for k, v in replica.items() if k != "model"} | {"stages": stages})
    kept = {k: v for k, v in plan.items() if k not in ("models", "useful_tokens_per_s")}
    return kept | {"replicas": replicas}


def record_run(
    store: StateStore,
    plans_by_model: dict[str, dict[str, Any]],
    *,
    publish: bool,
    price_mode: str = "spot",
) -> int:
    run_id = store.start_run(
        stable_hash(len(store.recent_runs(100))), "p", {"price_mode": price_mode}
    )
    for model, plan in plans_by_model.items():
        ids = store.record_plans(run_id, model, {"exact": plan, "weighted": plan})
        if publish:
            publish_once(store, plan_id=ids["exact"], channel=CHANNEL, post=lambda _p: None)
    store.finish_run(run_id, "completed", prices_hash="p")
    return run_id


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return default_state_url(tmp_path / "state" / "replan.sqlite")


@pytest.fixture
def store(store_url: str) -> StateStore:
    opened = StateStore.from_url(store_url)
    yield opened
    opened.dispose()


def export(store_url: str, out: Path, *extra: str) -> int:
    return main(["export", "--state", store_url, "--out", str(out), *extra])


def test_latest_prefers_the_fleet_plan_and_diffs_against_the_one_before(
    store: StateStore, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_run(store, {"fleet": load("fleet-spot.json")}, publish=True)
    record_run(store, {"fleet": load("mixed-pool.json")}, publish=False)  # not published
    latest = record_run(store, {"fleet": load("uneven-split.json")}, publish=True)
    assert export(store_url, tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert f"published fleet plan of run {latest}" in out
    document = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert {k: v for k, v in document.items() if k not in ("replicas", "export")} == {
        k: v for k, v in load("uneven-split.json").items() if k != "replicas"
    }
    readme = (tmp_path / "out" / "README.md").read_text()
    # every replica of the fleet-spot plan goes, every uneven-split replica comes
    assert "7 replica(s) to launch, 14 replica(s) to stop." in readme


def test_run_exports_that_runs_exact_plan_even_unpublished(
    store: StateStore, store_url: str, tmp_path: Path
) -> None:
    record_run(store, {"fleet": load("fleet-spot.json")}, publish=True)
    unpublished = record_run(store, {"fleet": load("mixed-pool.json")}, publish=False)
    inventory = str(Path(__file__).parents[2] / "config" / "inventory.yaml")
    assert (
        export(store_url, tmp_path / "out", "--run", str(unpublished), "--inventory", inventory)
        == 0
    )
    document = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert document["cost_per_hour"] == load("mixed-pool.json")["cost_per_hour"]
    assert any(g["kind"] == "job-group" for g in document["export"]["groups"])
    assert all("--max-model-len 4096" in g["vllm_command"] for g in document["export"]["groups"])


def test_pre_fleet_store_exports_the_union_of_every_models_latest_plan(
    store: StateStore, store_url: str, tmp_path: Path
) -> None:
    fleet = load("fleet-spot.json")
    eight, seventy = pre_fleet(fleet, "llama-3.1-8b"), pre_fleet(fleet, "llama-3.1-70b")
    record_run(store, {"llama-3.1-8b": eight}, publish=True, price_mode="on-demand")
    record_run(store, {"llama-3.1-70b": seventy}, publish=True, price_mode="spot")
    assert export(store_url, tmp_path / "out") == 0
    document = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert sorted(m["name"] for m in document["models"]) == ["llama-3.1-70b", "llama-3.1-8b"]
    assert document["gpus"] == eight["gpus"] + seventy["gpus"]
    markets = {
        (r["model"], s["market"]) for r in document["replicas"] for s in r["stages"]
    }  # each model's stages take the market its run priced at
    assert markets == {("llama-3.1-8b", "on-demand"), ("llama-3.1-70b", "spot")}
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "llama-3.1-8b (run 1) is a pre-fleet plan" in readme
    assert "its run priced every pool spot" in readme
    groups = document["export"]["groups"]
    assert sum(g["count"] for g in groups) == sum(r["count"] for r in fleet["replicas"])


def test_first_fleet_export_diffs_against_the_pre_fleet_union(
    store: StateStore, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = load("fleet-spot.json")
    for model in ("llama-3.1-8b", "llama-3.1-70b"):
        record_run(store, {model: pre_fleet(fleet, model)}, publish=True, price_mode="cheapest")
    record_run(store, {"fleet": load("single-model.json")}, publish=True)
    assert export(store_url, tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "against the union of the latest published plans of 2 model(s)" in out
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "pre-fleet" in readme  # `cheapest` runs do not say the market: assumed, and said


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("empty", [], "no published plan yet"),
        ("one", ["--run", "99"], "no run 99"),
        ("one", ["--run", "1", "--strategy", "min-cost"], "run 1 recorded no min-cost plan"),
        ("one", ["--hf-model", "nonsense"], "--hf-model must be NAME=ORG/REPO"),
        ("one", ["--inventory", "no-such-inventory.yaml"], "no-such-inventory.yaml: cannot read"),
        ("missing", [], "no state store at"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    setup: str,
    args: list[str],
    message: str,
    store_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = store_url
    if setup == "missing":
        url = default_state_url(tmp_path / "nowhere" / "replan.sqlite")
    else:
        store = StateStore.from_url(store_url)
        if setup == "one":
            record_run(store, {"fleet": load("fleet-spot.json")}, publish=True)
        store.dispose()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert export(url, tmp_path / "out", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("replan export: ") and message in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unwritable_or_foreign_out_exits_2_without_a_traceback(
    store: StateStore, store_url: str, tmp_path: Path
) -> None:
    record_run(store, {"fleet": load("fleet-spot.json")}, publish=True)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    for out in (blocker / "out", foreign):
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", "export", "--state", store_url, "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "foreign", "state"]
