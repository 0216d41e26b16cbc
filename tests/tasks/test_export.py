"""`write_export` without SkyPilot: groups, vLLM commands, README, plan.json, atomic writes."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.export import ExportError, plan_groups, write_export
from tasks.export.groups import diff_groups

DATA = Path(__file__).parent.parent / "data" / "export"
FIXTURES = ("single-model.json", "fleet-spot.json", "mixed-pool.json", "uneven-split.json")


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def vllm_args(command: str) -> dict[str, str]:
    """`--flag value` pairs of a `vllm serve` command line."""
    words = shlex.split(command)
    assert words[:2] == ["vllm", "serve"]
    return {w: words[i + 1] for i, w in enumerate(words) if w.startswith("--")}


def run_commands(text: str) -> list[tuple[dict[str, Any], str]]:
    """(job or task document, its `vllm serve` line) for every document that serves."""
    found = []
    for document in yaml.safe_load_all(text):
        for line in str(document.get("run", "")).splitlines():
            if line.startswith("vllm serve "):
                found.append((document, line))
    return found


@pytest.mark.parametrize("fixture", FIXTURES)
def test_every_replica_group_serves_with_the_plans_tp_pp_and_split(
    fixture: str, tmp_path: Path
) -> None:
    plan = load(fixture)
    result = write_export(plan, tmp_path / "out")
    groups, _ = plan_groups(plan)
    assert [g.group for g in result.groups] == groups
    for export in result.groups:
        group, spec = export.group, export.spec
        assert spec is not None
        commands = [c for text in spec.files.values() for c in run_commands(text)]
        assert len(commands) == len(spec.files)  # one server per replica spec
        for document, command in commands:
            args = vllm_args(command)
            assert int(args["--pipeline-parallel-size"]) == group.pp
            assert int(args["--tensor-parallel-size"]) in group.tp_degrees
            if len(set(group.tp_degrees)) == 1:
                assert int(args["--tensor-parallel-size"]) == group.tp_degrees[0]
            envs = document.get("envs") or {}
            if group.uneven_split:
                split = [int(n) for n in envs["VLLM_PP_LAYER_PARTITION"].split(",")]
                assert split == group.layer_split
            else:
                assert "VLLM_PP_LAYER_PARTITION" not in envs
            if group.pp > 1:
                assert args["--distributed-executor-backend"] == "ray"
                # the server starts only once Ray holds every GPU of the replica
                assert f'get("GPU", 0) < {group.gpus_per_replica}:' in document["run"]
        written = {p.name for p in (tmp_path / "out").iterdir()}
        assert set(spec.files) <= written


def test_uneven_split_is_passed_as_vllm_pp_layer_partition(tmp_path: Path) -> None:
    result = write_export(load("uneven-split.json"), tmp_path / "out")
    partitions = sorted(g.spec.env.get("VLLM_PP_LAYER_PARTITION", "") for g in result.groups)
    assert partitions == ["17,15", "27,27,26", "44,36"]
    first = result.groups[0].spec.files
    for document, _ in run_commands((tmp_path / "out" / next(iter(first))).read_text()):
        assert document["envs"]["VLLM_PP_LAYER_PARTITION"] == "44,36"


def test_mixed_pool_plan_exports_without_loss(tmp_path: Path) -> None:
    plan = load("mixed-pool.json")
    result = write_export(plan, tmp_path / "out")
    readme = (tmp_path / "out" / "README.md").read_text()
    mixed = [g for g in result.groups if not g.group.native]
    assert len(mixed) == 3
    for export in mixed:
        assert export.spec is not None and export.spec.kind == "job-group"
        assert len(export.spec.files) == export.group.count  # one JobGroup per replica
        assert f"`{export.group.name}` (job-group)" in readme
        jobs_per_file = [list(yaml.safe_load_all(t))[1:] for t in export.spec.files.values()]
        for jobs in jobs_per_file:  # every stage of the plan is a job on its own pool
            assert [j["resources"]["accelerators"] for j in jobs] == [
                f"{s.gpu}:{s.tp}" for s in export.group.stages
            ]
            assert [j["resources"]["use_spot"] for j in jobs] == [
                s.use_spot for s in export.group.stages
            ]
    section = readme.split("## What SkyPilot or vLLM cannot express as planned")[1]
    assert "JobGroup" in section and "load balancer" in section
    assert "TP 2,4" in section and "idle" in section  # the per-stage TP vLLM cannot run
    for export in mixed:
        assert export.group.name in section
    document = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert len(document["export"]["notes"]) == len(result.notes) >= 4
    assert document["export"]["notes"] == result.notes


def test_plan_json_is_the_plan_plus_launch_commands(tmp_path: Path) -> None:
    plan = load("fleet-spot.json")
    result = write_export(plan, tmp_path / "out")
    document = json.loads((tmp_path / "out" / "plan.json").read_text())
    for key in ("strategy", "status", "tokens_per_s", "cost_per_hour", "models", "resilience"):
        assert document[key] == plan[key]
    assert len(document["replicas"]) == len(plan["replicas"])
    for original, exported in zip(plan["replicas"], document["replicas"], strict=True):
        assert {k: v for k, v in exported.items() if k != "export"} == original
        files = exported["export"]["files"]
        assert files and all((tmp_path / "out" / f).is_file() for f in files)
        assert exported["export"]["launch"][0].startswith("sky serve up ")
        assert files[0] in exported["export"]["launch"][0]
    assert {g["name"] for g in document["export"]["groups"]} == {
        g.group.name for g in result.groups
    }


def test_names_are_stable_and_valid_service_names() -> None:
    first, _ = plan_groups(load("fleet-spot.json"))
    second, _ = plan_groups(json.loads(json.dumps(load("fleet-spot.json"))))
    assert [g.name for g in first] == [g.name for g in second]
    assert len({g.name for g in first}) == len(first)
    for group in first:
        assert group.name[0].isalpha() and len(group.name) <= 63
        assert set(group.name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_readme_orders_launches_before_stops_and_counts_changes(tmp_path: Path) -> None:
    previous, current = load("fleet-spot.json"), load("fleet-spot.json")
    current["replicas"][0] = {**current["replicas"][0], "count": 9}  # 6 -> 9 spot A10G
    del current["replicas"][3]  # the gcp 70B replica goes
    current["replicas"].append(load("single-model.json")["replicas"][1])  # 2 x L4 aws is new
    result = write_export(current, tmp_path / "out", previous_plan_json=previous)
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "5 replica(s) to launch, 1 replica(s) to stop." in readme
    assert "18 replica(s) in 4 group(s)" in result.summary()
    assert "; 5 to launch, 1 to stop" in result.summary()
    actions = {c.group.name: (c.action, c.before, c.after) for c in result.changes or []}
    assert actions["llama-3-1-8b-aws-us-east-1-a10g-spot-tp1"] == ("scale up", 6, 9)
    assert actions["llama-3-1-70b-gcp-us-central1-a100-80gb-tp2-pp2"] == ("stop", 1, 0)
    assert actions["llama-3-1-8b-aws-us-east-1-l4-tp1"] == ("launch", 0, 2)
    launch_at = readme.index("sky serve up llama-3-1-8b-aws-us-east-1-l4-tp1.yaml")
    scale_at = readme.index("sky serve update llama-3-1-8b-aws-us-east-1-a10g-spot-tp1")
    stop_at = readme.index("sky serve down llama-3-1-70b-gcp-us-central1-a100-80gb-tp2-pp2")
    wait_at = readme.index("Wait until it serves")
    assert launch_at < wait_at < stop_at and scale_at < wait_at


def test_job_group_scale_down_cancels_the_last_copies() -> None:
    previous, _ = plan_groups(load("mixed-pool.json"))
    current_plan = load("mixed-pool.json")
    current_plan["replicas"][0]["count"] = 1
    current, _ = plan_groups(current_plan)
    changes = {c.group.name: c for c in diff_groups(previous, current)}
    change = changes[current[0].name]
    assert (change.action, change.before, change.after) == ("scale down", 2, 1)


def test_pre_fleet_plan_needs_a_model_name_and_says_the_market_is_assumed(
    tmp_path: Path,
) -> None:
    plan = load("single-model.json")
    for replica in plan["replicas"]:
        del replica["model"]
        for stage in replica["stages"]:
            del stage["market"]
    with pytest.raises(ExportError, match=r"replicas\[0\]: model is missing"):
        write_export(plan, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    result = write_export(plan, tmp_path / "b", default_model="llama-3.1-8b")
    assert any("pre-fleet" in n and "on-demand" in n for n in result.notes)
    assert "pre-fleet" in (tmp_path / "b" / "README.md").read_text()


def test_unknown_model_is_served_by_its_plan_name_and_said_so(tmp_path: Path) -> None:
    plan = load("single-model.json")
    for replica in plan["replicas"]:
        replica["model"] = "house-model-7b"
    result = write_export(plan, tmp_path / "out")
    assert result.groups[0].hf_model == "house-model-7b"
    assert any("house-model-7b" in n and "--hf-model" in n for n in result.notes)
    named = write_export(plan, tmp_path / "out", hf_models={"house-model-7b": "acme/house-7b"})
    assert "vllm serve acme/house-7b " in named.groups[0].spec.vllm_command + " "


def test_json_format_writes_plan_json_only(tmp_path: Path) -> None:
    result = write_export(load("fleet-spot.json"), tmp_path / "out", format="json")
    assert result.files == ["plan.json"]
    document = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert document["export"]["format"] == "json"
    assert all(g["vllm_command"].startswith("vllm serve ") for g in document["export"]["groups"])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update(replicas=[]), "no replicas"),
        (lambda p: p["replicas"][0].update(count=0), r"replicas\[0\]: count must be"),
        (lambda p: p["replicas"][1]["stages"][0].update(tp="2"), r"stages\[0\]: tp must be"),
        (lambda p: p["replicas"][0]["stages"][0].update(market="reserved"), "market must be"),
        (lambda p: p["replicas"][0].pop("region"), "region is missing"),
    ],
)
def test_bad_plans_are_refused_in_one_line_and_write_nothing(
    mutate: Any, message: str, tmp_path: Path
) -> None:
    plan = load("single-model.json")
    mutate(plan)
    with pytest.raises(ExportError, match=message) as caught:
        write_export(plan, tmp_path / "out")
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_foreign_folder_and_replaces_an_earlier_export(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty and is not an earlier replan export"):
        write_export(load("single-model.json"), foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    out = tmp_path / "out"
    first = write_export(load("fleet-spot.json"), out)
    second = write_export(load("single-model.json"), out)
    assert set(first.files) != set(second.files)
    assert sorted(p.name for p in out.iterdir() if p.name != ".replan-export") == second.files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign", "out"]  # no temp left


def test_unwritable_destination_leaves_no_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot write there"):
        write_export(load("single-model.json"), blocker / "out")
    with pytest.raises(ExportError, match="exists and is not a folder"):
        write_export(load("single-model.json"), blocker)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_failure_mid_write_keeps_the_earlier_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    first = write_export(load("single-model.json"), out)
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ExportError, match="No space left on device"):
        write_export(load("fleet-spot.json"), out)
    assert sorted(p.name for p in out.iterdir() if p.name != ".replan-export") == first.files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_union_of_pre_fleet_model_plans_exports_every_model(tmp_path: Path) -> None:
    from tasks.export.source import union_plan

    fleet = load("fleet-spot.json")
    parts = []
    for model in ("llama-3.1-8b", "llama-3.1-70b"):
        replicas = [
            {k: v for k, v in r.items() if k != "model"}
            for r in fleet["replicas"]
            if r["model"] == model
        ]
        parts.append((model, {"strategy": "exact", "status": "optimal", "replicas": replicas}))
    result = write_export(union_plan(parts), tmp_path / "out")
    assert sorted({g.group.model for g in result.groups}) == ["llama-3.1-70b", "llama-3.1-8b"]
    assert sum(g.group.count for g in result.groups) == sum(r["count"] for r in fleet["replicas"])


def test_inventory_kv_reserve_becomes_vllm_context_and_batch_limits(tmp_path: Path) -> None:
    from tasks.export import serving_limits
    from tasks.inventory import load_inventory

    inventory = load_inventory(Path(__file__).parents[2] / "config" / "inventory.yaml")
    limits = serving_limits(inventory.models)
    result = write_export(load("fleet-spot.json"), tmp_path / "out", serving_limits=limits)
    for export in result.groups:
        kv = inventory.models[export.group.model].kv_cache
        args = vllm_args(export.spec.vllm_command)
        assert int(args["--max-model-len"]) == kv.context_tokens
        assert int(args["--max-num-seqs"]) == kv.batch
    assert not any("KV-cache reserve" in n for n in result.notes)
    bare = write_export(load("fleet-spot.json"), tmp_path / "bare")
    assert "--max-model-len" not in bare.groups[0].spec.vllm_command
    assert sum("KV-cache reserve is not known" in n for n in bare.notes) == 2  # one per model
