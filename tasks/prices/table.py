"""Build, read and write the canonical price table (columns documented in `schema.py`)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from tasks.files import write_text_atomic
from tasks.prices.schema import PRICE_COLUMNS, PRICE_KEY

_TEXT_COLUMNS = ("source", "cloud", "region", "zone", "instance_type", "gpu")
_PRICE_COLUMNS = ("price_per_hour", "spot_price_per_hour")
_CSV_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> datetime:
    """The current time in UTC, whole seconds (the table's time resolution)."""
    return datetime.now(UTC).replace(microsecond=0)


def empty_price_table() -> pd.DataFrame:
    """A table with the canonical columns and dtypes and no rows."""
    return to_price_table(pd.DataFrame({column: [] for column in PRICE_COLUMNS}))


def to_price_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce `frame` to the canonical columns, dtypes and row order; raise ValueError if invalid.

    Rules: no missing key parts (only `zone` may be ""), `gpus_per_instance` a whole number >= 1,
    prices >= 0 or NaN, at least one of the two prices present, keys unique.
    """
    missing = [column for column in PRICE_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"missing columns: {', '.join(missing)}")
    table = frame.loc[:, list(PRICE_COLUMNS)].copy()
    for column in _TEXT_COLUMNS:
        if table[column].isna().any() and column != "zone":
            raise ValueError(f"column {column} has missing values")
        table[column] = table[column].fillna("").astype("str").str.strip()
    for column in ("source", "cloud", "region", "instance_type", "gpu"):
        if (table[column] == "").any():
            raise ValueError(f"column {column} has empty values")
    gpus = pd.to_numeric(table["gpus_per_instance"], errors="coerce")
    if gpus.isna().any() or (gpus % 1 != 0).any() or (gpus < 1).any():
        raise ValueError("gpus_per_instance must be a whole number >= 1")
    table["gpus_per_instance"] = gpus.astype("int64")
    for column in _PRICE_COLUMNS:
        prices = pd.to_numeric(table[column], errors="coerce").astype("float64")
        bad = (
            prices.isna() & table[column].notna() & (table[column].astype("str").str.strip() != "")
        )
        if bad.any():
            raise ValueError(f"column {column} has non-numeric values")
        if (prices < 0).any():
            raise ValueError(f"column {column} has negative prices")
        table[column] = prices
    if (table["price_per_hour"].isna() & table["spot_price_per_hour"].isna()).any():
        raise ValueError("rows with neither an on-demand nor a spot price")
    fetched_at = pd.to_datetime(table["fetched_at"], utc=True, format="ISO8601")
    if fetched_at.isna().any():
        raise ValueError("column fetched_at has missing values")
    table["fetched_at"] = fetched_at.dt.floor("s").astype("datetime64[us, UTC]")
    duplicated = table.duplicated(list(PRICE_KEY), keep=False)
    if duplicated.any():
        first = table.loc[duplicated, list(PRICE_KEY)].iloc[0].tolist()
        raise ValueError(f"{int(duplicated.sum())} rows share a key, e.g. {first}")
    return table.sort_values(list(PRICE_KEY), kind="stable").reset_index(drop=True)


def read_price_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a canonical price CSV (as written by `write_price_csv`); raise ValueError if invalid."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    for column in ("zone",):
        if column in frame.columns:
            frame[column] = frame[column].fillna("")
    return to_price_table(frame)


def price_table_csv(table: pd.DataFrame) -> str:
    """The canonical CSV text of `table` (ISO 8601 UTC times, full float precision)."""
    out = table.loc[:, list(PRICE_COLUMNS)].copy()
    out["fetched_at"] = out["fetched_at"].dt.strftime(_CSV_TIME_FORMAT)
    return out.to_csv(index=False, lineterminator="\n")


def write_price_csv(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write `table` to `path` atomically (temp file in the same folder, then rename)."""
    return write_text_atomic(path, price_table_csv(table))
