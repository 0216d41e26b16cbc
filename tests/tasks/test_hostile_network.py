"""Hostile peers on loopback: origin escapes through parser differentials, dripping bodies,
Slack answers that are not `ok`. 127.0.0.2 plays "another host"."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tasks.prices import AwsSpotSource, AzureRetailSource
from tasks.prices.errors import InsecureUrl, MalformedResponse, PagingError, SourceTimeout
from tasks.prices.http import HttpClient, HttpSettings, check_url, rebase_link
from tasks.slack import SlackError, SlackTransientError, SlackWebhookUrl, post_to_slack
from tests.support.http_server import LoopbackServer, Reply

FAST = HttpSettings(
    connect_timeout_s=0.5,
    read_timeout_s=2.0,  # a busy box may take a while to schedule the server thread
    response_deadline_s=2.0,
    max_attempts=2,
    backoff_initial_s=0.01,
    backoff_max_s=0.02,
    max_response_bytes=100_000,
    max_pages=5,
)
SLACK_PATH = "/services/T0/B0/hook"
PAYLOAD = {"text": "plan changed"}
SLACK_FAST = {"timeout_s": 1.0, "backoff_s": 0.01, "max_retry_after_s": 1.0}


@pytest.fixture
def own() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


@pytest.fixture
def other() -> Iterator[LoopbackServer]:
    with LoopbackServer(host="127.0.0.2") as running:
        yield running


def _hostport(server: LoopbackServer) -> str:
    return server.url.removeprefix("http://")


def _client(settings: HttpSettings = FAST) -> HttpClient:
    return HttpClient("test-source", settings, sleep=lambda _: None, progress=lambda _: None)


def _page(link: str | None) -> Reply:
    return Reply.json({"Items": [], "NextPageLink": link})


# --- origin: one parser, the client's ------------------------------------------------------


def _escaping_links(own: LoopbackServer, other: LoopbackServer) -> list[str]:
    o, x = _hostport(own), _hostport(other)
    return [
        f"http://{x}\\@{o}/api/retail/prices?page=2",  # requests connects to x, urlsplit says o
        f"http://{x}\\\\@{o}/api/retail/prices?page=2",
        f"http://{o}@{x}/api/retail/prices?page=2",  # user info
        f"http://user:pw@{o}/api/retail/prices?page=2",  # user info, same host: still refused
        f"/\\{x}/api/retail/prices?page=2",  # browsers read /\ as //
        f"\\\\{x}/api/retail/prices?page=2",
        f"http://{o}/api/retail/prices?page=2\r\nHost: {x}",  # control characters
        f"http://{o}\t/api/retail/prices?page=2",
        f"http://{x} @{o}/api/retail/prices?page=2",  # a space in the authority
        f"http://{x.split(':')[0]}。{o}/api",  # non-ASCII dot
        f"//{x}/api/retail/prices?page=2",  # scheme-relative: plainly another origin
    ]


def test_next_page_link_escape_reaches_no_other_host(
    own: LoopbackServer, other: LoopbackServer
) -> None:
    base = own.url_for("/api/retail/prices")
    for link in _escaping_links(own, other):
        own.route("/api/retail/prices", _page(link))
        other.route("/api/retail/prices", _page(None))
        source = AzureRetailSource(base, regions=["eastus"], settings=FAST, client=_client())
        with pytest.raises(PagingError) as caught:
            source.fetch()
        assert "next-page link" in str(caught.value), link
    assert other.requests == []


def test_backslash_link_differential_is_what_requests_connects_to(
    own: LoopbackServer, other: LoopbackServer
) -> None:
    """The case the issue found: the old check read the host after `@`, requests before `\\`."""
    base = own.url_for("/api")
    link = f"http://{_hostport(other)}\\@{_hostport(own)}/api?page=2"
    with pytest.raises(PagingError, match="ambiguous character"):
        rebase_link(
            "s", link, current_url=base, documented_base="https://x.example/api",
            configured_base=base,
        )  # fmt: skip


def test_same_origin_links_still_followed(own: LoopbackServer) -> None:
    base = own.url_for("/api/retail/prices")
    own.route(
        "/api/retail/prices",
        lambda request: _page(None) if "page" in request.query else _page(base + "?page=2"),
    )
    source = AzureRetailSource(base, regions=["eastus"], settings=FAST, client=_client())
    assert source.fetch().empty
    assert len(own.requests_to("/api/retail/prices")) == 2


def test_spaces_in_a_next_page_query_are_sent_encoded() -> None:
    base = "http://127.0.0.1:5000/api"
    link = "https://prices.azure.com/api?$filter=a eq 'b'&$skip=6"
    rebased = rebase_link(
        "s", link, current_url=base, documented_base="https://prices.azure.com/api",
        configured_base=base,
    )  # fmt: skip
    assert rebased == "http://127.0.0.1:5000/api?$filter=a%20eq%20'b'&$skip=6"
    with pytest.raises(PagingError, match="ambiguous"):
        rebase_link(
            "s", "https://prices.azure.com /api?x=1", current_url=base,
            documented_base="https://prices.azure.com/api", configured_base=base,
        )  # fmt: skip


@pytest.mark.parametrize(
    "location",
    [
        "http://example.com\\@{own}/x",  # plain HTTP elsewhere, disguised as loopback
        "http://{other}\\@{own}/x",
        "http://{own}@example.com/x",
        "http://u@{own}/x",
        "/x\ty",
        "/x y",
        "\\\\example.com/x",
        "https://ex%ample.com/x",
    ],
)
def test_redirect_location_is_judged_as_requests_connects(
    own: LoopbackServer, other: LoopbackServer, location: str
) -> None:
    location = location.format(own=_hostport(own), other=_hostport(other))
    own.route("/start", Reply(status=302, headers={"Location": location}))
    with pytest.raises(InsecureUrl):
        _client().get_bytes(own.url_for("/start"))
    assert other.requests == []
    assert [r.path for r in own.requests] == ["/start"]


@pytest.mark.parametrize(
    "url",
    ["http://example.com\\@127.0.0.1/x", "http://127.0.0.1@example.com/x",
     "http://127.0.0.1:1\\@127.0.0.1/x", "http://localhost\x00.example.com/x",
     "http://[::1", "http://", "HTTP://EXAMPLE.COM/x"],
)  # fmt: skip
def test_check_url_refuses_ambiguous_and_insecure(url: str) -> None:
    with pytest.raises(InsecureUrl):
        check_url("s", url)


def test_check_url_reads_scheme_and_host_case_insensitively() -> None:
    assert check_url("s", "HTTP://LocalHost:9/x") == "HTTP://LocalHost:9/x"
    assert check_url("s", "HTTPS://prices.azure.com/x") == "HTTPS://prices.azure.com/x"


# --- wall-clock deadlines ----------------------------------------------------------------


def _timed(call: object) -> float:
    started = time.monotonic()
    try:
        call()  # type: ignore[operator]
    finally:
        elapsed = time.monotonic() - started
    return elapsed


@pytest.mark.parametrize("chunked", [False, True])
def test_dripping_body_stops_at_the_deadline(own: LoopbackServer, chunked: bool) -> None:
    # One byte every 0.2 s never trips the 0.5 s read timeout; 400 bytes would take 80 s.
    own.route("/drip", Reply.sized(400, drip_s=0.2, chunked=chunked))
    settings = HttpSettings(read_timeout_s=0.5, response_deadline_s=1.5, max_attempts=3)
    started = time.monotonic()
    with pytest.raises(SourceTimeout, match=r"deadline of 1\.5 s"):
        _client(settings).get_bytes(own.url_for("/drip"))
    assert time.monotonic() - started < 1.5 + 0.7
    assert len(own.requests_to("/drip")) == 1  # a deadline overrun is not retried


def test_a_single_read_cannot_block_past_the_deadline(own: LoopbackServer) -> None:
    # The read timeout (5 s) is longer than the deadline (1 s): the socket wait is cut.
    own.route("/stall", Reply.sized(1000, stall_after_bytes=10, stall_s=10.0))
    settings = HttpSettings(read_timeout_s=5.0, response_deadline_s=1.0, max_attempts=1)
    started = time.monotonic()
    with pytest.raises(SourceTimeout, match="deadline"):
        _client(settings).get_bytes(own.url_for("/stall"))
    assert time.monotonic() - started < 1.0 + 0.7


def test_dripping_aws_feed_gives_a_timeout_not_a_hang(own: LoopbackServer) -> None:
    own.route("/spot.json", Reply.text('{"config": {"regions": []}}' * 20, drip_s=0.2))
    settings = HttpSettings(read_timeout_s=0.5, response_deadline_s=1.0, max_attempts=1)
    source = AwsSpotSource(own.url_for("/spot.json"), settings=settings, progress=lambda _: None)
    started = time.monotonic()
    with pytest.raises(SourceTimeout):
        source.fetch()
    assert time.monotonic() - started < 1.0 + 0.7


def test_dripping_headers_stop_at_the_deadline(own: LoopbackServer) -> None:
    # The status line and headers arrive a byte every 0.2 s: each read beats the read timeout.
    own.route("/slow-head", Reply.text("ok", header_drip_s=0.2))
    settings = HttpSettings(read_timeout_s=0.5, response_deadline_s=1.0, max_attempts=3)
    started = time.monotonic()
    with pytest.raises(SourceTimeout, match="deadline"):
        _client(settings).get_bytes(own.url_for("/slow-head"))
    assert time.monotonic() - started < 1.0 + 0.7
    assert len(own.requests_to("/slow-head")) == 1


def test_the_watch_does_not_cut_a_healthy_keep_alive_session(own: LoopbackServer) -> None:
    own.route("/ok", Reply.text("fine"))
    client = _client(HttpSettings(response_deadline_s=0.3))
    for _ in range(3):
        assert client.get_text(own.url_for("/ok")) == "fine"
        time.sleep(0.35)  # past the previous call's deadline: its timer must be cancelled


def test_fast_body_is_read_whole(own: LoopbackServer) -> None:
    own.route("/ok", Reply.sized(90_000))
    assert len(_client().get_bytes(own.url_for("/ok"))) == 90_000


# --- Slack: only 200 `ok` is a post; every answer read by a deadline ----------------------


@pytest.fixture
def hook(own: LoopbackServer) -> SlackWebhookUrl:
    return SlackWebhookUrl(own.url_for(SLACK_PATH))


@pytest.mark.parametrize(
    "body", ["", "OK!", "not ok", "<html>captive portal</html>", '{"ok": false}', "okay"]
)
def test_slack_200_without_ok_stays_pending(
    own: LoopbackServer, hook: SlackWebhookUrl, body: str
) -> None:
    own.route(SLACK_PATH, Reply.text(body), method="POST")
    with pytest.raises(SlackTransientError, match="not counted as posted") as caught:
        post_to_slack(hook, PAYLOAD, **SLACK_FAST)
    assert isinstance(caught.value, SlackError) and caught.value.status_code == 200
    assert "T0" not in str(caught.value)


def test_slack_200_ok_with_newline_is_a_post(own: LoopbackServer, hook: SlackWebhookUrl) -> None:
    own.route(SLACK_PATH, Reply.text("ok\n"), method="POST")
    assert post_to_slack(hook, PAYLOAD, **SLACK_FAST).status_code == 200


def test_slack_dripping_200_stops_at_the_deadline(
    own: LoopbackServer, hook: SlackWebhookUrl
) -> None:
    own.route(SLACK_PATH, Reply.text("ok" + " " * 200, drip_s=0.2), method="POST")
    started = time.monotonic()
    with pytest.raises(SlackTransientError, match="within 1 s"):
        post_to_slack(hook, PAYLOAD, max_attempts=1, **SLACK_FAST)
    assert time.monotonic() - started < 1.0 + 0.7
    started = time.monotonic()
    with pytest.raises(SlackTransientError):
        post_to_slack(hook, PAYLOAD, max_attempts=2, **SLACK_FAST)
    assert time.monotonic() - started < 2 * 1.0 + 0.7


def test_slack_dripping_headers_stop_at_the_deadline(
    own: LoopbackServer, hook: SlackWebhookUrl
) -> None:
    own.route(SLACK_PATH, Reply.text("ok", header_drip_s=0.2), method="POST")
    started = time.monotonic()
    with pytest.raises(SlackTransientError, match="no complete answer within 1 s"):
        post_to_slack(hook, PAYLOAD, max_attempts=1, **SLACK_FAST)
    assert time.monotonic() - started < 1.0 + 0.7


def test_slack_huge_answer_is_not_a_post(own: LoopbackServer, hook: SlackWebhookUrl) -> None:
    own.route(SLACK_PATH, Reply.sized(1_000_000, fill=b"ok"), method="POST")
    with pytest.raises(SlackTransientError):
        post_to_slack(hook, PAYLOAD, max_attempts=1, **SLACK_FAST)


# --- JSON bodies: deep nesting is one line, not a RecursionError --------------------------


def test_deep_azure_page_is_malformed_not_recursion(own: LoopbackServer) -> None:
    own.route("/api", Reply.text("[" * 50_000 + "]" * 50_000, content_type="application/json"))
    source = AzureRetailSource(own.url_for("/api"), regions=["eastus"], settings=FAST)
    with pytest.raises(MalformedResponse, match="nested deeper than 64"):
        source.fetch()


@pytest.mark.parametrize("wrap", [lambda s: s, lambda s: f"callback({s});"])
def test_deep_aws_json_and_jsonp_is_malformed(own: LoopbackServer, wrap: object) -> None:
    body = '{"config": ' + '{"a": ' * 10_000 + "1" + "}" * 10_000 + "}"
    own.route("/spot.js", Reply.text(wrap(body)))  # type: ignore[operator]
    source = AwsSpotSource(own.url_for("/spot.js"), settings=FAST, progress=lambda _: None)
    with pytest.raises(MalformedResponse, match="nested deeper than 64"):
        source.fetch()


def test_duplicate_keys_in_a_price_page_are_named(own: LoopbackServer) -> None:
    body = '{"Items": [],\n "NextPageLink": null,\n "Items": [{"x": 1}]}'
    own.route("/api", Reply.text(body, content_type="application/json"))
    source = AzureRetailSource(own.url_for("/api"), regions=["eastus"], settings=FAST)
    with pytest.raises(MalformedResponse, match="duplicate key 'Items' \\(lines 1 and 3\\)"):
        source.fetch()


def test_cli_prices_deep_body_is_one_line_exit_2(
    own: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    own.route("/spot.json", Reply.text(json.dumps({"config": 1})[:-1] + "[" * 10_000 + "}"))
    own.route("/deep.json", Reply.text("[" * 100_000))
    assert main(["prices", "--source", "aws-spot", "--from", own.url_for("/deep.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("replan prices: aws-spot: ") and "nested deeper" in err[-1]
    assert not any("Traceback" in line for line in err)
