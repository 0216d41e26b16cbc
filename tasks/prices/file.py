"""`file`: a local CSV already in the canonical format (e.g. written by `replan prices --out`).

Rows keep the `source` value written in the file, so a saved table read back is the same table
(its provenance survives the round trip). Column order is free; extra columns are ignored.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tasks.prices.errors import MalformedResponse, SourceConfigError
from tasks.prices.http import Progress, log_progress
from tasks.prices.table import read_price_csv, to_price_table


class FileSource:
    """A canonical price CSV on the local disk."""

    name = "file"

    def __init__(self, path: str | Path | None, *, progress: Progress = log_progress) -> None:
        if path is None or str(path) == "":
            raise SourceConfigError(self.name, "", "needs a path (--from FILE)")
        self.path = Path(path)
        self._progress = progress

    def fetch(self) -> pd.DataFrame:
        if not self.path.is_file():
            raise SourceConfigError(self.name, str(self.path), "no such file")
        self._progress(f"{self.name}: reading {self.path}")
        try:  # the one reader `replan validate` uses, then the canonical coercion
            return to_price_table(read_price_csv(self.path))
        except ValueError as exc:  # PriceFileError is a ValueError
            detail = str(exc).removeprefix(f"{self.path}: ")
            raise MalformedResponse(
                self.name, str(self.path), f"not a canonical price CSV: {detail}"
            ) from None
