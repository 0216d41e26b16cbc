"""The shared HTTP client against a real loopback server: retries, timeouts, caps, URL rules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tasks.prices.errors import (
    HttpStatusError,
    InsecureUrl,
    MalformedResponse,
    PagingError,
    ResponseTooLarge,
    SourceTimeout,
    SourceUnreachable,
    redact_url,
)
from tasks.prices.http import (
    HttpClient,
    HttpSettings,
    PageGuard,
    check_url,
    parse_retry_after,
    rebase_link,
)
from tests.support.http_server import LoopbackServer, Reply

FAST = HttpSettings(
    connect_timeout_s=0.5,
    read_timeout_s=0.3,
    response_deadline_s=2.0,
    max_attempts=3,
    backoff_initial_s=0.01,
    backoff_max_s=0.02,
    retry_after_max_s=5.0,
    max_response_bytes=100_000,
    max_pages=5,
)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


class SleepRecorder:
    def __init__(self) -> None:
        self.waits_s: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits_s.append(seconds)


def client(settings: HttpSettings = FAST, sleep: SleepRecorder | None = None) -> HttpClient:
    return HttpClient(
        "test-source", settings, sleep=sleep or SleepRecorder(), progress=lambda _: None
    )


def test_plain_get_sends_user_agent(server: LoopbackServer) -> None:
    server.route("/a", Reply.text("hello"))
    assert client().get_text(server.url_for("/a")) == "hello"
    assert server.requests_to("/a")[0].headers["user-agent"].startswith("replan")


def test_500_then_success_retries(server: LoopbackServer) -> None:
    server.route("/a", Reply.status_only(500), Reply.status_only(503), Reply.text("ok"))
    sleep = SleepRecorder()
    assert client(sleep=sleep).get_text(server.url_for("/a")) == "ok"
    assert len(server.requests_to("/a")) == 3
    assert len(sleep.waits_s) == 2 and all(0 < wait <= FAST.backoff_max_s for wait in sleep.waits_s)


def test_500_forever_gives_typed_error_after_max_attempts(server: LoopbackServer) -> None:
    server.route("/a", Reply.status_only(502))
    with pytest.raises(HttpStatusError) as caught:
        client().get_bytes(server.url_for("/a"))
    assert caught.value.status == 502
    assert caught.value.source == "test-source"
    assert "/a" in caught.value.url and "HTTP 502" in str(caught.value)
    assert len(server.requests_to("/a")) == FAST.max_attempts


def test_429_honours_retry_after_seconds(server: LoopbackServer) -> None:
    server.route("/a", Reply.status_only(429, retry_after="2"), Reply.text("ok"))
    sleep = SleepRecorder()
    assert client(sleep=sleep).get_text(server.url_for("/a")) == "ok"
    assert sleep.waits_s == [2.0]


def test_429_honours_retry_after_http_date(server: LoopbackServer) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    server.route("/a", Reply.status_only(429, retry_after=when), Reply.text("ok"))
    sleep = SleepRecorder()
    client(sleep=sleep).get_text(server.url_for("/a"))
    assert len(sleep.waits_s) == 1 and 1.0 <= sleep.waits_s[0] <= 3.0


def test_429_with_retry_after_beyond_cap_fails_at_once(server: LoopbackServer) -> None:
    server.route("/a", Reply.status_only(429, retry_after="3600"))
    sleep = SleepRecorder()
    with pytest.raises(HttpStatusError, match="Retry-After 3600 s exceeds"):
        client(sleep=sleep).get_bytes(server.url_for("/a"))
    assert sleep.waits_s == [] and len(server.requests_to("/a")) == 1


def test_429_real_sleep_is_short(server: LoopbackServer) -> None:
    server.route("/a", Reply.status_only(429, retry_after="0"), Reply.text("ok"))
    started = time.monotonic()
    assert HttpClient("s", FAST, progress=lambda _: None).get_text(server.url_for("/a")) == "ok"
    assert time.monotonic() - started < 1.0


def test_404_is_permanent(server: LoopbackServer) -> None:
    with pytest.raises(HttpStatusError) as caught:
        client().get_bytes(server.url_for("/missing"))
    assert caught.value.status == 404
    assert len(server.requests_to("/missing")) == 1


def test_read_timeout_before_headers(server: LoopbackServer) -> None:
    server.route("/slow", Reply.text("late", delay_s=5.0))
    started = time.monotonic()
    with pytest.raises(SourceTimeout, match="read timeout"):
        client().get_bytes(server.url_for("/slow"))
    assert (
        time.monotonic() - started < 4.5
    )  # 3 tries x 0.3 s and a busy box; without the timeout: 3 x 5 s
    assert len(server.requests_to("/slow")) == FAST.max_attempts


def test_read_timeout_then_success(server: LoopbackServer) -> None:
    server.route("/slow", Reply.text("late", delay_s=5.0), Reply.text("ok"))
    assert client().get_text(server.url_for("/slow")) == "ok"


def test_stall_mid_body_is_a_timeout(server: LoopbackServer) -> None:
    server.route("/stall", Reply.sized(50_000, stall_after_bytes=1_000, stall_s=5.0))
    with pytest.raises(SourceTimeout, match="stalled"):
        client().get_bytes(server.url_for("/stall"))


def test_oversized_body_with_content_length(server: LoopbackServer) -> None:
    server.route("/big", Reply.sized(FAST.max_response_bytes + 1))
    with pytest.raises(ResponseTooLarge, match="Content-Length"):
        client().get_bytes(server.url_for("/big"))
    assert len(server.requests_to("/big")) == 1


def test_oversized_chunked_body_is_cut_while_streaming(server: LoopbackServer) -> None:
    server.route("/big", Reply.sized(5 * FAST.max_response_bytes, chunked=True))
    with pytest.raises(ResponseTooLarge, match="exceeds the cap"):
        client().get_bytes(server.url_for("/big"))


def test_body_at_cap_is_fine(server: LoopbackServer) -> None:
    server.route("/edge", Reply.sized(FAST.max_response_bytes))
    assert len(client().get_bytes(server.url_for("/edge"))) == FAST.max_response_bytes


def test_truncated_transfer_is_malformed(server: LoopbackServer) -> None:
    server.route("/cut", Reply.sized(10_000, truncate_to_bytes=4_000))
    with pytest.raises(MalformedResponse, match="truncated"):
        client().get_bytes(server.url_for("/cut"))
    assert len(server.requests_to("/cut")) == FAST.max_attempts


def test_connection_refused_is_unreachable() -> None:
    with LoopbackServer() as stopped:
        url = stopped.url_for("/gone")
    with pytest.raises(SourceUnreachable):
        client().get_bytes(url)


def test_redirect_on_loopback_is_followed(server: LoopbackServer) -> None:
    server.route("/old", Reply(status=302, headers={"Location": "/new"}))
    server.route("/new", Reply.text("moved"))
    assert client().get_text(server.url_for("/old")) == "moved"


def test_redirect_to_plain_http_elsewhere_is_refused(server: LoopbackServer) -> None:
    server.route("/old", Reply(status=302, headers={"Location": "http://example.com/x"}))
    with pytest.raises(InsecureUrl):
        client().get_bytes(server.url_for("/old"))


@pytest.mark.parametrize(
    "url",
    ["http://example.com/prices", "ftp://127.0.0.1/x", "file:///etc/passwd", "http://10.0.0.1/x"],
)
def test_insecure_urls_are_refused(url: str) -> None:
    with pytest.raises(InsecureUrl):
        check_url("s", url)


@pytest.mark.parametrize(
    "url",
    ["https://prices.azure.com/x", "http://127.0.0.1:9/x", "http://127.8.9.1/x",
     "http://localhost:80/x", "http://[::1]:8080/x"],
)  # fmt: skip
def test_secure_or_loopback_urls_pass(url: str) -> None:
    assert check_url("s", url) == url


def test_error_messages_redact_secrets() -> None:
    url = "https://user:pw@api.example.com/p?region=x&api_key=abc123&sig=zzz&token=t0k"
    redacted = redact_url(url)
    assert "abc123" not in redacted and "zzz" not in redacted and "t0k" not in redacted
    assert "pw" not in redacted and "region=x" in redacted
    error = HttpStatusError("s", url, "HTTP 500", 500)
    assert "abc123" not in str(error) and "REDACTED" in str(error)


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 01 Jan 2025 00:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Tue, 31 Dec 2024 00:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_rebase_link_moves_documented_origin_to_configured_base() -> None:
    link = "https://prices.azure.com/api/retail/prices?$filter=x&$skip=6"
    rebased = rebase_link(
        "s",
        link,
        current_url="http://127.0.0.1:5000/mirror/prices?$filter=x",
        documented_base="https://prices.azure.com/api/retail/prices",
        configured_base="http://127.0.0.1:5000/mirror/prices",
    )
    assert rebased == "http://127.0.0.1:5000/mirror/prices?$filter=x&$skip=6"


def test_rebase_link_keeps_configured_origin_and_refuses_others() -> None:
    base = "http://127.0.0.1:5000/api"
    common = {
        "current_url": base,
        "documented_base": "https://prices.azure.com/api",
        "configured_base": base,
    }
    assert rebase_link("s", "/api?page=2", **common) == "http://127.0.0.1:5000/api?page=2"
    with pytest.raises(PagingError, match="leaves the configured origin"):
        rebase_link("s", "https://evil.example.com/api?$skip=6", **common)
    with pytest.raises(PagingError):
        rebase_link("s", "http://127.0.0.1:5001/api", **common)


def test_page_guard_stops_loops_and_caps_pages() -> None:
    guard = PageGuard("s", max_pages=2)
    guard.before("u1")
    guard.after("u1", b"one")
    with pytest.raises(PagingError, match="loop"):
        guard.before("u1")
    guard.before("u2")
    with pytest.raises(PagingError, match="repeats an earlier page"):
        guard.after("u2", b"one")
    with pytest.raises(PagingError, match="more than 2 pages"):
        guard.before("u3")


def test_server_records_posts_for_other_users(server: LoopbackServer) -> None:
    server.route("/hook", Reply.status_only(500), Reply.json({"ok": True}), method="POST")
    import requests

    first = requests.post(server.url_for("/hook?x=1"), json={"text": "hi"}, timeout=2)
    second = requests.post(server.url_for("/hook"), json={"text": "again"}, timeout=2)
    assert (first.status_code, second.status_code) == (500, 200)
    recorded = server.requests_to("/hook", method="POST")
    assert [r.json()["text"] for r in recorded] == ["hi", "again"]
    assert (
        recorded[0].query == {"x": ["1"]}
        and recorded[0].headers["content-type"] == "application/json"
    )
