"""`write_export`: a plan as a folder of launch specs, a plan.json and a README, written whole."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.export.groups import (
    ExportError,
    GroupChange,
    ReplicaGroup,
    diff_groups,
    plan_groups,
    plan_groups_by_replica,
)
from tasks.export.models import ModelServer, ServingLimits, hf_model_for
from tasks.export.skypilot import (
    HEALTH_PATH,
    JOB_GROUP_NOTE,
    PARTITION_ENV,
    SERVER_PORT,
    LaunchSpec,
    launch_spec,
    stop_commands,
    vllm_command,
    vllm_env,
)

FORMATS = ("skypilot", "json")
MARKER = ".replan-export"
EXPORT_VERSION = 1


@dataclass(frozen=True)
class GroupExport:
    """One replica group as exported."""

    group: ReplicaGroup
    server: ModelServer
    spec: LaunchSpec | None  # None for --format json

    @property
    def hf_model(self) -> str:
        return self.server.hf_model


@dataclass(frozen=True)
class ExportResult:
    """What `write_export` wrote."""

    out_dir: Path
    format: str
    files: list[str]
    groups: list[GroupExport]
    changes: list[GroupChange] | None
    notes: list[str] = field(default_factory=list)  # what the export could not say natively

    def summary(self) -> str:
        """One line for a report or a Slack message."""
        replicas = sum(g.group.count for g in self.groups)
        line = f"{replicas} replica(s) in {len(self.groups)} group(s) written to {self.out_dir}"
        if self.changes is not None:
            launched = sum(max(c.after - c.before, 0) for c in self.changes)
            stopped = sum(max(c.before - c.after, 0) for c in self.changes)
            line += f"; {launched} to launch, {stopped} to stop"
        if self.notes:
            line += f"; {len(self.notes)} note(s) on what SkyPilot/vLLM cannot express"
        return line


def _parse(plan: Mapping[str, Any] | str, what: str) -> dict[str, Any]:
    try:
        parsed = json.loads(plan) if isinstance(plan, str) else dict(plan)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{what}: not a JSON object ({exc})") from None
    if not isinstance(parsed, dict):
        raise ExportError(f"{what}: not a JSON object")
    return parsed


def write_export(
    plan_json: Mapping[str, Any] | str,
    out_dir: str | Path,
    *,
    previous_plan_json: Mapping[str, Any] | str | None = None,
    format: str = "skypilot",
    hf_models: Mapping[str, str] | None = None,
    default_model: str | None = None,
    serving_limits: Mapping[str, ServingLimits] | None = None,
    notes: Sequence[str] = (),
) -> ExportResult:
    """Write the plan's launch specs into `out_dir`, whole or not at all.

    `out_dir` must be missing, empty, or an earlier export (it holds `.replan-export`); an
    earlier export is replaced. The folder is built next to `out_dir` and renamed into place.
    `hf_models` maps plan model names to Hugging Face ids (over the built-in table);
    `default_model` names the model of a pre-fleet plan whose replicas carry none;
    `serving_limits` (see `models.serving_limits(inventory.models)`) give vLLM the context and
    batch the planner reserved KV cache for; `notes` are said in the README too.
    """
    if format not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    plan = _parse(plan_json, "plan")
    groups, group_notes = plan_groups(plan, default_model=default_model)
    notes = [*notes, *group_notes]
    if not groups:
        raise ExportError("plan: no replicas to export")
    changes = None
    if previous_plan_json is not None:
        previous = _parse(previous_plan_json, "previous plan")
        previous_groups, previous_notes = plan_groups(previous, default_model=default_model)
        notes += [f"previous {n}" for n in previous_notes]
        changes = diff_groups(previous_groups, groups)
    exports: list[GroupExport] = []
    if format == "skypilot" and not all(g.native for g in groups):
        notes.append(JOB_GROUP_NOTE)
    servers: dict[str, ModelServer] = {}
    for model in dict.fromkeys(g.model for g in groups):
        hf_model, known = hf_model_for(model, hf_models)
        limits = (serving_limits or {}).get(model)
        servers[model] = ModelServer(hf_model, known, limits)
        if not known:
            notes.append(
                f"model {model!r} has no Hugging Face id in the export's table: the specs "
                "serve the plan's name; pass --hf-model NAME=ORG/REPO"
            )
        if limits is None:
            notes.append(
                f"model {model!r}: the planner's KV-cache reserve is not known here (give the "
                "inventory): the vLLM commands carry no --max-model-len/--max-num-seqs, and "
                "vLLM's default context may not fit the planned GPUs"
            )
    for group in groups:
        server = servers[group.model]
        spec = launch_spec(group, server) if format == "skypilot" else None
        exports.append(GroupExport(group, server, spec))
        if spec is not None:
            notes += [f"{group.name}: {limit}" for limit in spec.limits]
    files: dict[str, str] = {}
    for export in exports:
        if export.spec is not None:
            files.update(export.spec.files)
    files["plan.json"] = (
        json.dumps(
            _plan_document(plan, exports, changes, notes, format, default_model),
            indent=2,
            sort_keys=False,
        )
        + "\n"
    )
    if format == "skypilot":
        files["README.md"] = _readme(plan, exports, changes, notes)
    files[MARKER] = json.dumps({"tool": "replan export", "version": EXPORT_VERSION}) + "\n"
    target = Path(out_dir)
    _write_folder(target, files)
    return ExportResult(
        out_dir=target,
        format=format,
        files=sorted(n for n in files if n != MARKER),
        groups=exports,
        changes=changes,
        notes=notes,
    )


def _check_target(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER).is_file():
        raise ExportError(
            f"{target}: folder is not empty and is not an earlier replan export; "
            "choose another --out"
        )


def _write_folder(target: Path, files: Mapping[str, str]) -> None:
    """Build the folder beside `target`, then swap it in; no half-written folder survives."""
    _check_target(target)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise ExportError(f"{target}: cannot write there ({exc.strerror or exc})") from None
    old: Path | None = None
    try:
        os.chmod(building, 0o755)
        for name, text in files.items():
            with open(building / name, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=parent))
            os.replace(target, old / "export")
        os.replace(building, target)
    except OSError as exc:
        shutil.rmtree(building, ignore_errors=True)
        if old is not None and (old / "export").exists() and not target.exists():
            os.replace(old / "export", target)  # put the earlier export back
        raise ExportError(f"{target}: cannot write there ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _group_json(export: GroupExport) -> dict[str, Any]:
    group = export.group
    document: dict[str, Any] = {
        "name": group.name,
        "model": group.model,
        "hf_model": export.hf_model,
        "count": group.count,
        "cloud": group.cloud,
        "region": group.region,
        "tp": group.tp_degrees,
        "pp": group.pp,
        "layers": group.layer_split,
        "vllm_command": vllm_command(group, export.server),
        "env": vllm_env(group),
    }
    if export.spec is not None:
        document.update(
            kind=export.spec.kind,
            files=list(export.spec.files),
            launch=export.spec.launch,
            limits=export.spec.limits,
        )
    return document


def _plan_document(
    plan: dict[str, Any],
    exports: list[GroupExport],
    changes: list[GroupChange] | None,
    notes: list[str],
    format: str,
    default_model: str | None,
) -> dict[str, Any]:
    by_key = {e.group.key: e for e in exports}
    _, _, keys = plan_groups_by_replica(plan, default_model=default_model)
    document = dict(plan)
    replicas = []
    for replica, key in zip(plan.get("replicas") or [], keys, strict=True):
        export = by_key[key]
        entry = dict(replica)
        entry["export"] = {
            "name": export.group.name,
            "files": list(export.spec.files) if export.spec else [],
            "launch": export.spec.launch if export.spec else [],
            "vllm_command": vllm_command(export.group, export.server),
            "env": vllm_env(export.group),
        }
        replicas.append(entry)
    document["replicas"] = replicas
    document["export"] = {
        "format": format,
        "version": EXPORT_VERSION,
        "groups": [_group_json(e) for e in exports],
        "notes": notes,
        "changes": None
        if changes is None
        else [
            {
                "name": c.group.name,
                "model": c.group.model,
                "before": c.before,
                "after": c.after,
                "action": c.action,
            }
            for c in changes
        ],
    }
    return document


def _money(value: Any, digits: int = 2) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, int | float) else "-"


def _readme(
    plan: dict[str, Any],
    exports: list[GroupExport],
    changes: list[GroupChange] | None,
    notes: list[str],
) -> str:
    lines = [
        "# Fleet launch specs (replan export)",
        "",
        f"Plan: strategy {plan.get('strategy', '-')}, status {plan.get('status', '-')}, "
        f"{_money(plan.get('tokens_per_s'), 0)} tokens/s, ${_money(plan.get('cost_per_hour'))}/h, "
        f"{sum(e.group.count * e.group.gpus_per_replica for e in exports)} GPUs in "
        f"{sum(e.group.count for e in exports)} replicas. `plan.json` holds the plan and, per "
        "replica group, its files and launch commands.",
        "",
        "Set up once: `pip install 'skypilot[aws,gcp,azure,lambda]'` (the clouds you use), "
        "`sky check`, and export `HF_TOKEN` (the specs ask for it with `--secret HF_TOKEN`). "
        f"Every replica runs vLLM's OpenAI server on port {SERVER_PORT}; SkyServe probes "
        f"GET {HEALTH_PATH}.",
        "",
        "## Replica groups",
        "",
        "| group | replicas | per replica | vLLM | files |",
        "|---|---|---|---|---|",
    ]
    for export in exports:
        group, spec = export.group, export.spec
        assert spec is not None
        stages = " + ".join(f"{s.gpu}:{s.tp}{' spot' if s.use_spot else ''}" for s in group.stages)
        split = ",".join(map(str, group.layer_split))
        env = f", `{PARTITION_ENV}={split}`" if group.uneven_split else ""
        vllm = f"TP {','.join(map(str, group.tp_degrees))}, PP {group.pp}, layers {split}{env}"
        lines.append(
            f"| `{group.name}` ({spec.kind}) | {group.count} | {group.cloud}/{group.region} "
            f"{stages} | {vllm} | {', '.join(f'`{f}`' for f in spec.files)} |"
        )
    lines += ["", "## What to run, in this order", ""]
    lines += _steps(exports, changes)
    lines += ["", "## What SkyPilot or vLLM cannot express as planned", ""]
    lines += [f"- {note}" for note in notes] or [
        "- Nothing: every replica group is one SkyServe service exactly as planned."
    ]
    lines += [
        "",
        "A multi-stage replica gets one node per pipeline stage (TP stays inside a node, as "
        "the planner assumes). Stages of one pool could also share one larger node; the "
        "specs do not assume such an instance exists.",
        "",
    ]
    return "\n".join(lines)


def _steps(exports: list[GroupExport], changes: list[GroupChange] | None) -> list[str]:
    specs = {e.group.key: e.spec for e in exports}
    if changes is None:
        lines = ["No previous plan was given: launch every group.", ""]
        for export in exports:
            assert export.spec is not None
            lines += [f"    {command}" for command in export.spec.launch]
        return lines
    step1: list[str] = []
    step3: list[str] = []
    summary: list[str] = []
    for change in changes:
        group, spec = change.group, specs.get(change.group.key)
        summary.append(
            f"- {change.action}: `{group.name}` {change.before} -> {change.after} "
            f"({group.describe()})"
        )
        if change.action == "launch" and spec is not None:
            step1 += spec.launch
        elif change.action in ("scale up", "scale down") and spec is not None:
            if spec.kind == "service":
                (step1 if change.action == "scale up" else step3).extend(spec.scale)
            elif change.action == "scale up":
                step1 += spec.launch[change.before :]
            else:
                step3 += stop_commands(group)[change.after :]
        elif change.action == "stop":
            step3 += stop_commands(group)
    launched = sum(max(c.after - c.before, 0) for c in changes)
    stopped = sum(max(c.before - c.after, 0) for c in changes)
    lines = [
        f"Changes from the previous plan: {launched} replica(s) to launch, "
        f"{stopped} replica(s) to stop.",
        "",
        *summary,
        "",
        "1. Launch the new capacity first:",
        "",
    ]
    lines += [f"       {c}" for c in step1] or ["       (nothing to launch)"]
    lines += [
        "",
        "2. Wait until it serves: `sky serve status` shows the new replicas READY "
        "(`sky jobs queue` for JobGroups).",
        "",
        "3. Then drain the old capacity:",
        "",
    ]
    lines += [f"       {c}" for c in step3] or ["       (nothing to stop)"]
    return lines
