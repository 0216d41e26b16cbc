"""Hostile price CSVs and price values: one reader and one rule for `validate`, `run` and
`prices --source file`, applied where the data enters."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from flows.cli import main
from tasks.prices import AwsSpotSource, AzureRetailSource, FileSource
from tasks.prices.errors import MalformedResponse
from tasks.prices.http import HttpSettings
from tasks.prices.table import (
    MAX_PRICE_FILE_BYTES,
    MAX_PRICE_PER_HOUR,
    PriceFileError,
    read_price_csv,
    to_price_table,
)
from tasks.validation import check_price_file
from tasks.validation import read_price_csv as validation_reader
from tests.support.http_server import LoopbackServer, Reply

ROOT = Path(__file__).resolve().parents[2]
GOOD = ROOT / "tests" / "data" / "pools" / "prices-ok.csv"
HEADER, FIRST, *REST = GOOD.read_text().splitlines()


def _csv(tmp_path: Path, *rows: str, name: str = "p.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def _with(field: str, value: str) -> str:
    """The first good row with one field replaced."""
    names = HEADER.split(",")
    values = FIRST.split(",")
    values[names.index(field)] = value
    return ",".join(values)


def test_validate_and_file_source_use_the_same_reader() -> None:
    assert validation_reader is read_price_csv


def test_a_row_with_one_extra_field_is_named_as_ragged(tmp_path: Path) -> None:
    path = _csv(tmp_path, FIRST, REST[0] + ",surplus", *REST[1:])
    with pytest.raises(PriceFileError) as caught:
        read_price_csv(path)
    message = str(caught.value)
    assert "row 2 (line 3): 11 fields where the header has 10 (an extra field" in message
    assert "gpus_per_instance" not in message  # not blamed on another column
    with pytest.raises(MalformedResponse, match="row 2 \\(line 3\\): 11 fields"):
        FileSource(path, progress=lambda _: None).fetch()


def test_a_row_with_a_missing_field_is_named(tmp_path: Path) -> None:
    path = _csv(tmp_path, FIRST.rsplit(",", 1)[0])
    with pytest.raises(PriceFileError, match=r"row 1 \(line 2\): 9 fields .*a missing field"):
        read_price_csv(path)


def test_quoted_commas_and_extra_columns_are_not_ragged(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        HEADER + ",note\n" + FIRST + ',"a, b"\n\n', encoding="utf-8"
    )  # an extra named column and a trailing blank line are fine
    table = read_price_csv(path)
    assert list(table.columns) == [*HEADER.split(","), "spot_interruption"] and len(table) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NaN", "'NaN' is not a finite number"),
        ("nan", "'nan' is not a finite number"),
        ("inf", "'inf' is not a finite number"),
        ("-Infinity", "'-Infinity' is not a finite number"),
        ("1e308", "'1e308' is beyond the 10,000 limit"),
        ("1e400", "'1e400' is not a finite number"),
        ("10000.01", "'10000.01' is beyond the 10,000 limit"),
    ],
)
@pytest.mark.parametrize("field", ["price_per_hour", "spot_price_per_hour"])
def test_non_finite_or_absurd_prices_are_refused_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, text: str, message: str
) -> None:
    path = _csv(tmp_path, _with(field, text))
    expected = f"row 1, field {field}: {message}"
    # validate
    prices, report = check_price_file(path)
    assert prices is None and not report.ok and expected in report.render()
    assert main(["validate", "--prices", str(path)]) == 2
    assert expected in capsys.readouterr().out
    # run / prices --source file: the same reader, and nothing written
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    assert main(["prices", "--source", "file", "--from", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("replan prices: file: ") and expected in err[-1]
    assert not any("Traceback" in line for line in err)
    assert out.read_text() == "previous\n"


def test_the_limit_itself_is_a_price(tmp_path: Path) -> None:
    path = _csv(tmp_path, _with("price_per_hour", f"{MAX_PRICE_PER_HOUR:.2f}"))
    assert read_price_csv(path).loc[0, "price_per_hour"] == MAX_PRICE_PER_HOUR


def test_gpus_beyond_limit_refused(tmp_path: Path) -> None:
    path = _csv(tmp_path, _with("gpus_per_instance", "1e308"))
    with pytest.raises(PriceFileError, match="gpus_per_instance: '1e308' is beyond the 1,024"):
        read_price_csv(path)


def test_oversize_file_refused_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.csv"
    with path.open("wb") as handle:  # sparse: reading it would take time and memory
        handle.write((HEADER + "\n").encode())
        handle.truncate(MAX_PRICE_FILE_BYTES + 1)
    started = time.monotonic()
    assert main(["validate", "--prices", str(path)]) == 2
    assert time.monotonic() - started < 2.0
    out = capsys.readouterr().out
    assert f"more than the {MAX_PRICE_FILE_BYTES} bytes (32 MiB) a price file may have" in out
    assert main(["prices", "--source", "file", "--from", str(path)]) == 2
    assert "32 MiB" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (HEADER + "\n" + FIRST.replace("test,", '"test,', 1) + "\n", "not a CSV table"),
        (HEADER + ",price_per_hour\n" + FIRST + ",1\n", "header repeats column(s) price_per_hour"),
        ("\ufeff" + HEADER + "\n" + FIRST + "\n", ""),
    ],
)
def test_malformed_csv_shapes(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "p.csv"
    path.write_text(body, encoding="utf-8")
    if not message:
        assert len(read_price_csv(path)) == 1  # a BOM is fine
        return
    with pytest.raises(PriceFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_price_csv(path)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            HEADER + "\n" + FIRST.replace("aws", "a\x00ws", 1) + "\n",
            "field cloud: control character",
        ),
        (
            HEADER + "\n" + FIRST.replace("V100", "V100\x1b[31m", 1) + "\n",
            "field gpu: control character",
        ),
        (HEADER + "\n" + FIRST.replace("aws", "a" * 200_000, 1) + "\n", "not a CSV table"),
    ],
)
def test_nul_bytes_and_giant_fields_are_one_line(tmp_path: Path, body: str, says: str) -> None:
    path = tmp_path / "p.csv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(PriceFileError, match=says) as caught:
        read_price_csv(path)
    assert len(str(caught.value)) < 400


def test_long_bad_values_are_cut_in_messages(tmp_path: Path) -> None:
    path = _csv(tmp_path, _with("price_per_hour", "9" * 10_000 + "x"))
    with pytest.raises(PriceFileError) as caught:
        read_price_csv(path)
    assert len(str(caught.value)) < 300


# --- prices that enter from live sources: the same limit in `to_price_table` ---------------


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = dict(zip(HEADER.split(","), FIRST.split(","), strict=True))
    return row | changes


@pytest.mark.parametrize("value", [float("inf"), 1e308, MAX_PRICE_PER_HOUR * 2])
def test_to_price_table_refuses_absurd_prices(value: float) -> None:
    with pytest.raises(ValueError, match="beyond the 10,000 USD per instance-hour limit"):
        to_price_table(pd.DataFrame([_row(spot_price_per_hour=value)]))


def test_live_sources_refuse_absurd_prices() -> None:
    settings = HttpSettings(max_attempts=1, read_timeout_s=2.0, response_deadline_s=5.0)
    azure_item = {
        "armSkuName": "Standard_NC6s_v3", "armRegionName": "eastus", "skuName": "NC6s v3",
        "type": "Consumption", "unitOfMeasure": "1 Hour", "currencyCode": "USD",
        "productName": "Virtual Machines NCSv3 Series", "unitPrice": 1e308,
    }  # fmt: skip
    spot_feed = {
        "config": {"regions": [{"region": "us-east-1", "instanceTypes": [{"sizes": [
            {"size": "p3.2xlarge",
             "valueColumns": [{"name": "linux", "prices": {"USD": "Infinity"}}]}]}]}]}
    }  # fmt: skip
    with LoopbackServer() as server:
        server.route("/azure", Reply.json({"Items": [azure_item], "NextPageLink": None}))
        server.route("/spot.json", Reply.json(spot_feed))
        azure = AzureRetailSource(server.url_for("/azure"), regions=["eastus"], settings=settings)
        with pytest.raises(MalformedResponse, match="beyond the 10,000"):
            azure.fetch()
        aws = AwsSpotSource(server.url_for("/spot.json"), settings=settings)
        with pytest.raises(MalformedResponse, match="beyond the 10,000"):
            aws.fetch()


@pytest.mark.parametrize(
    ("price", "says"),
    [("inf", "beyond the 10,000"), ("1e308", "beyond the 10,000"), ("NaN-ish", "bad catalog")],
)
def test_skypilot_catalog_absurd_price_is_malformed(price: str, says: str) -> None:
    from tasks.prices import fetch_prices

    catalog = ROOT / "tasks" / "data" / "prices" / "skypilot-catalog" / "aws.csv"
    header, first, *rest = catalog.read_text().splitlines()
    fields = first.split(",")
    fields[5] = price  # Price
    body = "\n".join([header, ",".join(fields), *rest[:5]]) + "\n"
    settings = HttpSettings(max_attempts=1, read_timeout_s=2.0, response_deadline_s=5.0)
    with LoopbackServer() as server:
        server.route("/v8/aws/vms.csv", Reply.text(body, content_type="text/csv"))
        with pytest.raises(MalformedResponse, match=says):
            fetch_prices(
                "skypilot-catalog", server.url_for("/v8"), clouds=["aws"], settings=settings,
                progress=lambda _: None,
            )  # fmt: skip
