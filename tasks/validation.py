"""Validate prices, inventory and pools with the Great Expectations suites in `expectations/`.

GX is the engine: each suite is a sorted JSON file of expectation configurations with a
`severity` ("critical" fails the run, "warning" is reported only) and `meta.why`. A few facts
GX cannot state directly are computed here as derived columns and then checked by GX
(per-GPU prices, the spot/on-demand ratio, "has any price"). The result is a short report:
expectation, column, how many rows, a few offending values with their row keys.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.inventory import Inventory
from tasks.prices.table import PriceFileError, read_price_csv

EXPECTATIONS_DIR = Path(__file__).resolve().parent.parent / "expectations"
DEFAULT_MAX_AGE_DAYS = 7.0  # for live prices; the bundled snapshot states its age instead
SNAPSHOT_SOURCE = "snapshot"  # the `source` of the bundled, dated price snapshot
DEFAULT_SPOT_TOLERANCE = 0.05  # spot may exceed on-demand by 5 % before a warning
SNAPSHOT_MAX_AGE_DAYS = 36_500.0  # no limit in practice: the snapshot's age is stated instead
FUTURE_SKEW = timedelta(hours=1)  # fetched_at may be this far ahead of `now` (clock skew)
MAX_EXAMPLES = 3
CRITICAL, WARNING = "critical", "warning"

_NUMERIC_PRICE_COLUMNS = ("gpus_per_instance", "price_per_hour", "spot_price_per_hour")


# --- report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One failed expectation: what was expected, where, how often, and a few examples."""

    table: str
    expectation: str
    description: str
    severity: str
    column: str | None = None
    unexpected_count: int = 0
    row_count: int = 0
    examples: tuple[tuple[str, str], ...] = ()
    note: str = ""

    def render(self) -> str:
        tag = "FAIL" if self.severity == CRITICAL else "WARN"
        where = f", column {self.column}" if self.column else ""
        head = f"{tag} {self.table}: {self.description} [{self.expectation}{where}]"
        if self.unexpected_count:
            head += f": {self.unexpected_count} of {self.row_count} rows"
        if self.note:
            head += f": {self.note}"
        lines = [head]
        lines += [f"    {label}: {value}" for label, value in self.examples]
        shown = len(self.examples)
        if self.unexpected_count > shown and shown:
            lines.append(f"    ... and {self.unexpected_count - shown} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating one input: critical failures stop the run, warnings do not."""

    subject: str
    failures: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()
    row_count: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    def render(self) -> str:
        state = "ok" if self.ok else "INVALID"
        head = (
            f"{self.subject}: {state} ({self.row_count} rows; "
            f"{len(self.failures)} failed, {len(self.warnings)} warnings)"
        )
        return "\n".join([head] + [f.render() for f in (*self.failures, *self.warnings)])

    @classmethod
    def from_error(cls, subject: str, message: str) -> ValidationReport:
        """A report for an input that could not even be read (bad bytes, bad shape)."""
        finding = Finding(
            table="file",
            expectation="read",
            description="readable and well-formed",
            severity=CRITICAL,
            note=message,
        )
        return cls(subject=subject, failures=(finding,))


class ValidationFailed(Exception):
    """Raised by `require_valid`: the data broke a critical expectation; the run must stop."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.render())


def require_valid(report: ValidationReport) -> ValidationReport:
    """Return `report` when it has no critical failure, else raise ValidationFailed."""
    if not report.ok:
        raise ValidationFailed(report)
    return report


# --- reading a canonical price CSV ---------------------------------------------------------


# `PriceFileError` and `read_price_csv` live in `tasks.prices.table`: one reader, one rule, for
# `validate`, `run` and `prices --source file`; imported above and re-exported here.


# --- the GX engine -------------------------------------------------------------------------


@functools.cache
def load_suite(name: str) -> tuple[dict[str, Any], ...]:
    """The expectation configurations of `expectations/<name>.json`."""
    with (EXPECTATIONS_DIR / f"{name}.json").open(encoding="utf-8") as handle:
        document = json.load(handle)
    return tuple(document["expectations"])


_GX_LOCK = threading.RLock()


@functools.cache
def _gx() -> tuple[Any, Any]:
    """One ephemeral GX context and pandas datasource per process (GX is slow to start)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    datasource = context.data_sources.add_pandas("replan")
    return context, datasource


@functools.cache
def _batch_definition(table: str) -> Any:
    _, datasource = _gx()
    asset = datasource.add_dataframe_asset(name=table)
    return asset.add_batch_definition_whole_dataframe(f"{table}-whole")


def _expectation_columns(config: Mapping[str, Any]) -> list[str]:
    kwargs = config["kwargs"]
    if "column" in kwargs:
        return [kwargs["column"]]
    return list(kwargs.get("column_list", []))


def run_expectations(
    table: str,
    frame: pd.DataFrame,
    configs: Sequence[Mapping[str, Any]],
    row_labels: Sequence[str],
    parameters: Mapping[str, Any] | None = None,
) -> tuple[list[Finding], list[Finding]]:
    """Validate `frame` against `configs` with GX; return (failures, warnings).

    `row_labels[i]` names row i (positional) in the report. Expectations on a column the frame
    lacks are skipped: the table's column-set expectation reports the missing column once.
    """
    from great_expectations.core import ExpectationSuite

    frame = frame.reset_index(drop=True)
    present = [c for c in configs if all(col in frame.columns for col in _expectation_columns(c))]
    suite_configs = copy.deepcopy(present)
    suite = ExpectationSuite(name=f"replan-{table}", expectations=suite_configs)
    if len(suite.expectations) != len(suite_configs):
        raise RuntimeError(f"suite for {table}: GX rejected an expectation configuration")
    with _GX_LOCK:  # one shared context: GX registers assets and batches on it
        batch = _batch_definition(table).get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(
            suite,
            result_format={"result_format": "COMPLETE"},
            expectation_parameters=dict(parameters or {}),
        )
    failures: list[Finding] = []
    warnings: list[Finding] = []
    for item in result.results:
        if item.success:
            continue
        finding = _finding(table, item, frame, row_labels)
        (failures if finding.severity == CRITICAL else warnings).append(finding)
    return failures, warnings


def _finding(table: str, item: Any, frame: pd.DataFrame, row_labels: Sequence[str]) -> Finding:
    config = item.expectation_config
    kwargs = config.kwargs
    severity = str(getattr(config.severity, "value", config.severity))
    column = kwargs.get("column") or (
        ", ".join(kwargs["column_list"]) if "column_list" in kwargs else None
    )
    base = {
        "table": table,
        "expectation": config.type,
        "description": config.description or config.type,
        "severity": severity,
        "column": column,
        "row_count": len(frame),
    }
    info = item.exception_info or {}
    if info.get("raised_exception"):
        message = str(info.get("exception_message", "")).splitlines()[0][:200]
        return Finding(**base | {"severity": CRITICAL}, note=f"could not be checked: {message}")
    result = item.result or {}
    if config.type == "expect_table_columns_to_match_set":
        missing = result.get("details", {}).get("mismatched", {}).get("missing", [])
        return Finding(**base, note=f"missing {', '.join(missing)}")
    if config.type == "expect_table_row_count_to_be_between":
        return Finding(**base, note=f"{result.get('observed_value', 0)} rows")
    indexes = list(result.get("unexpected_index_list") or [])
    examples = []
    for index in indexes[:MAX_EXAMPLES]:
        position = int(index["index"] if isinstance(index, dict) else index)
        label = row_labels[position] if position < len(row_labels) else f"row {position + 1}"
        columns = kwargs.get("column_list") or [kwargs["column"]]
        value = ", ".join(_show(frame.at[position, c]) for c in columns)
        examples.append((label, value))
    count = int(result.get("unexpected_count") or len(indexes))
    return Finding(**base, unexpected_count=count, examples=tuple(examples))


def _show(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if value is pd.NaT:
        return "NaT"
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.10g}"
    return repr(value) if isinstance(value, str) else str(value)


# --- prices --------------------------------------------------------------------------------


def price_row_labels(prices: pd.DataFrame) -> list[str]:
    """`row N cloud/region/zone/instance_type` for each row (N from 1; zone left out if empty)."""
    labels = []
    for position, row in enumerate(prices.reset_index(drop=True).to_dict("records"), start=1):
        parts = [row.get(c) for c in ("cloud", "region", "zone", "instance_type")]
        key = "/".join(str(p) for p in parts if isinstance(p, str) and p)
        labels.append(f"row {position} {key}".rstrip())
    return labels


def with_derived_price_columns(prices: pd.DataFrame) -> pd.DataFrame:
    """A copy with the derived columns the prices suite checks (per-GPU prices, spot ratio)."""
    frame = prices.copy()
    if "fetched_at" in frame.columns and not isinstance(
        frame["fetched_at"].dtype, pd.DatetimeTZDtype
    ):
        frame["fetched_at"] = pd.to_datetime(frame["fetched_at"], utc=True, errors="coerce")
    numeric = {
        c: pd.to_numeric(frame[c], errors="coerce") for c in _NUMERIC_PRICE_COLUMNS if c in frame
    }
    if len(numeric) == len(_NUMERIC_PRICE_COLUMNS):
        gpus = numeric["gpus_per_instance"].where(numeric["gpus_per_instance"] > 0)
        frame["price_per_gpu_hour"] = numeric["price_per_hour"] / gpus
        frame["spot_price_per_gpu_hour"] = numeric["spot_price_per_hour"] / gpus
        frame["spot_over_on_demand"] = numeric["spot_price_per_hour"] / numeric[
            "price_per_hour"
        ].where(numeric["price_per_hour"] > 0)
        frame["has_price"] = (
            numeric["price_per_hour"].notna() | numeric["spot_price_per_hour"].notna()
        )
    return frame


def is_bundled_snapshot(prices: pd.DataFrame) -> bool:
    """True when every row comes from the bundled snapshot (its `source` column)."""
    return not prices.empty and bool((prices["source"] == SNAPSHOT_SOURCE).all())


def snapshot_age_finding(prices: pd.DataFrame, now: datetime) -> Finding:
    """The warning that states the bundled snapshot's real age (its `fetched_at` is true)."""
    stamps = pd.to_datetime(prices["fetched_at"], utc=True)
    oldest, newest = stamps.min(), stamps.max()
    days = (pd.Timestamp(now) - oldest).days
    return Finding(
        table="prices",
        expectation="snapshot_age",
        description="the bundled snapshot is dated, not live",
        severity=WARNING,
        column="fetched_at",
        note=f"fetched {oldest:%Y-%m-%d} .. {newest:%Y-%m-%d}, up to {days} days old; the "
        f"{DEFAULT_MAX_AGE_DAYS:g}-day freshness limit applies to live prices only: for "
        "tonight's plan fetch live prices (replan prices --source skypilot-catalog)",
    )


def validate_prices(
    prices: pd.DataFrame,
    *,
    max_age_days: float | None = DEFAULT_MAX_AGE_DAYS,
    spot_tolerance: float = DEFAULT_SPOT_TOLERANCE,
    now: datetime | None = None,
    subject: str = "prices",
) -> ValidationReport:
    """Check a canonical price table against `expectations/prices.json`.

    `max_age_days=None`: the bundled snapshot is checked without a freshness limit and a
    warning states its age (as `replan run` does); any other table gets the 7-day limit.
    """
    now = now or datetime.now(UTC)
    snapshot_rule = max_age_days is None and is_bundled_snapshot(prices)
    if max_age_days is None:
        max_age_days = SNAPSHOT_MAX_AGE_DAYS if snapshot_rule else DEFAULT_MAX_AGE_DAYS
    parameters = {
        "min_fetched_at": pd.Timestamp(now - timedelta(days=max_age_days)),
        "max_fetched_at": pd.Timestamp(now + FUTURE_SKEW),
        "max_spot_over_on_demand": 1.0 + spot_tolerance,
    }
    frame = with_derived_price_columns(prices)
    failures, warnings = run_expectations(
        "prices", frame, load_suite("prices"), price_row_labels(prices), parameters
    )
    if snapshot_rule:
        warnings.insert(0, snapshot_age_finding(prices, now))
    return ValidationReport(subject, tuple(failures), tuple(warnings), len(prices))


# --- inventory -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    frame: pd.DataFrame
    labels: list[str] = field(default_factory=list)


def inventory_tables(inventory: Inventory) -> dict[str, _Table]:
    """The inventory as flat tables (models, gpus, profiles, tp_efficiency, quotas), each row
    labelled with its path in the file."""
    models = [
        {
            "name": m.name,
            "num_layers": m.num_layers,
            "layer_memory_gb": m.layer_memory_gb,
            "demand_tokens_per_s": m.demand_tokens_per_s,
            "useful_tokens_per_s": m.useful_tokens_per_s,
        }
        for m in inventory.models.values()
    ]
    gpus = [{"gpu": g.name, "memory_gb": g.memory_gb} for g in inventory.gpus.values()]
    profiles, efficiencies = [], []
    for gpu in inventory.gpus.values():
        for model, profile in gpu.profiles.items():
            profiles.append({"gpu": gpu.name, "model": model, "tokens_per_s": profile.tokens_per_s})
            for degree, efficiency in (profile.tp_efficiency or {}).items():
                efficiencies.append(
                    {"gpu": gpu.name, "model": model, "degree": degree, "efficiency": efficiency}
                )
    quotas = [
        {
            "cloud": q.cloud,
            "region": q.region or "*",
            "gpu": q.gpu or "*",
            "market": q.market or "*",
            "max_gpus": q.max_gpus,
            "where": q.where,
        }
        for q in inventory.quotas
    ]
    fleet = inventory.serving
    serving = [
        {
            "survive_spot_loss": fleet.survive_spot_loss,
            "survive_fraction": fleet.survive_fraction,
            "max_spot_interruption": fleet.max_spot_interruption,
        }
    ]
    columns = {
        "models": [
            "name",
            "num_layers",
            "layer_memory_gb",
            "demand_tokens_per_s",
            "useful_tokens_per_s",
        ],
        "gpus": ["gpu", "memory_gb"],
        "profiles": ["gpu", "model", "tokens_per_s"],
        "tp_efficiency": ["gpu", "model", "degree", "efficiency"],
        "quotas": ["cloud", "region", "gpu", "market", "max_gpus", "where"],
        "serving": ["survive_spot_loss", "survive_fraction", "max_spot_interruption"],
    }
    rows = {
        "models": models,
        "gpus": gpus,
        "profiles": profiles,
        "tp_efficiency": efficiencies,
        "quotas": quotas,
        "serving": serving,
    }
    labels = {
        "models": [f"models.{r['name']}" for r in models],
        "gpus": [f"gpus.{r['gpu']}" for r in gpus],
        "profiles": [f"gpus.{r['gpu']}.models.{r['model']}" for r in profiles],
        "tp_efficiency": [
            f"gpus.{r['gpu']}.models.{r['model']}.tp_efficiency.{r['degree']}" for r in efficiencies
        ],
        "quotas": [r["where"] for r in quotas],
        "serving": ["serving"],
    }
    return {
        name: _Table(pd.DataFrame(rows[name], columns=columns[name]), labels[name]) for name in rows
    }


def validate_inventory(inventory: Inventory, *, subject: str | None = None) -> ValidationReport:
    """Check a typed inventory against `expectations/inventory.json` (one sub-suite a table)."""
    failures: list[Finding] = []
    warnings: list[Finding] = []
    configs = load_suite("inventory")
    tables = inventory_tables(inventory)
    for name, table in tables.items():
        selected = [c for c in configs if c["meta"].get("table") == name]
        if selected:
            failed, warned = run_expectations(
                f"inventory.{name}", table.frame, selected, table.labels
            )
            failures += failed
            warnings += warned
    rows = sum(len(t.frame) for t in tables.values())
    return ValidationReport(
        subject or f"inventory {inventory.file}", tuple(failures), tuple(warnings), rows
    )


# --- pools ---------------------------------------------------------------------------------


def validate_pools(
    pools: pd.DataFrame, model: str, *, subject: str | None = None
) -> ValidationReport:
    """Check the pools built for `model` against `expectations/pools.json`."""
    labels = (
        [f"pool {pool_id}" for pool_id in pools["id"]]
        if "id" in pools.columns
        else [f"row {i}" for i in range(1, len(pools) + 1)]
    )
    frame = pools.drop(columns=["tp_efficiency"], errors="ignore")  # maps, checked at load
    failures, warnings = run_expectations("pools", frame, load_suite("pools"), labels)
    return ValidationReport(
        subject or f"pools for model {model}", tuple(failures), tuple(warnings), len(pools)
    )


def validate_fleet_pools(
    per_model: Mapping[str, pd.DataFrame], *, subject: str = "fleet pools"
) -> ValidationReport:
    """The pools suite on each model's pools (the pools it has a profile for), in one report."""
    failures: list[Finding] = []
    warnings: list[Finding] = []
    rows = 0
    for model, pools in per_model.items():
        report = validate_pools(pools, model)
        failures += [_for_model(f, model) for f in report.failures]
        warnings += [_for_model(f, model) for f in report.warnings]
        rows += report.row_count
    return ValidationReport(subject, tuple(failures), tuple(warnings), rows)


def _for_model(finding: Finding, model: str) -> Finding:
    """`finding` with the model named in its table (`pools[llama-3.1-8b]`)."""
    return Finding(**{**finding.__dict__, "table": f"{finding.table}[{model}]"})


# --- files: read and validate in one step --------------------------------------------------


def check_price_file(
    path: str | Path,
    *,
    max_age_days: float | None = None,
    spot_tolerance: float = DEFAULT_SPOT_TOLERANCE,
    now: datetime | None = None,
) -> tuple[pd.DataFrame | None, ValidationReport]:
    """Read and validate a price CSV; the table is None when the file cannot be read.

    `max_age_days=None`: 7 days, or for the bundled snapshot its stated age (`validate_prices`).
    """
    subject = f"prices {path}"
    try:
        prices = read_price_csv(path)
    except PriceFileError as exc:
        return None, ValidationReport.from_error(subject, "; ".join(exc.problems))
    report = validate_prices(
        prices, max_age_days=max_age_days, spot_tolerance=spot_tolerance, now=now, subject=subject
    )
    return prices, report


def check_inventory_file(path: str | Path) -> tuple[Inventory | None, ValidationReport]:
    """Read and validate an inventory YAML; the inventory is None when it cannot be read."""
    from tasks.inventory import InventoryError, load_inventory

    subject = f"inventory {path}"
    try:
        inventory = load_inventory(path)
    except InventoryError as exc:
        message = f"{exc.where}: {exc.reason}" if exc.where else exc.reason
        return None, ValidationReport.from_error(subject, message)
    return inventory, validate_inventory(inventory, subject=subject)
