"""`replan run` writes launch specs next to each run's report (issue 11), through the real
flow engine, a SQLite state file and a loopback Slack webhook; a failed export never stops
the report or its publication."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.flows.conftest import INVENTORY, MODEL, V100_POOL, Deployment
from tests.flows.test_replan_flow import slack_text, store_of

pytestmark = pytest.mark.usefixtures("prefect_harness")


def run_dir_of(summary: dict) -> Path:
    return Path(summary["report"]).parent


def test_each_run_writes_the_export_beside_its_report_and_names_it(
    deployment: Deployment,
) -> None:
    first = deployment.run(deployment.prices("prices-baseline.csv"))
    export_dir = run_dir_of(first) / "export"
    assert first["export"] == {"folder": str(export_dir), "written": True, "error": None}
    plan = json.loads((export_dir / "plan.json").read_text())
    assert sum(g["count"] for g in plan["export"]["groups"]) == 2
    (spec_file,) = [p for p in export_dir.glob("*.yaml")]
    spec = yaml.safe_load(spec_file.read_text())
    assert spec["service"]["replicas"] == 2 and spec["resources"]["use_spot"] is True
    assert "sky serve up " in (export_dir / "README.md").read_text()

    report = Path(first["report"]).read_text()
    assert "## Launch specs" in report and str(export_dir.absolute()) in report
    assert "2 replica(s) in 1 group(s)" in report
    (post,) = deployment.posts()
    text = slack_text(post)
    assert "Launch specs" in text and str(export_dir.absolute()) in text

    moved = deployment.run(deployment.prices("prices-above-threshold.csv"))
    moved_export = run_dir_of(moved) / "export"
    assert moved["export"]["written"] and moved_export != export_dir
    readme = (moved_export / "README.md").read_text()
    # against the plan published by the first run: 4 T4 replicas up, 2 V100 down
    assert "4 to launch, 2 to stop" in Path(moved["report"]).read_text()
    assert V100_POOL.split("/")[-1] in readme
    assert "4 to launch, 2 to stop" in slack_text(deployment.posts()[-1])


def test_an_export_that_cannot_be_written_leaves_the_report_and_its_publication(
    deployment: Deployment, tmp_path: Path
) -> None:
    # quotas of 1 V100 + 1 T4 serve 1,500 of the 2,000 tokens/s: no plan, nothing to launch
    tight = tmp_path / "tight.yaml"
    text = INVENTORY.read_text().replace("max_gpus: 8", "max_gpus: 1")
    tight.write_text(text)
    summary = deployment.run(deployment.prices("prices-baseline.csv"), inventory=str(tight))
    assert summary["status"] == "completed"
    export = summary["export"]
    assert export["written"] is False and "no replicas" in export["error"]
    assert not Path(export["folder"]).exists()
    report = Path(summary["report"]).read_text()
    assert "No launch specs were written tonight: " in report
    assert store_of(deployment).recent_runs(1)[0].status == "completed"
    assert MODEL in summary["models"]


def test_run_summary_prints_the_export_folder(deployment: Deployment) -> None:
    from flows.commands.run import render_summary

    summary = deployment.run(deployment.prices("prices-baseline.csv"))
    lines = render_summary(summary).splitlines()
    assert f"export: {run_dir_of(summary) / 'export'}" in lines
    assert lines[-1].startswith("report: ")
    failed = {**summary, "export": {"folder": "x", "written": False, "error": "disk full"}}
    assert "export: not written: disk full" in render_summary(failed).splitlines()
