"""azure-retail, aws-spot and skypilot-catalog against a real loopback server serving samples."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tasks.prices import fetch_prices, get_source
from tasks.prices.aws_spot import unwrap_jsonp
from tasks.prices.azure import AZURE_RETAIL_URL, AzureRetailSource
from tasks.prices.errors import (
    HttpStatusError,
    InsecureUrl,
    MalformedResponse,
    PagingError,
    ResponseTooLarge,
    SourceTimeout,
)
from tasks.prices.http import HttpSettings
from tasks.prices.schema import PRICE_COLUMNS
from tasks.prices.snapshot import SNAPSHOT_FILES, snapshot_text
from tasks.validation import validate_prices
from tests.support.http_server import LoopbackServer, RecordedRequest, Reply

DATA = Path(__file__).resolve().parents[1] / "data" / "prices"
AZURE_PAGES = DATA / "azure-retail-prices"
AZURE_PATH = "/api/retail/prices"
FAST = HttpSettings(
    connect_timeout_s=0.5,
    read_timeout_s=0.3,
    response_deadline_s=2.0,
    max_attempts=2,
    backoff_initial_s=0.01,
    backoff_max_s=0.02,
    retry_after_max_s=1.0,
    max_response_bytes=2_000_000,
    max_pages=10,
)


def quiet(_: str) -> None:
    pass


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


def azure_pages(request: RecordedRequest) -> Reply:
    """Serve page 1/2/3 by `$skip`, as the real API does."""
    skip = request.query.get("$skip", ["0"])[0]
    page = {"0": 1, "6": 2, "12": 3}.get(skip)
    return Reply.file(AZURE_PAGES / f"page-{page}.json") if page else Reply.status_only(400)


def azure(server: LoopbackServer, **options: object) -> AzureRetailSource:
    return AzureRetailSource(
        server.url_for(AZURE_PATH), regions=["eastus"], settings=FAST, progress=quiet, **options
    )


def test_azure_pages_to_the_end_and_maps_meters(server: LoopbackServer) -> None:
    server.route(AZURE_PATH, azure_pages)
    table = azure(server).fetch()
    requests = server.requests_to(AZURE_PATH)
    assert [r.query.get("$skip", ["0"])[0] for r in requests] == ["0", "6", "12"]
    assert requests[0].query["$filter"] == [
        "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' "
        "and armRegionName eq 'eastus'"
    ]
    assert list(table.columns) == list(PRICE_COLUMNS)
    rows = table.set_index("instance_type")
    assert len(rows) == 8 and set(rows["source"]) == {"azure-retail"}
    t4 = rows.loc["Standard_NC4as_T4_v3"]
    # the Windows meter (same price) and the Low Priority meter must not leak in
    assert (t4["price_per_hour"], t4["spot_price_per_hour"]) == (0.526, 0.062699)
    assert rows.loc["Standard_NC6s_v3", "spot_price_per_hour"] == 0.3978
    assert rows.loc["Standard_ND96amsr_A100_v4", "gpus_per_instance"] == 8
    assert rows.loc["Standard_ND96amsr_A100_v4", "gpu"] == "A100-80GB"
    h100 = rows.loc["Standard_NC40ads_H100_v5"]
    assert h100["price_per_hour"] == 6.98 and math.isnan(h100["spot_price_per_hour"])
    assert set(table["zone"]) == {""} and set(table["region"]) == {"eastus"}


def test_azure_500_then_success(server: LoopbackServer) -> None:
    server.route(AZURE_PATH, Reply.status_only(500), azure_pages)
    assert len(azure(server).fetch()) == 8


def test_azure_page_loop_is_stopped(server: LoopbackServer) -> None:
    page = json.loads((AZURE_PAGES / "page-1.json").read_text())
    page["NextPageLink"] = AZURE_RETAIL_URL + "?$skip=6"
    later = dict(page, NextPageLink=AZURE_RETAIL_URL + "?$skip=6")  # points at itself
    server.route(
        AZURE_PATH,
        lambda r: Reply.json(later if "$skip" in r.query else page),
    )
    with pytest.raises(PagingError, match="loop"):
        azure(server).fetch()
    assert len(server.requests_to(AZURE_PATH)) == 2


def test_azure_endless_distinct_pages_hit_the_page_cap(server: LoopbackServer) -> None:
    def endless(request: RecordedRequest) -> Reply:
        skip = int(request.query.get("$skip", ["0"])[0])
        return Reply.json({"Items": [], "NextPageLink": f"{AZURE_RETAIL_URL}?$skip={skip + 1}"})

    server.route(AZURE_PATH, endless)
    with pytest.raises(PagingError, match="more than 10 pages"):
        azure(server).fetch()
    assert len(server.requests_to(AZURE_PATH)) == FAST.max_pages


def test_azure_next_link_to_other_host_is_refused(server: LoopbackServer) -> None:
    page = json.loads((AZURE_PAGES / "page-1.json").read_text())
    page["NextPageLink"] = "https://attacker.example.net/api/retail/prices?$skip=6"
    server.route(AZURE_PATH, Reply.json(page))
    with pytest.raises(PagingError, match="leaves the configured origin") as caught:
        azure(server).fetch()
    assert caught.value.source == "azure-retail" and "attacker" in caught.value.url


def test_azure_empty_next_link_falls_back_to_skip(server: LoopbackServer) -> None:
    items = json.loads((AZURE_PAGES / "page-1.json").read_text())["Items"]

    def pages(request: RecordedRequest) -> Reply:
        skip = int(request.query.get("$skip", ["0"])[0])
        return Reply.json({"Items": items[skip : skip + 3], "NextPageLink": ""})

    server.route(AZURE_PATH, pages)
    table = azure(server).fetch()
    skips = [r.query.get("$skip", ["0"])[0] for r in server.requests_to(AZURE_PATH)]
    assert skips == ["0", "3", "6"]
    assert set(table["instance_type"]) == {"Standard_NC4as_T4_v3", "Standard_NC6s_v3"}


def test_azure_malformed_json(server: LoopbackServer) -> None:
    server.route(AZURE_PATH, Reply.text('{"Items": [', content_type="application/json"))
    with pytest.raises(MalformedResponse, match="invalid JSON") as caught:
        azure(server).fetch()
    assert AZURE_PATH in caught.value.url


def test_azure_wrong_shape(server: LoopbackServer) -> None:
    server.route(AZURE_PATH, Reply.json({"items": []}))
    with pytest.raises(MalformedResponse, match="no Items list"):
        azure(server).fetch()


def test_azure_oversized_page(server: LoopbackServer) -> None:
    server.route(AZURE_PATH, Reply.sized(FAST.max_response_bytes + 10, chunked=True))
    with pytest.raises(ResponseTooLarge):
        azure(server).fetch()


def test_azure_read_timeout(server: LoopbackServer) -> None:
    server.route(AZURE_PATH, Reply.file(AZURE_PAGES / "page-3.json", delay_s=5.0))
    with pytest.raises(SourceTimeout):
        azure(server).fetch()


def test_azure_refuses_plain_http_base() -> None:
    with pytest.raises(InsecureUrl):
        get_source("azure-retail", "http://prices.azure.com/api/retail/prices")


@pytest.mark.parametrize("feed", ["spot.json", "spot.js"])
def test_aws_spot_json_and_jsonp(server: LoopbackServer, feed: str) -> None:
    server.route(f"/{feed}", Reply.file(DATA / "aws" / feed))
    table = fetch_prices("aws-spot", server.url_for(f"/{feed}"), settings=FAST, progress=quiet)
    assert len(table) == 16 and set(table["region"]) == {"us-east-1", "us-west-2", "eu-central-1"}
    assert table["price_per_hour"].isna().all()
    p4d = table.set_index(["region", "instance_type"]).loc[("us-east-1", "p4d.24xlarge")]
    assert (p4d["gpu"], p4d["gpus_per_instance"], p4d["spot_price_per_hour"]) == ("A100", 8, 2.4655)


def test_aws_spot_base_url_gets_spot_json(server: LoopbackServer) -> None:
    server.route("/mirror/spot.json", Reply.file(DATA / "aws" / "spot.json"))
    assert (
        len(fetch_prices("aws-spot", server.url_for("/mirror"), settings=FAST, progress=quiet))
        == 16
    )


def test_aws_spot_aliases_and_na(server: LoopbackServer) -> None:
    def size(name: str, usd: str) -> dict[str, object]:
        return {"size": name, "valueColumns": [{"name": "linux", "prices": {"USD": usd}}]}

    feed = {"config": {"regions": [
        {"region": "us-east", "instanceTypes": [{"type": "g", "sizes": [
            size("g5.xlarge", "0.5000"), size("p5.48xlarge", "N/A*"), size("m5.large", "0.03")]}]},
        {"region": "apac-tokyo",
         "instanceTypes": [{"type": "g", "sizes": [size("g6e.48xlarge", "9.1")]}]},
    ]}}  # fmt: skip
    server.route("/spot.js", Reply.text(f"  callback( {json.dumps(feed)} ) ;\n"))
    table = fetch_prices("aws-spot", server.url_for("/spot.js"), settings=FAST, progress=quiet)
    assert sorted(zip(table["region"], table["instance_type"], strict=True)) == [
        ("ap-northeast-1", "g6e.48xlarge"),
        ("us-east-1", "g5.xlarge"),
    ]


def test_unwrap_jsonp_is_not_fixed_width() -> None:
    assert unwrap_jsonp('cb({"a": 1});') == '{"a": 1}'
    assert unwrap_jsonp('\n window.spot_callback ( {"a": "x)"} )\n') == ' {"a": "x)"} '
    assert unwrap_jsonp('{"a": 1}') == '{"a": 1}'
    with pytest.raises(ValueError):
        unwrap_jsonp("<html>")


def test_aws_spot_malformed(server: LoopbackServer) -> None:
    server.route("/spot.js", Reply.text("callback({broken);"))
    with pytest.raises(MalformedResponse, match="invalid JSON"):
        fetch_prices("aws-spot", server.url_for("/spot.js"), settings=FAST, progress=quiet)
    server.route("/spot.json", Reply.json({"config": {"regions": [{"region": "x"}]}}))
    with pytest.raises(MalformedResponse, match="unexpected feed shape"):
        fetch_prices("aws-spot", server.url_for("/spot.json"), settings=FAST, progress=quiet)


ADVISOR = DATA / "aws" / "spot-advisor-data.json"


def test_aws_spot_carries_the_advisor_bucket(server: LoopbackServer) -> None:
    server.route("/spot.js", Reply.file(DATA / "aws" / "spot.js"))
    server.route("/spot-advisor-data.json", Reply.file(ADVISOR))
    messages: list[str] = []
    table = fetch_prices(
        "aws-spot", server.url_for("/spot.js"), settings=FAST, progress=messages.append
    )
    assert len(server.requests_to("/spot-advisor-data.json")) == 1
    # the sample's r is 2 everywhere (a placeholder): ranges[2].label
    assert set(table["spot_interruption"]) == {"10-15%"}
    assert "16 GPU spot prices, 16 with an interruption bucket" in messages[-1]
    assert validate_prices(table).ok


def test_aws_spot_advisor_beside_a_mirror_base(server: LoopbackServer) -> None:
    server.route("/mirror/spot.json", Reply.file(DATA / "aws" / "spot.json"))
    advisor = json.loads(ADVISOR.read_text(encoding="utf-8"))
    advisor["spot_advisor"]["us-east-1"]["Linux"]["p4d.24xlarge"]["r"] = 0
    del advisor["spot_advisor"]["eu-central-1"]
    advisor["spot_advisor"]["us-west-2"]["Linux"]["m5.large"] = {"s": 50, "r": 99}  # not a GPU
    server.route("/mirror/spot-advisor-data.json", Reply.json(advisor))
    table = fetch_prices("aws-spot", server.url_for("/mirror"), settings=FAST, progress=quiet)
    buckets = table.set_index(["region", "instance_type"])["spot_interruption"]
    assert buckets[("us-east-1", "p4d.24xlarge")] == "<5%"
    assert buckets[("us-west-2", "p5.48xlarge")] == "10-15%"
    assert buckets[("eu-central-1", "p3.2xlarge")] is None  # the advisor does not list it


def test_aws_spot_without_an_advisor_keeps_prices_and_says_so(server: LoopbackServer) -> None:
    server.route("/spot.json", Reply.file(DATA / "aws" / "spot.json"))  # the advisor: 404
    messages: list[str] = []
    table = fetch_prices(
        "aws-spot", server.url_for("/spot.json"), settings=FAST, progress=messages.append
    )
    assert len(table) == 16 and table["spot_interruption"].isna().all()
    assert any("spot advisor unavailable" in m and "404" in m for m in messages)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<html>maintenance</html>", "not the spot advisor's JSON"),
        ('{"ranges": [{"index": 0, "label": "<5%"}], "spot_advisor": '
         '{"us-east-1": {"Linux": {"p4d.24xlarge": {"s": 60, "r": 7}}}}}', "not a range index"),
        ('{"ranges": "none", "spot_advisor": {}}', "no ranges list"),
    ],
)  # fmt: skip
def test_aws_spot_malformed_advisor(server: LoopbackServer, body: str, message: str) -> None:
    server.route("/spot.json", Reply.file(DATA / "aws" / "spot.json"))
    server.route("/spot-advisor-data.json", Reply.text(body))
    with pytest.raises(MalformedResponse, match=message) as caught:
        fetch_prices("aws-spot", server.url_for("/spot.json"), settings=FAST, progress=quiet)
    assert caught.value.url.endswith("/spot-advisor-data.json")


def test_aws_spot_advisor_url_is_checked_like_the_feed() -> None:
    with pytest.raises(InsecureUrl):
        get_source("aws-spot", advisor_url="http://spot-bid-advisor.example/advisor.json")


def catalog_routes(server: LoopbackServer) -> None:
    for cloud, files in SNAPSHOT_FILES.items():
        text = "".join(
            snapshot_text(name) if i == 0 else snapshot_text(name).split("\n", 1)[1]
            for i, name in enumerate(files)
        )  # gcp: accelerator and host rows in one vms.csv, as upstream
        server.route(f"/v8/{cloud}/vms.csv", Reply.text(text, content_type="text/csv"))


def test_skypilot_catalog_over_http_matches_snapshot(server: LoopbackServer) -> None:
    catalog_routes(server)
    live = fetch_prices("skypilot-catalog", server.url_for("/v8"), settings=FAST, progress=quiet)
    snapshot = fetch_prices("snapshot", progress=quiet)
    columns = ["cloud", "region", "zone", "instance_type", "gpu", "gpus_per_instance",
               "price_per_hour", "spot_price_per_hour"]  # fmt: skip
    pd.testing.assert_frame_equal(live[columns], snapshot[columns])
    assert set(live["source"]) == {"skypilot-catalog"}
    assert len(server.requests) == len(SNAPSHOT_FILES)


def test_skypilot_catalog_truncated_csv(server: LoopbackServer) -> None:
    text = snapshot_text("aws.csv")
    cut = text[: text.index("\n", 5000) + 20]  # ends mid-row
    server.route("/v8/aws/vms.csv", Reply.text(cut, content_type="text/csv"))
    with pytest.raises(MalformedResponse, match="newline") as caught:
        fetch_prices(
            "skypilot-catalog", server.url_for("/v8"), clouds=["aws"], settings=FAST, progress=quiet
        )
    assert caught.value.url.endswith("/v8/aws/vms.csv")


def test_skypilot_catalog_short_row(server: LoopbackServer) -> None:
    text = snapshot_text("aws.csv")
    cut = text[: text.index("\n", 5000) + 20] + "\n"
    server.route("/v8/aws/vms.csv", Reply.text(cut, content_type="text/csv"))
    with pytest.raises(MalformedResponse, match=r"fields, expected 10 \(truncated\?\)"):
        fetch_prices(
            "skypilot-catalog", server.url_for("/v8"), clouds=["aws"], settings=FAST, progress=quiet
        )


def test_skypilot_catalog_broken_transfer(server: LoopbackServer) -> None:
    body = snapshot_text("aws.csv").encode()
    server.route("/v8/aws/vms.csv", Reply(body=body, truncate_to_bytes=len(body) // 2))
    with pytest.raises(MalformedResponse, match="truncated"):
        fetch_prices(
            "skypilot-catalog", server.url_for("/v8"), clouds=["aws"], settings=FAST, progress=quiet
        )


def test_skypilot_catalog_404_names_source_and_url(server: LoopbackServer) -> None:
    with pytest.raises(HttpStatusError) as caught:
        fetch_prices(
            "skypilot-catalog", server.url_for("/v8"), clouds=["oci"], settings=FAST, progress=quiet
        )
    assert str(caught.value).startswith("skypilot-catalog: HTTP 404")
    assert "/v8/oci/vms.csv" in str(caught.value)
