"""Write a report's files atomically, and publish it as Prefect artifacts."""

from __future__ import annotations

import re
from pathlib import Path
from uuid import UUID

from tasks.files import write_bytes_atomic
from tasks.report.build import Report

MARKDOWN_FILE = "report.md"
HTML_FILE = "report.html"


def write_report(report: Report, directory: str | Path) -> dict[str, Path]:
    """Write report.md, report.html and the chart PNG(s) into `directory` (created).

    Each file is written to a temporary file in the same directory and renamed into place,
    so a reader never sees half a report. Returns {"markdown", "html", <image name>: path}.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = {
        "markdown": write_bytes_atomic(target / MARKDOWN_FILE, report.markdown.encode("utf-8")),
        "html": write_bytes_atomic(target / HTML_FILE, report.html.encode("utf-8")),
    }
    for name, png in report.images.items():
        written[name] = write_bytes_atomic(target / Path(name).name, png)
    return written


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes only."""
    key = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    return key or "replan-report"


def publish_artifacts(report: Report, key_prefix: str = "replan") -> tuple[UUID, UUID]:
    """Create the Prefect markdown artifact and the table artifact; returns their ids."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    markdown_id = create_markdown_artifact(
        markdown=report.artifact_markdown(),
        key=artifact_key(key_prefix, "report"),
        description=report.title,
    )
    table_id = create_table_artifact(
        table=report.table_rows,
        key=artifact_key(key_prefix, "plans"),
        description=f"{report.title}: strategies and last night's plan",
    )
    return markdown_id, table_id
