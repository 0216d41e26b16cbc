"""The export `replan run` writes next to each run's report; a failure is said, never raised."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.export.models import ServingLimits
from tasks.export.writer import write_export

EXPORT_FOLDER = "export"  # <run_dir>/export


@dataclass(frozen=True)
class RunExport:
    """What a run's export wrote (`summary`), or why it wrote nothing (`error`)."""

    out_dir: Path
    summary: str | None = None
    error: str | None = None

    @property
    def written(self) -> bool:
        return self.error is None

    def line(self) -> str:
        """One line for the report, Slack and the run summary."""
        if self.written:
            return f"launch specs: {self.summary}"
        return f"launch specs not written: {self.error}"

    def to_json(self) -> dict[str, Any]:
        """For the run summary."""
        return {"folder": str(self.out_dir), "written": self.written, "error": self.error}


def export_for_run(
    plan: Mapping[str, Any],
    run_dir: str | Path,
    *,
    previous: Mapping[str, Any] | None = None,
    serving_limits: Mapping[str, ServingLimits] | None = None,
    notes: Sequence[str] = (),
) -> RunExport:
    """`write_export` of tonight's plan into `<run_dir>/export`; any failure becomes `error`.

    The export must never stop the report: a plan with nothing to launch (no feasible plan
    tonight), a folder that cannot be written or a plan the exporter refuses is returned as a
    one-line reason instead of raised.
    """
    out_dir = Path(run_dir) / EXPORT_FOLDER
    try:
        result = write_export(
            plan,
            out_dir,
            previous_plan_json=previous,
            serving_limits=serving_limits,
            notes=notes,
        )
    except Exception as exc:  # said in the report; the run goes on
        reason = str(exc) or type(exc).__name__
        return RunExport(out_dir=out_dir, error=reason.splitlines()[0])
    return RunExport(out_dir=out_dir, summary=result.summary())
