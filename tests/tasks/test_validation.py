"""GX validation: suites, the broken-file corpus, warn vs fail, freshness, the short report."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from tasks.inventory import load_inventory
from tasks.validation import (
    EXPECTATIONS_DIR,
    PriceFileError,
    ValidationFailed,
    check_inventory_file,
    check_price_file,
    load_suite,
    read_price_csv,
    require_valid,
    validate_inventory,
    validate_pools,
    validate_prices,
)

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "data" / "bad"
GOOD_PRICES = ROOT / "tests" / "data" / "pools" / "prices-ok.csv"
NOW = datetime(2025, 6, 2, tzinfo=UTC)  # the fixtures are stamped 2025-06-01


def test_suites_are_sorted_json_with_severity_and_reason() -> None:
    for name in ("prices", "inventory", "pools"):
        path = EXPECTATIONS_DIR / f"{name}.json"
        text = path.read_text(encoding="utf-8")
        document = json.loads(text)
        assert text == json.dumps(document, sort_keys=True, indent=2) + "\n", name
        for expectation in document["expectations"]:
            assert expectation["severity"] in ("critical", "warning")
            assert expectation["meta"]["why"]
            assert expectation["description"]
            if name == "inventory":
                assert expectation["meta"]["table"]


def test_good_prices_pass() -> None:
    prices = read_price_csv(GOOD_PRICES)
    assert list(prices.columns)[:3] == ["source", "cloud", "region"]
    assert isinstance(prices["fetched_at"].dtype, pd.DatetimeTZDtype)
    report = validate_prices(prices, now=NOW)
    assert report.ok, report.render()
    assert report.row_count == 10
    assert require_valid(report) is report
    assert "ok" in report.render().splitlines()[0]


# file -> (expectation description, row label of an offending row)
BAD_PRICES = {
    "prices-negative.csv": ("on-demand price > 0", "row 2 aws/us-east-1/use1-az1/p3.8xlarge"),
    "prices-empty.csv": ("at least one price row", ""),
    "prices-duplicate-key.csv": ("unique key", "row 3 aws/us-east-1/use1-az1/p3.8xlarge"),
    "prices-unknown-gpu.csv": ("known GPU name", "row 2 aws/us-east-1/use1-az1/p3.8xlarge"),
    "prices-stale.csv": ("freshness limit", "row 3 aws/us-east-1/use1-az1/g4dn.xlarge"),
    "prices-future.csv": ("not in the future", "row 1 aws/us-east-1/use1-az1/p3.2xlarge"),
    "prices-zero-gpus.csv": ("whole number of GPUs", "row 2 aws/us-east-1/use1-az1/p3.8xlarge"),
    "prices-fractional-gpus.csv": ("whole number of GPUs", "row 3 aws/us-east-1/use1-az1/"),
    "prices-above-ceiling.csv": ("<= 60 USD", "row 2 aws/us-east-1/use1-az1/p3.8xlarge: 306"),
    "prices-empty-gpu.csv": ("gpu not empty", "row 1 aws/us-east-1/use1-az1/p3.2xlarge"),
    "prices-bad-interruption.csv": (
        "spot advisor bucket or empty",
        "row 2 aws/us-east-1/use1-az1/p3.8xlarge: '12%'",
    ),
}
# file -> what the read error names (row, field)
UNREADABLE_PRICES = {
    "prices-empty-file.csv": "empty file",
    "prices-missing-column.csv": "missing column(s) spot_price_per_hour",
    "prices-non-utf8.csv": "row 2 (line 3), field region: not UTF-8 (byte 0xff)",
    "prices-unparsable-number.csv": "row 2, field price_per_hour: not a number: '12.24 USD'",
    "prices-unparsable-time.csv": "row 3, field fetched_at: not an ISO 8601 time: 'yesterday'",
    "prices-nan.csv": "row 3, field gpus_per_instance: 'NaN' is not a finite number",
    "prices-ragged-row.csv": "row 2 (line 3): 11 fields where the header has 10 (an extra field",
    "prices-nonfinite-price.csv": "row 1, field price_per_hour: 'NaN' is not a finite number",
    "prices-huge-price.csv": "row 2, field price_per_hour: '1e308' is beyond the 10,000 limit",
}


@pytest.mark.parametrize(("file", "expected"), sorted(BAD_PRICES.items()))
def test_bad_price_files_fail_naming_the_row(file: str, expected: tuple[str, str]) -> None:
    description, row = expected
    prices, report = check_price_file(BAD / file, now=NOW)
    assert prices is not None
    assert not report.ok
    text = report.render()
    assert description in text and row in text, text
    assert "INVALID" in text.splitlines()[0]
    with pytest.raises(ValidationFailed) as caught:
        require_valid(report)
    assert caught.value.report is report


@pytest.mark.parametrize(("file", "message"), sorted(UNREADABLE_PRICES.items()))
def test_unreadable_price_files_name_file_row_field(file: str, message: str) -> None:
    with pytest.raises(PriceFileError) as caught:
        read_price_csv(BAD / file)
    assert str(caught.value).startswith(str(BAD / file))
    assert message in str(caught.value)
    prices, report = check_price_file(BAD / file, now=NOW)
    assert prices is None and not report.ok
    assert message in report.render()


def test_every_corpus_file_is_covered() -> None:
    covered = set(BAD_PRICES) | set(UNREADABLE_PRICES) | set(BAD_INVENTORY)
    assert covered == {path.name for path in BAD.iterdir() if path.suffix in (".csv", ".yaml")}


def _frame(**changes: object) -> pd.DataFrame:
    prices = read_price_csv(GOOD_PRICES)
    for column, value in changes.items():
        prices.loc[0, column] = value
    return prices


def test_spot_above_on_demand_is_a_warning_with_tolerance() -> None:
    prices = _frame(spot_price_per_hour=3.5)  # on-demand 3.06: 14 % above
    report = validate_prices(prices, now=NOW)
    assert report.ok
    assert [w.column for w in report.warnings] == ["spot_over_on_demand"]
    assert "row 1 aws/us-east-1/use1-az1/p3.2xlarge" in report.render()
    assert "WARN" in report.render()
    assert validate_prices(prices, now=NOW, spot_tolerance=0.2).warnings == ()


def test_row_without_any_price_is_a_warning() -> None:
    report = validate_prices(_frame(price_per_hour=math.nan, spot_price_per_hour=math.nan), now=NOW)
    assert report.ok
    assert [w.column for w in report.warnings] == ["has_price"]


def test_zero_spot_price_fails() -> None:
    report = validate_prices(_frame(spot_price_per_hour=0.0), now=NOW)
    assert [f.column for f in report.failures] == ["spot_price_per_hour"]


def test_freshness_limit_is_a_parameter() -> None:
    prices = read_price_csv(GOOD_PRICES)
    later = datetime(2025, 6, 20, tzinfo=UTC)
    assert not validate_prices(prices, now=later).ok  # default 7 days
    assert validate_prices(prices, now=later, max_age_days=30).ok


def test_the_bundled_snapshot_states_its_age_instead_of_failing_freshness() -> None:
    stale = read_price_csv(GOOD_PRICES)
    later = datetime(2027, 6, 1, tzinfo=UTC)
    live = validate_prices(stale, now=later, max_age_days=None)
    assert [f.expectation for f in live.failures] == ["expect_column_values_to_be_between"]
    snapshot = stale.assign(source="snapshot")
    report = validate_prices(snapshot, now=later, max_age_days=None)
    assert report.ok, report.render()
    [age] = [w for w in report.warnings if w.expectation == "snapshot_age"]
    assert "fetched 2025-06-01 .. 2025-06-01, up to 730 days old" in age.render()
    # a limit given applies to the snapshot too; the default of validate_prices stays 7 days
    assert not validate_prices(snapshot, now=later, max_age_days=7).ok
    assert not validate_prices(snapshot, now=later).ok


def test_missing_column_in_a_dataframe_is_reported_once() -> None:
    prices = read_price_csv(GOOD_PRICES).drop(columns=["spot_price_per_hour", "gpu"])
    report = validate_prices(prices, now=NOW)
    assert len(report.failures) == 1
    assert report.failures[0].note == "missing gpu, spot_price_per_hour"


def test_wrongly_typed_column_fails_instead_of_crashing() -> None:
    prices = read_price_csv(GOOD_PRICES)
    prices["price_per_hour"] = prices["price_per_hour"].astype("str")
    report = validate_prices(prices, now=NOW)
    assert not report.ok


def test_report_is_short_for_many_bad_rows() -> None:
    prices = pd.concat([read_price_csv(GOOD_PRICES)] * 30, ignore_index=True)
    prices["instance_type"] = [f"x{i}" for i in range(len(prices))]
    prices["price_per_hour"] = -1.0
    text = validate_prices(prices, now=NOW).render()
    assert "300 of 300 rows" in text
    assert "... and 297 more" in text
    assert len(text.splitlines()) < 10


# file -> (expectation description or read error, row path)
BAD_INVENTORY = {
    "inventory-negative-quota.yaml": ("quota max_gpus >= 0", "quotas[1]: -4"),
    "inventory-negative-throughput.yaml": ("tokens_per_s > 0", "gpus.T4.models.m: -150"),
    "inventory-duplicate-quota.yaml": ("one quota per (cloud, region, gpu, market)", "quotas[1]"),
    "inventory-duplicate-market-quota.yaml": (
        "one quota per (cloud, region, gpu, market)",
        "quotas[2]: 'aws', 'us-east-1', 'V100', 'spot'",
    ),
    "inventory-bad-market.yaml": ("quota market is on-demand or spot", "quotas[1]: 'preemptible'"),
    "inventory-survive-fraction.yaml": ("serving.survive_fraction in (0, 1]", "serving: 1.5"),
    "inventory-survive-domain.yaml": (
        "survive_spot_loss is none, region or cloud",
        "serving: 'zone'",
    ),
    "inventory-bad-interruption.yaml": ("AWS spot advisor bucket", "serving: '12%'"),
    "inventory-zero-useful.yaml": ("useful_tokens_per_s > 0", "models.m: 0"),
    "inventory-unknown-serving.yaml": ("readable", "serving.survive: unknown field"),
    "inventory-unknown-gpu.yaml": ("known GPU name", "gpus.T-4"),
    "inventory-tp-efficiency.yaml": ("TP efficiency in (0, 1]", "tp_efficiency.2: 1.4"),
    "inventory-zero-layers.yaml": ("num_layers between 1 and 1000", "models.m: 0"),
    "inventory-fractional-quota.yaml": ("readable", "quotas[1].max_gpus: must be an integer"),
    "inventory-nan-throughput.yaml": ("readable", "gpus.T4.models.m.tokens_per_s"),
    "inventory-missing-field.yaml": ("readable", "gpus.T4.memory_gb: is required"),
    "inventory-missing-section.yaml": ("readable", "quotas: is required"),
    "inventory-duplicate-gpu.yaml": ("readable", "line 10: not valid YAML: duplicate key 'V100'"),
    "inventory-unknown-model.yaml": ("readable", "gpus.T4.models.m2"),
    "inventory-string-memory.yaml": ("readable", "gpus.T4.memory_gb: must be a number"),
    "inventory-non-utf8.yaml": ("readable", "line 13: not UTF-8 (byte 0xe9)"),
    "inventory-empty.yaml": ("readable", "must be a mapping"),
}


@pytest.mark.parametrize(("file", "expected"), sorted(BAD_INVENTORY.items()))
def test_bad_inventory_files_fail_naming_the_path(file: str, expected: tuple[str, str]) -> None:
    description, where = expected
    _, report = check_inventory_file(BAD / file)
    text = report.render()
    assert not report.ok
    assert description in text and where in text, text


def test_example_inventory_is_valid() -> None:
    report = validate_inventory(load_inventory(ROOT / "config" / "inventory.yaml"))
    assert report.ok and not report.warnings, report.render()


def _pools(**changes: object) -> pd.DataFrame:
    row = {
        "id": "aws/us-east-1/V100", "gpu": "V100", "cloud": "aws", "region": "us-east-1",
        "available": 8, "max_tp": 8, "price_per_gpu_hour": 0.9, "memory_gb": 16.0,
        "tokens_per_s": 400.0, "tp_efficiency": None,
    }  # fmt: skip
    other = row | {"id": "aws/us-east-1/T4", "gpu": "T4"}
    return pd.DataFrame([row, other | changes])


def test_pools_pass_and_fail() -> None:
    assert validate_pools(_pools(), "m").ok
    report = validate_pools(_pools(tokens_per_s=math.nan), "llama")
    assert not report.ok
    text = report.render()
    assert "throughput profile for the model" in text and "pool aws/us-east-1/T4" in text
    assert "pools for model llama" in text
    assert not validate_pools(_pools(max_tp=3), "m").ok
    assert not validate_pools(_pools(id="aws/us-east-1/V100"), "m").ok
    assert not validate_pools(_pools(price_per_gpu_hour=0.0), "m").ok
    assert not validate_pools(_pools().iloc[0:0], "m").ok


def test_gx_keeps_every_expectation_of_each_suite() -> None:
    """GX logs and drops configurations it rejects; the runner refuses to run a short suite."""
    for name in ("prices", "inventory", "pools"):
        assert len(load_suite(name)) > 5
