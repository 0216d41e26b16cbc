"""The nightly report: Markdown, self-contained HTML, a PNG chart, Slack sections, artifacts."""

from tasks.report.build import Report, build_report, combine_reports, slack_sections
from tasks.report.chart import ChartPoint, render_chart
from tasks.report.content import (
    CHART_FILE,
    SEED_LESSON,
    usd_per_day_at_demand,
    usd_per_day_of_plan,
)
from tasks.report.output import artifact_key, publish_artifacts, write_report

__all__ = [
    "CHART_FILE",
    "SEED_LESSON",
    "ChartPoint",
    "Report",
    "artifact_key",
    "build_report",
    "combine_reports",
    "publish_artifacts",
    "render_chart",
    "slack_sections",
    "usd_per_day_at_demand",
    "usd_per_day_of_plan",
    "write_report",
]
