"""Build, read and write the canonical price table (columns documented in `schema.py`)."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.files import write_text_atomic
from tasks.prices.schema import OPTIONAL_PRICE_COLUMNS, PRICE_COLUMNS, PRICE_KEY

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
    missing = [
        column
        for column in PRICE_COLUMNS
        if column not in frame.columns and column not in OPTIONAL_PRICE_COLUMNS
    ]
    if missing:
        raise ValueError(f"missing columns: {', '.join(missing)}")
    table = frame.reindex(columns=list(PRICE_COLUMNS)).copy()
    table["spot_interruption"] = _optional_text(table["spot_interruption"])
    for column in _TEXT_COLUMNS:
        if table[column].isna().any() and column != "zone":
            raise ValueError(f"column {column} has missing values")
        table[column] = table[column].fillna("").astype("str").str.strip()
    for column in ("source", "cloud", "region", "instance_type", "gpu"):
        if (table[column] == "").any():
            raise ValueError(f"column {column} has empty values")
    gpus = pd.to_numeric(table["gpus_per_instance"], errors="coerce")
    if (
        gpus.isna().any()
        or (gpus % 1 != 0).any()
        or (gpus < 1).any()
        or (gpus > MAX_GPUS_PER_INSTANCE).any()
    ):
        raise ValueError(
            f"gpus_per_instance must be a whole number between 1 and {MAX_GPUS_PER_INSTANCE}"
        )
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
        beyond = ~np.isfinite(prices) & prices.notna() | (prices > MAX_PRICE_PER_HOUR)
        if beyond.any():
            value = prices[beyond].iloc[0]
            raise ValueError(
                f"column {column} has a price of {value:g}, beyond the "
                f"{MAX_PRICE_PER_HOUR:,.0f} USD per instance-hour limit"
            )
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


# --- the one reader of price CSVs (`replan validate`, `run`, `prices --source file`) ----------

# A full multi-cloud table is ~2,400 rows / 250 KB; 32 MiB (~300,000 rows) leaves 100x room and
# keeps pandas and the GX suite within memory. Larger files are refused before reading.
MAX_PRICE_FILE_BYTES = 32 * 1024 * 1024
# No instance costs more than this per hour (8 x H200 is ~100 USD); larger values are typos or
# sentinels (1e308). Applied where prices enter: this reader and `to_price_table`.
MAX_PRICE_PER_HOUR = 10_000.0
MAX_GPUS_PER_INSTANCE = 1_024
_NUMBER_LIMITS = {
    "gpus_per_instance": MAX_GPUS_PER_INSTANCE,
    "price_per_hour": MAX_PRICE_PER_HOUR,
    "spot_price_per_hour": MAX_PRICE_PER_HOUR,
}
_MAX_SHOWN_CHARS = 40
_CONTROL = r"[\x00-\x1f\x7f]"


class PriceFileError(ValueError):
    """A price CSV cannot be read; `problems` name the file, the row and the field."""

    def __init__(self, file: str, problems: Sequence[str]) -> None:
        self.file = file
        self.problems = list(problems)
        shown = self.problems[:10]
        more = len(self.problems) - len(shown)
        text = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
        super().__init__(f"{file}: {text}")


def read_price_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a canonical price CSV; raise PriceFileError naming the file, row and field.

    Parse-level rules, the same for every caller: at most `MAX_PRICE_FILE_BYTES` (checked before
    reading), UTF-8, every row with exactly the header's field count (a ragged row is named),
    the canonical columns present (extra ones dropped; `spot_interruption` may be absent: None),
    numbers finite and within
    `_NUMBER_LIMITS`, ISO 8601 times. Rows are numbered from 1 for the first data row. Values
    that parse but break policy (negative, zero GPUs, duplicates, stale, above the per-GPU
    ceiling) are left to `tasks.validation.validate_prices` (and `to_price_table`).
    Returns the canonical columns: text as `str`, numbers as float64, times as UTC.
    """
    file = str(path)
    try:
        size_bytes = Path(path).stat().st_size
        if size_bytes > MAX_PRICE_FILE_BYTES:
            raise PriceFileError(
                file,
                [
                    f"{size_bytes} bytes is more than the {MAX_PRICE_FILE_BYTES} bytes "
                    f"({MAX_PRICE_FILE_BYTES // 2**20} MiB) a price file may have"
                ],
            )
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PriceFileError(file, [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise PriceFileError(file, [_describe_bad_byte(raw, exc.start)]) from None
    if not text.strip():
        raise PriceFileError(file, ["empty file: no header row"])
    header, rows = _csv_rows(file, text)
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise PriceFileError(file, [f"header repeats column(s) {', '.join(repeated)}"])
    missing = [
        column
        for column in PRICE_COLUMNS
        if column not in header and column not in OPTIONAL_PRICE_COLUMNS
    ]
    if missing:
        raise PriceFileError(
            file, [f"missing column(s) {', '.join(missing)} (header: {', '.join(header)})"]
        )
    frame = pd.DataFrame(rows, columns=header, dtype="str")
    frame = frame.reindex(columns=list(PRICE_COLUMNS)).copy()
    frame["spot_interruption"] = _optional_text(frame["spot_interruption"])
    problems: list[str] = []
    for column in (*_TEXT_COLUMNS, "spot_interruption"):
        if column != "spot_interruption":
            frame[column] = frame[column].astype("str").str.strip()
        flagged = frame[column].str.contains(_CONTROL, regex=True).fillna(False).astype(bool)
        for position in np.flatnonzero(flagged)[:3]:
            problems.append(
                f"row {position + 1}, field {column}: control character in "
                f"{_shown(frame[column].iloc[position])}"
            )
    for column, limit in _NUMBER_LIMITS.items():
        frame[column] = _parse_numbers(frame[column], column, limit, problems)
    frame["fetched_at"] = _parse_times(frame["fetched_at"], problems)
    if problems:
        raise PriceFileError(file, problems)
    return frame.reset_index(drop=True)


def _optional_text(values: pd.Series) -> pd.Series:
    """Text with missing values (NaN, None, "") as None, dtype object."""
    cleaned = [
        None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        for value in values
    ]
    stripped = [None if v is None or not v.strip() else v.strip() for v in cleaned]
    return pd.Series(stripped, index=values.index, dtype="object")


def _csv_rows(file: str, text: str) -> tuple[list[str], list[list[str]]]:
    """Header and data rows; every row must have the header's field count."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [name.strip() for name in next(reader)]
        rows: list[list[str]] = []
        problems: list[str] = []
        for fields in reader:
            if not fields or fields == [""]:
                continue  # a blank line
            if len(fields) != len(header):
                kind = "an extra field" if len(fields) > len(header) else "a missing field"
                problems.append(
                    f"row {len(rows) + 1} (line {reader.line_num}): {len(fields)} fields where "
                    f"the header has {len(header)} ({kind}; a ragged row)"
                )
            rows.append(fields)
    except csv.Error as exc:
        raise PriceFileError(file, [f"line {reader.line_num}: not a CSV table: {exc}"]) from None
    if problems:
        raise PriceFileError(file, problems)
    return header, rows


def _describe_bad_byte(raw: bytes, offset: int) -> str:
    line_start = raw.rfind(b"\n", 0, offset) + 1
    line = raw[:offset].count(b"\n") + 1
    header = raw.split(b"\n", 1)[0].decode("utf-8", "replace").strip().split(",")
    field_index = raw[line_start:offset].count(b",")
    field_name = header[field_index] if field_index < len(header) else f"#{field_index + 1}"
    where = f"row {line - 1} (line {line})" if line > 1 else "header (line 1)"
    return f"{where}, field {field_name}: not UTF-8 (byte 0x{raw[offset]:02x})"


def _shown(text: str) -> str:
    return repr(text if len(text) <= _MAX_SHOWN_CHARS else text[:_MAX_SHOWN_CHARS] + "…")


def _parse_numbers(values: pd.Series, column: str, limit: float, problems: list[str]) -> pd.Series:
    """Floats (empty text = missing, NaN); non-numbers, NaN/inf text and |x| > limit refused."""
    parsed: list[float] = []
    for row, text in enumerate(values, start=1):
        text = text.strip()
        if text == "":
            parsed.append(math.nan)
            continue
        try:
            number = float(text)
        except ValueError:
            problems.append(f"row {row}, field {column}: not a number: {_shown(text)}")
            parsed.append(math.nan)
            continue
        if not math.isfinite(number):
            problems.append(
                f"row {row}, field {column}: {_shown(text)} is not a finite number "
                "(leave the field empty for no price)"
            )
            number = math.nan
        elif abs(number) > limit:
            problems.append(
                f"row {row}, field {column}: {_shown(text)} is beyond the {limit:,.0f} limit"
            )
            number = math.nan
        parsed.append(number)
    return pd.Series(parsed, index=values.index, dtype="float64")


def _parse_times(values: pd.Series, problems: list[str]) -> pd.Series:
    text = values.astype("str").str.strip()
    parsed = pd.to_datetime(text.replace("", None), utc=True, format="ISO8601", errors="coerce")
    for row, (raw, value) in enumerate(zip(text, parsed, strict=True), start=1):
        if raw and pd.isna(value) and raw.lower() not in ("nat", "nan"):
            problems.append(f"row {row}, field fetched_at: not an ISO 8601 time: {_shown(raw)}")
    return parsed.astype("datetime64[us, UTC]")


def price_table_csv(table: pd.DataFrame) -> str:
    """The canonical CSV text of `table` (ISO 8601 UTC times, full float precision)."""
    out = table.loc[:, list(PRICE_COLUMNS)].copy()
    out["fetched_at"] = out["fetched_at"].dt.strftime(_CSV_TIME_FORMAT)
    return out.to_csv(index=False, lineterminator="\n")


def write_price_csv(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write `table` to `path` atomically (temp file in the same folder, then rename)."""
    return write_text_atomic(path, price_table_csv(table))
