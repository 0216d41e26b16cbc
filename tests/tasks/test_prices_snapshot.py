"""The bundled snapshot, catalog mapping, `file` source, registry and `replan prices`."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from flows.cli import main
from flows.commands.prices import cheapest_spot_per_gpu
from tasks.prices import SOURCE_NAMES, PriceSource, fetch_prices, get_source
from tasks.prices.errors import MalformedResponse, SourceConfigError
from tasks.prices.schema import PRICE_COLUMNS, PRICE_KEY
from tasks.prices.skypilot import catalog_to_table, parse_catalog_csv
from tasks.prices.table import read_price_csv, to_price_table, write_price_csv

FETCHED_AT = datetime(2025, 1, 1, tzinfo=UTC)


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def snapshot() -> pd.DataFrame:
    return fetch_prices("snapshot", progress=quiet)


def catalog(text: str, cloud: str) -> pd.DataFrame:
    rows = parse_catalog_csv(text, source="t", url="mem:")
    table, _ = catalog_to_table(cloud, rows, source="t", fetched_at=FETCHED_AT)
    return table


def test_snapshot_has_canonical_columns_and_dtypes(snapshot: pd.DataFrame) -> None:
    assert list(snapshot.columns) == list(PRICE_COLUMNS)
    assert snapshot["gpus_per_instance"].dtype == "int64"
    assert snapshot["price_per_hour"].dtype == "float64"
    assert str(snapshot["fetched_at"].dtype) == "datetime64[us, UTC]"
    assert not snapshot.duplicated(list(PRICE_KEY)).any()
    assert set(snapshot["cloud"]) == {"aws", "gcp", "azure", "lambda", "nebius", "vast"}
    assert (snapshot["gpus_per_instance"] >= 1).all()
    # the SkyPilot catalog carries no spot advisor data: the bucket is unknown everywhere
    assert snapshot["spot_interruption"].map(lambda v: v is None).all()
    assert (snapshot["price_per_hour"].notna() | snapshot["spot_price_per_hour"].notna()).all()


def test_snapshot_aws_keeps_zones_and_empty_on_demand(snapshot: pd.DataFrame) -> None:
    aws = snapshot[snapshot["cloud"] == "aws"]
    assert (aws["zone"] != "").all()
    p5e = aws[aws["instance_type"] == "p5e.48xlarge"]
    assert len(p5e) > 0 and p5e["price_per_hour"].isna().all()
    assert p5e["spot_price_per_hour"].notna().all()
    row = aws.set_index(["zone", "instance_type"]).loc[("apne1-az4", "p3.16xlarge")]
    assert (row["price_per_hour"], row["spot_price_per_hour"]) == (33.552, 3.8151)


def test_snapshot_gcp_instance_price_is_host_plus_gpus(snapshot: pd.DataFrame) -> None:
    gcp = snapshot[snapshot["cloud"] == "gcp"].set_index(["zone", "instance_type"])
    row = gcp.loc[("us-central1-a", "a2-highgpu-1g")]
    gpu = pd.read_csv(
        Path(__file__).resolve().parents[2] / "tasks/data/prices/skypilot-catalog/gcp.csv"
    ).query(
        "AvailabilityZone == 'us-central1-a' and AcceleratorName == 'A100' "
        "and AcceleratorCount == 1"
    )
    assert row["price_per_hour"] == pytest.approx(0.73948 + float(gpu["Price"].iloc[0]))
    assert row["spot_price_per_hour"] == pytest.approx(0.36975 + float(gpu["SpotPrice"].iloc[0]))
    assert (row["gpu"], row["gpus_per_instance"]) == ("A100", 1)
    # GPUs whose host VM is not in the extract are dropped, never priced GPU-only
    assert set(snapshot.loc[snapshot["cloud"] == "gcp", "gpu"]) == {"A100", "A100-80GB", "H100"}


def test_snapshot_vast_zero_spot_is_missing(snapshot: pd.DataFrame) -> None:
    vast = snapshot[snapshot["cloud"] == "vast"]
    assert len(vast) == 63 and vast["spot_price_per_hour"].isna().all()


def test_snapshot_azure_corrections(snapshot: pd.DataFrame) -> None:
    azure = snapshot[snapshot["cloud"] == "azure"]
    assert (azure["zone"] == "").all()
    assert set(
        azure.loc[azure["instance_type"] == "Standard_ND96isr_H100_v5", "gpus_per_instance"]
    ) == {8}
    assert not azure["instance_type"].isin(["Standard_NV4as_v4", "Standard_NV8as_v4"]).any()


def test_snapshot_fetched_at_is_the_true_date() -> None:
    fixed = fetch_prices("snapshot", clouds=["aws", "azure"], progress=quiet)
    stamps = fixed.groupby("cloud")["fetched_at"].first()
    assert stamps["aws"] == pd.Timestamp("2025-01-01", tz="UTC")
    assert stamps["azure"] == pd.Timestamp("2024-01-01", tz="UTC")


def test_catalog_mapping_quirks() -> None:
    text = (
        "InstanceType,AcceleratorName,AcceleratorCount,Price,SpotPrice,Region,AvailabilityZone\n"
        "g5.xlarge,A10G,1.0,1.006,0.00,us-east-1,use1-az1\n"  # 0.00 spot = no data
        "g5.xlarge,A10G,1.0,,0.4,us-east-1,use1-az2\n"  # no on-demand, spot kept
        "g5.xlarge,A10G,1.0,,,us-east-1,use1-az3\n"  # no price at all: dropped
        "g6f.large,L4,0.125,0.2,0.1,us-east-1,use1-az1\n"  # fractional GPU: dropped
        "m5.large,,,0.096,0.03,us-east-1,use1-az1\n"  # not a GPU row
    )
    table = catalog(text, "aws").set_index("zone")
    assert list(table.index) == ["use1-az1", "use1-az2"]
    assert math.isnan(table.loc["use1-az1", "spot_price_per_hour"])
    assert math.isnan(table.loc["use1-az2", "price_per_hour"])


def test_catalog_rejects_non_numeric_price() -> None:
    text = "InstanceType,AcceleratorName,AcceleratorCount,Price,SpotPrice,Region\nx,T4,1,abc,,r\n"
    with pytest.raises(ValueError):
        catalog(text, "lambda")


def test_catalog_requires_columns() -> None:
    with pytest.raises(MalformedResponse, match="lacks columns"):
        parse_catalog_csv("InstanceType,Price\nx,1\n", source="t", url="mem:")


def test_registry() -> None:
    assert SOURCE_NAMES == ("snapshot", "skypilot-catalog", "azure-retail", "aws-spot", "file")
    for name in SOURCE_NAMES:
        location = "/tmp/x.csv" if name == "file" else None
        source = get_source(name, location)
        assert isinstance(source, PriceSource) and source.name == name
    with pytest.raises(SourceConfigError, match="unknown price source"):
        get_source("oracle")
    with pytest.raises(SourceConfigError, match="takes no --from"):
        get_source("snapshot", "http://127.0.0.1/x")


def test_file_round_trip(tmp_path: Path, snapshot: pd.DataFrame) -> None:
    path = write_price_csv(snapshot, tmp_path / "sub" / "prices.csv")
    assert not [p for p in path.parent.iterdir() if p.name != "prices.csv"]  # no temp file left
    again = fetch_prices("file", str(path))
    pd.testing.assert_frame_equal(again, snapshot)


def test_file_errors(tmp_path: Path, snapshot: pd.DataFrame) -> None:
    with pytest.raises(SourceConfigError, match="no such file"):
        fetch_prices("file", str(tmp_path / "missing.csv"))
    path = write_price_csv(snapshot.head(2), tmp_path / "dup.csv")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(MalformedResponse, match="share a key"):
        fetch_prices("file", str(path))
    path.write_text("source,cloud\nfile,aws\n")
    with pytest.raises(MalformedResponse, match="missing column"):
        fetch_prices("file", str(path))


def test_read_price_csv_keeps_empty_zone_and_missing_spot(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        ",".join(PRICE_COLUMNS) + "\n"
        "file,azure,eastus,,Standard_NC6s_v3,V100,1,3.06,,2025-06-01T12:00:00Z,\n"
    )
    table = read_price_csv(path)
    assert table.loc[0, "zone"] == "" and math.isnan(table.loc[0, "spot_price_per_hour"])
    assert table.loc[0, "spot_interruption"] is None
    assert table.loc[0, "fetched_at"] == pd.Timestamp("2025-06-01T12:00:00", tz="UTC")


def test_cheapest_spot_per_gpu_divides_by_gpu_count(snapshot: pd.DataFrame) -> None:
    cheapest = cheapest_spot_per_gpu(snapshot).set_index("gpu")
    h100 = snapshot[(snapshot["gpu"] == "H100") & snapshot["spot_price_per_hour"].notna()]
    expected = (h100["spot_price_per_hour"] / h100["gpus_per_instance"]).min()
    assert cheapest.loc["H100", "spot_price_per_gpu_hour"] == pytest.approx(expected)


def test_cli_prices_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "prices.csv"
    assert main(["prices", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "cheapest spot price per GPU" in printed.out
    assert "   aws  1586" in printed.out
    assert f"wrote 2369 rows to {out}" in printed.err
    assert len(read_price_csv(out)) == 2369


def test_cli_prices_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "--source", "file"]) == 2
    assert main(["prices", "--source", "azure-retail", "--from", "http://example.com/p"]) == 2
    with pytest.raises(SystemExit) as gone:  # dropped: fetched_at stays true everywhere
        main(["prices", "--stamp-now"])
    assert gone.value.code == 2
    broken = tmp_path / "broken.csv"
    broken.write_text("not,a,price,table\n")
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    assert main(["prices", "--source", "file", "--from", str(broken), "--out", str(out)]) == 2
    assert out.read_text() == "previous\n"  # a failed run leaves the old file alone
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[0] == "replan prices: file: needs a path (--from FILE)"
    assert errors[1].startswith("replan prices: azure-retail: only https://")
    assert errors[-1].startswith("replan prices: file: not a canonical price CSV")


def test_cli_prices_source_failure_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.http_server import LoopbackServer, Reply

    with LoopbackServer() as server:
        server.route("/spot.json", Reply.status_only(403))
        assert main(["prices", "--source", "aws-spot", "--from", server.url_for("/spot.json")]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("replan prices: aws-spot: HTTP 403") and "/spot.json" in error


def test_price_csv_without_spot_interruption_reads_as_none(tmp_path: Path) -> None:
    """Files written before the column existed still read; the column comes back as None."""
    path = tmp_path / "p.csv"
    columns = [c for c in PRICE_COLUMNS if c != "spot_interruption"]
    path.write_text(
        ",".join(columns) + "\n"
        "file,aws,us-east-1,,p3.2xlarge,V100,1,3.06,0.9,2025-06-01T12:00:00Z\n"
    )
    table = read_price_csv(path)
    assert list(table.columns) == list(PRICE_COLUMNS)
    assert table.loc[0, "spot_interruption"] is None
    written = tmp_path / "again.csv"
    write_price_csv(to_price_table(table.assign(spot_interruption=["5-10%"])), written)
    assert read_price_csv(written).loc[0, "spot_interruption"] == "5-10%"
