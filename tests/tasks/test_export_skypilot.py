"""The exported specs as the real SkyPilot client reads them (the `deploy` extra).

SkyPilot is imported once per session, with HOME pointed at a temporary folder so it neither
reads nor writes the real ~/.sky. In CI (CI=true) a missing extra fails the tests; elsewhere
they are skipped with the install command.
"""

from __future__ import annotations

import json
import os
import shlex
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tasks.export import write_export

DATA = Path(__file__).parent.parent / "data" / "export"
FIXTURES = ("single-model.json", "fleet-spot.json", "mixed-pool.json", "uneven-split.json")
INSTALL = "pip install -e '.[dev,deploy]'"


@pytest.fixture(scope="session")
def sky_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sky-home")


@pytest.fixture(scope="session")
def sky(sky_home: Path) -> SimpleNamespace:
    """The SkyPilot client modules, imported once with HOME in a temporary folder.

    HOME is changed only while importing; each test of this module sets it again (below), so
    the rest of the session keeps the real HOME.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(sky_home))
        patch.setenv("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
        try:
            import sky as sky_module
            from sky.client.cli import command
            from sky.serve import serve_utils
            from sky.utils import common_utils, dag_utils
        except ImportError as exc:
            message = f"skypilot (the deploy extra) is not installed: {exc}; run {INSTALL}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    return SimpleNamespace(
        sky=sky_module,
        serve_utils=serve_utils,
        dag_utils=dag_utils,
        common=common_utils,
        cli=command.cli,
    )


@pytest.fixture(autouse=True)
def _sky_home_for_each_test(sky_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(sky_home))
    monkeypatch.setenv("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")


def plan_gpus(plan: dict[str, Any]) -> Counter[tuple[str, str, str, bool]]:
    """GPUs the plan rents, by (cloud, region, gpu, spot)."""
    gpus: Counter[tuple[str, str, str, bool]] = Counter()
    for replica in plan["replicas"]:
        for stage in replica["stages"]:
            key = (replica["cloud"], replica["region"], stage["gpu"], stage["market"] == "spot")
            gpus[key] += replica["count"] * stage["tp"]
    return gpus


def task_gpus(task: Any, replicas: int) -> Counter[tuple[str, str, str, bool]]:
    """GPUs a parsed SkyPilot task asks for: accelerators x nodes x replicas."""
    (resources,) = list(task.resources)
    ((gpu, per_node),) = resources.accelerators.items()
    key = (str(resources.cloud).lower(), resources.region, gpu, bool(resources.use_spot))
    return Counter({key: int(per_node) * task.num_nodes * replicas})


def load_export(sky: SimpleNamespace, out: Path) -> tuple[Counter[Any], list[Any], list[Any]]:
    """Parse every YAML of an export with SkyPilot; the GPUs they ask for, services, dags."""
    gpus: Counter[Any] = Counter()
    services, job_groups = [], []
    for path in sorted(out.glob("*.yaml")):
        if sky.dag_utils.is_job_group_yaml(str(path)):
            dag = sky.dag_utils.load_job_group_from_yaml(str(path))
            assert dag.is_job_group()
            for task in dag.tasks:
                gpus += task_gpus(task, 1)  # one JobGroup file per replica
            job_groups.append(dag)
        else:
            task = sky.sky.Task.from_yaml(str(path))
            sky.serve_utils.validate_service_task(task, pool=False)
            assert task.service.min_replicas == task.service.max_replicas or (
                task.service.max_replicas is None
            )
            gpus += task_gpus(task, task.service.min_replicas)
            services.append(task)
    return gpus, services, job_groups


@pytest.mark.parametrize("fixture", FIXTURES)
def test_skypilot_accepts_every_spec_and_the_gpus_add_up_to_the_plan(
    fixture: str, sky: SimpleNamespace, tmp_path: Path
) -> None:
    plan = json.loads((DATA / fixture).read_text())
    result = write_export(plan, tmp_path / "out")
    gpus, services, job_groups = load_export(sky, tmp_path / "out")
    assert gpus == plan_gpus(plan)
    by_name = {g.group.name: g.group for g in result.groups}
    for name in by_name:  # what `sky serve up -n` and `sky jobs launch` check
        sky.common.check_cluster_name_is_valid(name)
    for task in services:
        group = by_name[task.name]
        assert task.service.min_replicas == group.count
        assert task.num_nodes == group.pp
        assert task.service.readiness_path == "/health"
        (resources,) = list(task.resources)
        assert resources.ports == ["8000"]
        assert resources.use_spot == group.stages[0].use_spot
        assert str(resources.cloud).lower() == group.cloud and resources.region == group.region
        if group.uneven_split:
            assert task.envs["VLLM_PP_LAYER_PARTITION"] == ",".join(map(str, group.layer_split))
    assert len(services) == sum(1 for g in result.groups if g.group.native)
    assert len(job_groups) == sum(g.group.count for g in result.groups if not g.group.native)


def test_mixed_pool_replicas_are_job_groups_with_one_job_per_stage(
    sky: SimpleNamespace, tmp_path: Path
) -> None:
    plan = json.loads((DATA / "mixed-pool.json").read_text())
    result = write_export(plan, tmp_path / "out")
    _, _, job_groups = load_export(sky, tmp_path / "out")
    mixed = {g.group.name: g.group for g in result.groups if not g.group.native}
    assert len(job_groups) == sum(g.count for g in mixed.values()) == 4
    for dag in job_groups:
        group = mixed[dag.name.rsplit("-r", 1)[0]]
        assert [t.name for t in dag.tasks] == [f"stage{i}" for i in range(group.pp)]
        for task, stage in zip(dag.tasks, group.stages, strict=True):
            (resources,) = list(task.resources)
            assert resources.accelerators == {stage.gpu: stage.tp}
            assert resources.use_spot == stage.use_spot
            assert resources.region == group.region
        serving = [t for t in dag.tasks if "vllm serve" in (t.run or "")]
        assert [t.name for t in serving] == ["stage0"]
        assert f"--pipeline-parallel-size {group.pp}" in serving[0].run


def test_skyserve_refuses_what_the_export_turns_into_job_groups(
    sky: SimpleNamespace, tmp_path: Path
) -> None:
    """Why mixed-market replicas are not services: SkyServe rejects mixed spot resources."""
    spec = tmp_path / "mixed.yaml"
    spec.write_text(
        "service: {readiness_probe: /health, replicas: 1}\n"
        "resources:\n  ports: 8000\n  any_of:\n"
        "    - {cloud: aws, region: us-east-1, accelerators: A100-80GB:2, use_spot: true}\n"
        "    - {cloud: aws, region: us-east-1, accelerators: A100-80GB:2, use_spot: false}\n"
        "run: echo\n"
    )
    task = sky.sky.Task.from_yaml(str(spec))
    with pytest.raises(ValueError, match="all use spot or none"):
        sky.serve_utils.validate_service_task(task, pool=False)


def parse_sky_command(cli: Any, line: str) -> tuple[str, dict[str, Any]]:
    """Parse a `sky ...` line with SkyPilot's own click CLI, without running it."""
    words = shlex.split(line)
    assert words[0] == "sky"
    context = cli.make_context("sky", words[1:])
    command, args = cli, [*context.protected_args, *context.args]
    while hasattr(command, "resolve_command"):
        name, command, args = command.resolve_command(context, args)
        context = command.make_context(name, args, parent=context)
        args = [*getattr(context, "protected_args", []), *context.args]
    return command.name, context.params


