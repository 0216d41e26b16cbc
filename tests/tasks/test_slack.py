"""Posting to a Slack webhook served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import pickle
import time
import traceback
from collections.abc import Iterator

import pytest

from tasks import slack
from tasks.slack import (
    MAX_BLOCKS,
    MAX_SECTION_CHARS,
    SlackPermanentError,
    SlackTransientError,
    SlackWebhookUrl,
    build_message,
    post_to_slack,
    split_section_text,
    webhook_url_from_settings,
)
from tests.support.http_server import LoopbackServer, RecordedRequest, Reply

HOOK_PATH = "/services/T0SECRET/B0SECRET/xoxSECRETtoken"
PAYLOAD = build_message("Fleet plan changed", ["*+2* A100 in us-east-1"], fallback_text="changed")
FAST = {"timeout_s": 2.0, "backoff_s": 0.01, "max_retry_after_s": 1.0}


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


@pytest.fixture
def hook(server: LoopbackServer) -> SlackWebhookUrl:
    return SlackWebhookUrl(server.url_for(HOOK_PATH))


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert "SECRET" not in text, text


def test_200_posts_once(server: LoopbackServer, hook: SlackWebhookUrl) -> None:
    server.route(HOOK_PATH, Reply.text("ok"), method="POST")
    result = post_to_slack(hook, PAYLOAD, **FAST)
    assert (result.status_code, result.attempts) == (200, 1)
    (request,) = server.requests_to(HOOK_PATH)
    assert request.json() == PAYLOAD
    assert request.headers["content-type"] == "application/json"


def test_500_then_200_is_retried(server: LoopbackServer, hook: SlackWebhookUrl) -> None:
    server.route(HOOK_PATH, Reply.status_only(500), Reply.text("ok"), method="POST")
    result = post_to_slack(hook, PAYLOAD, **FAST)
    assert result.attempts == 2
    first, second = server.requests_to(HOOK_PATH)
    assert first.body == second.body


def test_429_waits_for_retry_after(server: LoopbackServer, hook: SlackWebhookUrl) -> None:
    seen_at_s: list[float] = []

    def rate_limited(_request: RecordedRequest) -> Reply:
        seen_at_s.append(time.monotonic())
        return Reply.status_only(429, retry_after="0.3")

    def accepted(_request: RecordedRequest) -> Reply:
        seen_at_s.append(time.monotonic())
        return Reply.text("ok")

    server.route(HOOK_PATH, rate_limited, accepted, method="POST")
    result = post_to_slack(hook, PAYLOAD, **FAST)
    assert result.attempts == 2
    assert seen_at_s[1] - seen_at_s[0] >= 0.3  # not the 0.01 s backoff


def test_429_asking_too_long_a_wait_gives_up(server: LoopbackServer, hook: SlackWebhookUrl) -> None:
    server.route(HOOK_PATH, Reply.status_only(429, retry_after="30"), method="POST")
    with pytest.raises(SlackTransientError, match="wait 30 s") as caught:
        post_to_slack(hook, PAYLOAD, **FAST)
    assert caught.value.status_code == 429
    assert len(server.requests_to(HOOK_PATH)) == 1


@pytest.mark.parametrize("status", [400, 403, 404, 410, 422])
def test_4xx_is_permanent_without_retry(
    server: LoopbackServer, hook: SlackWebhookUrl, status: int
) -> None:
    server.route(HOOK_PATH, Reply.text("channel_not_found", status=status), method="POST")
    with pytest.raises(SlackPermanentError) as caught:
        post_to_slack(hook, PAYLOAD, **FAST)
    assert caught.value.status_code == status and caught.value.attempts == 1
    assert "channel_not_found" in str(caught.value)
    assert len(server.requests_to(HOOK_PATH)) == 1


def test_always_500_is_transient_after_every_attempt(
    server: LoopbackServer, hook: SlackWebhookUrl
) -> None:
    server.route(HOOK_PATH, Reply.status_only(503), method="POST")
    with pytest.raises(SlackTransientError, match="after 3 attempt") as caught:
        post_to_slack(hook, PAYLOAD, **FAST, max_attempts=3)
    assert caught.value.attempts == 3
    assert len(server.requests_to(HOOK_PATH)) == 3


def test_read_timeout_is_transient(server: LoopbackServer, hook: SlackWebhookUrl) -> None:
    server.route(HOOK_PATH, Reply(delay_s=1.0), method="POST")
    with pytest.raises(SlackTransientError, match="could not reach the Slack webhook"):
        post_to_slack(hook, PAYLOAD, timeout_s=0.1, backoff_s=0.01, max_attempts=2)


def test_the_url_never_leaks(
    server: LoopbackServer,
    hook: SlackWebhookUrl,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Errors, their tracebacks and every log line (urllib3 debug included) stay URL-free."""
    caplog.set_level(logging.DEBUG)
    server.route(HOOK_PATH, Reply.status_only(500), method="POST")
    server.route(HOOK_PATH + "/gone", Reply.text("no_service", status=404), method="POST")
    unreachable = SlackWebhookUrl("http://127.0.0.1:1" + HOOK_PATH)
    errors: list[BaseException] = []
    for url in (hook, SlackWebhookUrl(server.url_for(HOOK_PATH + "/gone")), unreachable):
        with pytest.raises(slack.SlackError) as caught:
            post_to_slack(url, PAYLOAD, **FAST, max_attempts=2)
        errors.append(caught.value)
        logging.getLogger("replan").error("post failed: %s (url %s, %r)", caught.value, url, url)
    assert any("urllib3" in record.name for record in caplog.records)  # debug lines were there
    captured = capsys.readouterr()
    assert_no_secret(caplog.text, captured.out, captured.err)
    for error in errors:
        assert error.__cause__ is None and error.__context__ is None
        assert_no_secret(str(error), repr(error), "".join(traceback.format_exception(error)))


