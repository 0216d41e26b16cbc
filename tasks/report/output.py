"""Write a report's files atomically, and publish it as Prefect artifacts."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from uuid import UUID

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
        "markdown": _write_atomic(target / MARKDOWN_FILE, report.markdown.encode("utf-8")),
        "html": _write_atomic(target / HTML_FILE, report.html.encode("utf-8")),
    }
    for name, png in report.images.items():
        written[name] = _write_atomic(target / Path(name).name, png)
    return written


def _write_atomic(path: Path, data: bytes) -> Path:
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp makes 0600; the report is meant to be read
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


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
