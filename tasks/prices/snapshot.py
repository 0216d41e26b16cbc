"""The default, offline `snapshot` source: real SkyPilot catalog prices bundled in the package.

Files live in `tasks/data/prices/skypilot-catalog/` (provenance in its PROVENANCE.md) and map to
the table exactly as the live `skypilot-catalog` source does (`tasks.prices.skypilot`).

`fetched_at`: the catalog files carry no fetch time. Each cloud gets a fixed, documented time —
the start of the year its content dates to (`SNAPSHOT_FETCHED_AT`: v8 files 2025-01-01, the
older v6 Azure file 2024-01-01). The earliest plausible date is chosen so that a freshness check
never treats the snapshot as newer than it is. The time stays true everywhere: `replan run` and
`replan validate` accept the snapshot without a freshness limit and state its age instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources

import pandas as pd

from tasks.prices.errors import MalformedResponse, SourceConfigError
from tasks.prices.http import Progress, log_progress
from tasks.prices.skypilot import catalog_to_table, parse_catalog_csv
from tasks.prices.table import to_price_table

SNAPSHOT_RESOURCE = ("data", "prices", "skypilot-catalog")
# Cloud → bundled catalog files; GCP needs its host VM rows to price whole instances.
SNAPSHOT_FILES: dict[str, tuple[str, ...]] = {
    "aws": ("aws.csv",),
    "gcp": ("gcp.csv", "gcp_host_vms.csv"),
    "azure": ("azure.csv",),
    "lambda": ("lambda.csv",),
    "nebius": ("nebius.csv",),
    "vast": ("vast.csv",),
}
_V8_FETCHED_AT = datetime(2025, 1, 1, tzinfo=UTC)
SNAPSHOT_FETCHED_AT: dict[str, datetime] = {
    "aws": _V8_FETCHED_AT,
    "gcp": _V8_FETCHED_AT,
    "azure": datetime(2024, 1, 1, tzinfo=UTC),
    "lambda": _V8_FETCHED_AT,
    "nebius": _V8_FETCHED_AT,
    "vast": _V8_FETCHED_AT,
}


def snapshot_text(file_name: str) -> str:
    """Text of one bundled catalog file."""
    folder = resources.files("tasks").joinpath(*SNAPSHOT_RESOURCE)
    return folder.joinpath(file_name).read_text(encoding="utf-8")


class SnapshotSource:
    """Bundled catalog prices; no network."""

    name = "snapshot"

    def __init__(
        self,
        *,
        clouds: Sequence[str] | None = None,
        fetched_at: datetime | None = None,
        progress: Progress = log_progress,
    ) -> None:
        self.clouds = tuple(clouds) if clouds is not None else tuple(SNAPSHOT_FILES)
        unknown = sorted(set(self.clouds) - set(SNAPSHOT_FILES))
        if unknown:
            raise SourceConfigError(
                self.name, "package:" + "/".join(SNAPSHOT_RESOURCE), f"no bundled cloud {unknown}"
            )
        self.fetched_at = fetched_at
        self._progress = progress

    def _stamp(self, cloud: str) -> datetime:
        if isinstance(self.fetched_at, datetime):
            return self.fetched_at
        return SNAPSHOT_FETCHED_AT[cloud]

    def fetch(self) -> pd.DataFrame:
        tables = []
        for cloud in self.clouds:
            location = "package:" + "/".join((*SNAPSHOT_RESOURCE, *SNAPSHOT_FILES[cloud]))
            frames = [
                parse_catalog_csv(snapshot_text(file_name), source=self.name, url=location)
                for file_name in SNAPSHOT_FILES[cloud]
            ]
            rows = pd.concat(frames, ignore_index=True).fillna("")
            try:
                table, notes = catalog_to_table(
                    cloud, rows, source=self.name, fetched_at=self._stamp(cloud)
                )
            except ValueError as exc:
                raise MalformedResponse(self.name, location, f"bad catalog values: {exc}") from None
            for note in notes:
                self._progress(f"{self.name}: {cloud}: {note}")
            tables.append(table)
        return to_price_table(pd.concat(tables, ignore_index=True))
