"""Export a plan as launch specs a serving stack accepts (SkyPilot/SkyServe running vLLM).

`write_export` is pure (no Prefect, no network): plan JSON in, a folder out.
`tasks.export.source` reads the plan to export from the state store.
"""

from tasks.export.groups import ExportError, GroupChange, ReplicaGroup, Stage, plan_groups
from tasks.export.models import (
    HF_MODELS,
    ModelServer,
    ServingLimits,
    hf_model_for,
    serving_limits,
)
from tasks.export.nightly import EXPORT_FOLDER, RunExport, export_for_run
from tasks.export.writer import FORMATS, ExportResult, GroupExport, write_export

__all__ = [
    "EXPORT_FOLDER",
    "FORMATS",
    "HF_MODELS",
    "ExportError",
    "ExportResult",
    "GroupChange",
    "GroupExport",
    "ModelServer",
    "ReplicaGroup",
    "RunExport",
    "ServingLimits",
    "Stage",
    "export_for_run",
    "hf_model_for",
    "plan_groups",
    "serving_limits",
    "write_export",
]