def test_the_url_wrapper_is_redacted() -> None:
    url = SlackWebhookUrl("https://hooks.slack.com" + HOOK_PATH)
    assert_no_secret(str(url), repr(url), f"{url}", f"{url!r}", f"{[url]}")
    assert url.reveal().endswith(HOOK_PATH)
    with pytest.raises(TypeError):
        pickle.dumps(url)
    with pytest.raises(TypeError):
        post_to_slack(url.reveal(), PAYLOAD)  # type: ignore[arg-type]


def test_url_from_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(slack.WEBHOOK_URL_ENV, " https://hooks.slack.com/services/T/B/X ")
    url = webhook_url_from_settings()
    assert url is not None and url.reveal() == "https://hooks.slack.com/services/T/B/X"


def test_no_url_without_env_or_prefect_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(slack.WEBHOOK_URL_ENV, raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(slack, "_prefect_api_available", lambda: False)
    assert webhook_url_from_settings() is None


# -- message --------------------------------------------------------------------------------


def test_message_has_header_fields_sections_and_fallback() -> None:
    message = build_message(
        "x" * 200,
        ["*Changes*\n+2 A100", "   "],
        fields={"Cost": "$12.30/h", "Throughput": "4,200 tokens/s"},
        fallback_text="Fleet plan changed: +2 A100",
        footer="run 42",
    )
    header, fields, section, footer = message["blocks"]
    assert header["type"] == "header" and len(header["text"]["text"]) == 150
    assert [f["text"] for f in fields["fields"]] == [
        "*Cost*\n$12.30/h",
        "*Throughput*\n4,200 tokens/s",
    ]
    assert section["text"] == {"type": "mrkdwn", "text": "*Changes*\n+2 A100"}
    assert footer["type"] == "context"
    assert message["text"] == "Fleet plan changed: +2 A100"
    json.dumps(message)


def test_long_sections_are_split_within_limits() -> None:
    lines = [f"| aws/us-east-1/A100 | replica {i:04d} | +1 |" for i in range(250)]
    long_line = "y" * 7000
    table = "```\n" + "\n".join(lines) + "\n```"
    message = build_message("Plan", [table, long_line])
    texts = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert all(len(text) <= MAX_SECTION_CHARS for text in texts)
    table_chunks = [t for t in texts if "replica" in t]
    assert len(table_chunks) >= 3
    assert all(t.startswith("```") and t.endswith("```") for t in table_chunks)
    joined = "\n".join(table_chunks).replace("\n```\n```\n", "\n")
    assert joined == table  # nothing lost, fences only added at the cuts
    assert "".join(t for t in texts if t.startswith("y")) == long_line


def test_images_need_a_url_slack_can_fetch() -> None:
    message = build_message(
        "Plan",
        ["*Changes*"],
        footer="run 1",
        images=[
            ("https://reports.example/run1/chart-tiny.png", "cost against tokens/s"),
            ("/srv/reports/run1/chart-tiny.png", "a file path Slack cannot fetch"),
        ],
    )
    kinds = [b["type"] for b in message["blocks"]]
    assert kinds == ["header", "section", "image", "context"]
    assert message["blocks"][2] == {
        "type": "image",
        "image_url": "https://reports.example/run1/chart-tiny.png",
        "alt_text": "cost against tokens/s",
    }
    assert "image" not in [b["type"] for b in build_message("Plan", ["x"])["blocks"]]


def test_too_many_sections_are_cut_to_50_blocks() -> None:
    # header + fields + 47 sections + the note = 50; 80 - 47 = 33 left out
    message = build_message("Plan", [f"section {i}" for i in range(80)], fields={"a": "b"})
    blocks = message["blocks"]
    assert len(blocks) == MAX_BLOCKS
    assert "33 more section(s) left out" in blocks[-1]["text"]["text"]


@pytest.mark.parametrize("limit", [20, 100, 3000])
def test_split_keeps_every_character(limit: int) -> None:
    text = "\n".join("z" * (i * 7 % 45) for i in range(300))
    chunks = split_section_text(text, limit)
    assert all(len(chunk) <= limit for chunk in chunks)
    assert "".join(chunks).replace("\n", "") == text.replace("\n", "")
