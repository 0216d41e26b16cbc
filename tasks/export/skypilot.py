"""SkyPilot launch specs and vLLM commands for replica groups.

Verified against the sources named in tasks/export/README.md:
- vLLM takes an uneven pipeline split from the env var `VLLM_PP_LAYER_PARTITION`, comma-separated
  layer counts, one per pipeline rank, summing to the model's hidden layers
  (`vllm/distributed/utils.py: get_pp_indices`). vLLM's OpenAI server answers GET /health.
- SkyPilot gives every node of a task the same `resources`; multi-node tasks see
  `SKYPILOT_NODE_RANK` and `SKYPILOT_NODE_IPS`; SkyPilot's own Ray uses port 6380, so the
  task's Ray cluster takes 6379. A SkyServe task needs all its resources spot or none.
- A JobGroup (`sky jobs launch`, multi-document YAML: header then jobs) runs jobs with
  different resources side by side in one cloud and region; job `J` of group `G` is
  reachable as `J-0.G` (`sky/jobs/job_group_networking.py`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

import yaml

from tasks.export.groups import ReplicaGroup
from tasks.export.models import ModelServer

SERVER_PORT = 8000
RAY_PORT = 6379
HEALTH_PATH = "/health"
READINESS_INITIAL_DELAY_S = 1800  # weights of a 70B model take minutes to download and load
VLLM_REQUIREMENT = "vllm>=0.8"
PARTITION_ENV = "VLLM_PP_LAYER_PARTITION"
HEAD_JOB = "stage0"
JOB_GROUP_NOTE = (
    "SkyServe gives every node of a replica the same `resources`, and a service's resources "
    "are all spot or all on-demand. A replica whose stages sit on different pools (GPU type "
    "or market) or differ in TP is therefore written as one SkyPilot JobGroup per replica "
    "(`sky jobs launch`, one job per stage, each on its own pool, in the replica's cloud and "
    "region). JobGroups have no SkyServe load balancer, readiness probe or replica "
    f"replacement: put each head job's port {SERVER_PORT} behind your own load balancer "
    f"and probe GET {HEALTH_PATH}."
)


@dataclass(frozen=True)
class LaunchSpec:
    """The files and commands that launch one replica group."""

    kind: str  # "service" (SkyServe) or "job-group" (one SkyPilot JobGroup per replica)
    files: dict[str, str]  # file name -> YAML text
    launch: list[str]
    stop: list[str]
    scale: list[str]
    vllm_command: str
    env: dict[str, str]
    limits: list[str]  # what the spec cannot express as the plan says


def vllm_env(group: ReplicaGroup) -> dict[str, str]:
    """Environment the vLLM server needs for this group's layer split."""
    return {PARTITION_ENV: ",".join(map(str, group.layer_split))} if group.uneven_split else {}


def vllm_command(group: ReplicaGroup, server: ModelServer) -> str:
    """`vllm serve` with the plan's TP and PP sizes (the split goes in `vllm_env`), and the
    context and batch the planner reserved KV cache for, when known."""
    args = [
        "vllm",
        "serve",
        server.hf_model,
        "--served-model-name",
        group.model,
        "--host",
        "0.0.0.0",
        "--port",
        str(SERVER_PORT),
        "--tensor-parallel-size",
        str(min(group.tp_degrees)),
        "--pipeline-parallel-size",
        str(group.pp),
    ]
    if group.pp > 1:
        args += ["--distributed-executor-backend", "ray"]
    if server.limits is not None:
        args += [
            "--max-model-len",
            str(server.limits.max_model_len),
            "--max-num-seqs",
            str(server.limits.max_num_seqs),
        ]
    return shlex.join(args)


def _resources(group: ReplicaGroup, stage_index: int, *, ports: bool) -> dict[str, Any]:
    stage = group.stages[stage_index]
    resources: dict[str, Any] = {
        "cloud": group.cloud,
        "region": group.region,
        "accelerators": f"{stage.gpu}:{stage.tp}",
        "use_spot": stage.use_spot,
    }
    if ports:
        resources["ports"] = SERVER_PORT
    return resources


def _setup() -> str:
    return f'pip install "{VLLM_REQUIREMENT}" "ray[default]"\n'


def _wait_for_gpus(total_gpus: int) -> str:
    """Shell lines that block until the Ray cluster holds every GPU of the replica."""
    return (
        "python3 - <<'PY'\n"
        "import time, ray\n"
        'ray.init(address="auto", logging_level="ERROR")\n'
        f'while ray.cluster_resources().get("GPU", 0) < {total_gpus}:\n'
        "    time.sleep(5)\n"
        "PY\n"
    )


def _header(group: ReplicaGroup, note: str) -> str:
    return (
        f"# replan export: {group.count} replica(s) of {group.describe()}\n"
        f"# vLLM: TP {','.join(map(str, group.tp_degrees))}, PP {group.pp}, "
        f"layers {','.join(map(str, group.layer_split))}. {note}\n"
    )


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (setup, run) as literal blocks, as people write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100)


def _dump_all(documents: list[dict[str, Any]]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, width=100)


