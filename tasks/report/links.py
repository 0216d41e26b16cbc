"""Where a run's report lives: a URL under REPLAN_REPORT_BASE_URL or a file path, and the
Prefect run's page when a Prefect UI URL is known."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tasks.export.nightly import EXPORT_FOLDER
from tasks.report.content import ReportLinks
from tasks.report.output import HTML_FILE

REPORT_BASE_URL_ENV = "REPLAN_REPORT_BASE_URL"


def report_links(
    run_dir: str | Path,
    chart_file: str,
    *,
    flow_run_id: str | None = None,
    ui_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ReportLinks:
    """Links for one model's report in `run_dir`.

    With REPLAN_REPORT_BASE_URL set (the reports directory served over http(s)), the report
    and the chart get URLs under it; the chart URL lets Slack show the chart as an image.
    Without it the report link is the report file's absolute path and there is no chart URL.
    `ui_url` defaults to Prefect's configured UI URL (PREFECT_UI_URL, or derived from
    PREFECT_API_URL); the run link needs it and `flow_run_id`.
    """
    env = os.environ if environ is None else environ
    run_dir = Path(run_dir)
    base = env.get(REPORT_BASE_URL_ENV, "").strip().rstrip("/")
    if base.startswith(("https://", "http://")):
        report_url: str = f"{base}/{run_dir.name}/{HTML_FILE}"
        chart_url: str | None = f"{base}/{run_dir.name}/{chart_file}"
        export_url = f"{base}/{run_dir.name}/{EXPORT_FOLDER}/README.md"
    else:
        report_url, chart_url = str((run_dir / HTML_FILE).absolute()), None
        export_url = str((run_dir / EXPORT_FOLDER).absolute())
    ui = (ui_url if ui_url is not None else _prefect_ui_url()) or ""
    run_url = f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui and flow_run_id else None
    return ReportLinks(
        report_url=report_url, run_url=run_url, chart_url=chart_url, export_url=export_url
    )


def _prefect_ui_url() -> str | None:
    from prefect.settings import get_current_settings

    return get_current_settings().ui_url
