"""The nightly report: Markdown, self-contained HTML, a PNG chart, Slack sections, artifacts."""

from tasks.report.build import (
    Report,
    build_report,
    chart_file_name,
    chart_points,
    combine_reports,
    slack_sections,
)
from tasks.report.chart import ChartPoint, render_chart
from tasks.report.content import (
    CHART_FILE,
    STRATEGY_NOTE,
    ExportNote,
    ReportLinks,
    usd_per_day_at_demand,
    usd_per_day_of_plan,
)
from tasks.report.links import REPORT_BASE_URL_ENV, report_links
from tasks.report.output import artifact_key, publish_artifacts, write_report

__all__ = [
    "CHART_FILE",
    "REPORT_BASE_URL_ENV",
    "STRATEGY_NOTE",
    "ChartPoint",
    "ExportNote",
    "Report",
    "ReportLinks",
    "artifact_key",
    "build_report",
    "chart_file_name",
    "chart_points",
    "combine_reports",
    "publish_artifacts",
    "render_chart",
    "report_links",
    "slack_sections",
    "usd_per_day_at_demand",
    "usd_per_day_of_plan",
    "write_report",
]