def service_spec(group: ReplicaGroup, server: ModelServer, file_name: str) -> LaunchSpec:
    """A SkyServe service: `service.replicas` = count, one node per pipeline stage."""
    env = vllm_env(group)
    command = vllm_command(group, server)
    if group.pp == 1:
        run = command + "\n"
    else:
        run = (
            'HEAD_IP=$(echo "$SKYPILOT_NODE_IPS" | head -n1)\n'
            'if [ "$SKYPILOT_NODE_RANK" != "0" ]; then\n'
            f"  until ray start --address=$HEAD_IP:{RAY_PORT} --disable-usage-stats --block; "
            "do sleep 5; done\n"
            "  exit 0\n"
            "fi\n"
            f"ray start --head --port={RAY_PORT} --disable-usage-stats\n"
            + _wait_for_gpus(group.gpus_per_replica)
            + command
            + "\n"
        )
    document: dict[str, Any] = {
        "name": group.name,
        "service": {
            "readiness_probe": {
                "path": HEALTH_PATH,
                "initial_delay_seconds": READINESS_INITIAL_DELAY_S,
            },
            "replicas": group.count,
        },
        "resources": _resources(group, 0, ports=True),
    }
    if group.pp > 1:
        document["num_nodes"] = group.pp
    if env:
        document["envs"] = env
    document["secrets"] = {"HF_TOKEN": None}
    document["setup"] = _setup()
    document["run"] = run
    note = "One node per pipeline stage." if group.pp > 1 else ""
    text = _header(group, note) + _dump(document)
    name = group.name
    return LaunchSpec(
        kind="service",
        files={file_name: text},
        launch=[f"sky serve up {file_name} -n {name} --secret HF_TOKEN"],
        stop=[f"sky serve down {name}"],
        scale=[f"sky serve update {name} {file_name} --secret HF_TOKEN"],
        vllm_command=command,
        env=env,
        limits=[],
    )


def job_group_spec(group: ReplicaGroup, server: ModelServer, file_stem: str) -> LaunchSpec:
    """One SkyPilot JobGroup per replica: one job per stage, each on its own pool."""
    env = vllm_env(group)
    command = vllm_command(group, server)
    limits = [
        f"stages on {len({s.pool for s in group.stages})} pools with TP "
        f"{','.join(map(str, group.tp_degrees))}: one SkyPilot JobGroup per replica "
        f"({group.count} file(s)), not a SkyServe service",
        "vLLM assigns pipeline ranks to Ray workers itself: rank 0 is the head job "
        f"({group.stages[0].gpu}); check in the vLLM log that the other ranks landed on the "
        "planned GPU types",
    ]
    if len(set(group.tp_degrees)) > 1:
        idle_gpus = group.gpus_per_replica - min(group.tp_degrees) * group.pp
        limits.append(
            f"vLLM runs one tensor-parallel size on every stage; the plan's stages have TP "
            f"{','.join(map(str, group.tp_degrees))}: the command uses TP "
            f"{min(group.tp_degrees)}, so {idle_gpus}"
            " GPU(s) per replica stay idle until vLLM supports per-stage TP"
        )
    files: dict[str, str] = {}
    launch: list[str] = []
    stop: list[str] = []
    for copy in range(1, group.count + 1):
        group_name = f"{group.name}-r{copy}"
        documents: list[dict[str, Any]] = [
            {"name": group_name, "execution": "parallel", "primary_tasks": [HEAD_JOB]}
        ]
        for index in range(group.pp):
            job: dict[str, Any] = {
                "name": f"stage{index}",
                "resources": _resources(group, index, ports=index == 0),
            }
            if env:
                job["envs"] = env  # vLLM reads the split on every pipeline rank
            if index == 0:
                job["secrets"] = {"HF_TOKEN": None}
                job["setup"] = _setup()
                job["run"] = (
                    f"ray start --head --port={RAY_PORT} --disable-usage-stats\n"
                    + _wait_for_gpus(group.gpus_per_replica)
                    + command
                    + "\n"
                )
            else:
                job["setup"] = _setup()
                job["run"] = (
                    f"HEAD={HEAD_JOB}-0.$SKYPILOT_JOBGROUP_NAME\n"
                    f"until ray start --address=$HEAD:{RAY_PORT} --disable-usage-stats --block; "
                    "do sleep 5; done\n"
                )
            documents.append(job)
        file_name = f"{file_stem}-r{copy}.yaml"
        note = "A JobGroup: one job per stage (see README)."
        files[file_name] = _header(group, note) + _dump_all(documents)
        launch.append(f"sky jobs launch {file_name} --secret HF_TOKEN")
        stop.append(f"sky jobs cancel -n {group_name}")
    return LaunchSpec(
        kind="job-group",
        files=files,
        launch=launch,
        stop=stop,
        scale=[],
        vllm_command=command,
        env=env,
        limits=limits,
    )


def launch_spec(group: ReplicaGroup, server: ModelServer) -> LaunchSpec:
    """The most faithful SkyPilot form of the group: a service when native, else JobGroups.

    Files are named after the group, so the same group keeps its file from plan to plan.
    """
    stem = group.name
    if group.native:
        return service_spec(group, server, f"{stem}.yaml")
    return job_group_spec(group, server, stem)


def stop_commands(group: ReplicaGroup) -> list[str]:
    """How to stop a group that an earlier export launched (same naming rules)."""
    if group.native:
        return [f"sky serve down {group.name}"]
    return [f"sky jobs cancel -n {group.name}-r{copy}" for copy in range(1, group.count + 1)]