def test_every_command_in_the_readme_parses_with_the_sky_cli(
    sky: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "not-a-token")  # `--secret HF_TOKEN` reads it locally
    previous = json.loads((DATA / "mixed-pool.json").read_text())
    current = json.loads((DATA / "mixed-pool.json").read_text())
    current["replicas"][0]["count"] = 1  # a JobGroup copy to cancel
    current["replicas"][3]["count"] = 5  # a service to scale up
    current["replicas"][2]["count"] = 2  # a JobGroup copy to launch
    del current["replicas"][1]  # a JobGroup to stop
    current["replicas"] += json.loads((DATA / "fleet-spot.json").read_text())["replicas"][:1]
    write_export(current, tmp_path / "out", previous_plan_json=previous)
    readme = (tmp_path / "out" / "README.md").read_text()
    lines = [line.strip() for line in readme.splitlines() if line.strip().startswith("sky ")]
    parsed = [parse_sky_command(sky.cli, line) for line in lines]
    assert sorted({name for name, _ in parsed}) == ["cancel", "launch", "up", "update"]
    for name, params in parsed:
        if name in ("up", "update", "launch"):
            (spec,) = params["service_yaml" if name != "launch" else "entrypoint"]
            assert (tmp_path / "out" / spec).is_file()
            assert params["secret"] == (("HF_TOKEN", "not-a-token"),)
