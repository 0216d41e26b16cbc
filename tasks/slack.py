"""Post to a Slack incoming webhook: Block Kit within Slack's limits, retries, no URL leaks.

The webhook URL's path is the secret. It lives in `SlackWebhookUrl`, whose `str`/`repr` are
redacted; errors say "the Slack webhook" and never chain the `requests` exception (whose text
holds the URL); urllib3's debug log lines are redacted while a post is under way.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

logger = logging.getLogger(__name__)

WEBHOOK_URL_ENV = "REPLAN_SLACK_WEBHOOK_URL"
WEBHOOK_SECRET_BLOCK = "replan-slack-webhook"

MAX_SECTION_CHARS = 3000
MAX_HEADER_CHARS = 150
MAX_FIELD_CHARS = 2000
MAX_FIELDS_PER_SECTION = 10
MAX_BLOCKS = 50
MAX_IMAGE_URL_CHARS = 3000
MAX_IMAGE_ALT_CHARS = 2000
MAX_FALLBACK_CHARS = 3000
PERMANENT_STATUSES = frozenset({400, 403, 404, 410})
_ELLIPSIS = "…"
_FENCE = "```"


class SlackWebhookUrl:
    """The webhook URL, redacted in `str`, `repr` and f-strings; read it with `reveal()`."""

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("the Slack webhook URL must be an http(s) URL")
        self._url = url

    def reveal(self) -> str:
        """The URL itself: pass it to `requests`, never to a log or a message."""
        return self._url

    def __repr__(self) -> str:
        return "SlackWebhookUrl('***')"

    __str__ = __repr__

    def __format__(self, _spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> Any:
        raise TypeError("a SlackWebhookUrl is not serialisable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlackWebhookUrl) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)


class SlackError(RuntimeError):
    """Slack did not accept the message."""

    def __init__(self, message: str, *, status_code: int | None, attempts: int) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.attempts = attempts


class SlackPermanentError(SlackError):
    """Slack refused the message for good (400/403/404/410, other 4xx): do not retry."""


class SlackTransientError(SlackError):
    """Slack stayed unavailable (429, 5xx, network) through every attempt: retry later."""


@dataclass(frozen=True)
class SlackResult:
    """A delivered message: Slack answered 200."""

    status_code: int
    attempts: int
    elapsed_s: float


# -- where the URL comes from -------------------------------------------------------------


def webhook_url_from_settings() -> SlackWebhookUrl | None:
    """`$REPLAN_SLACK_WEBHOOK_URL`, else the Prefect Secret block `replan-slack-webhook`.

    The Secret block is read only when a Prefect API is configured or a flow run is under way,
    so plain unit tests need no server. Returns None when neither is set.
    """
    from_env = os.environ.get(WEBHOOK_URL_ENV, "").strip()
    if from_env:
        return SlackWebhookUrl(from_env)
    if not _prefect_api_available():
        return None
    from prefect.blocks.system import Secret

    try:
        secret = Secret.load(WEBHOOK_SECRET_BLOCK)
    except ValueError:  # no such block
        logger.info("no Prefect Secret block %r", WEBHOOK_SECRET_BLOCK)
        return None
    value = secret.get()
    return SlackWebhookUrl(str(value).strip()) if value else None


def _prefect_api_available() -> bool:
    """True when PREFECT_API_URL is set or we run inside a Prefect flow or task run."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    try:
        from prefect.context import FlowRunContext, TaskRunContext
        from prefect.settings import get_current_settings
    except ImportError:
        return False
    if get_current_settings().api.url:
        return True
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


# -- the message --------------------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack's text fields give meaning to."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit_chars: int) -> str:
    """At most `limit_chars` characters, ending with an ellipsis when cut."""
    return text if len(text) <= limit_chars else text[: limit_chars - 1] + _ELLIPSIS


def split_section_text(text: str, limit_chars: int = MAX_SECTION_CHARS) -> list[str]:
    """Split mrkdwn into chunks of at most `limit_chars`, at line breaks where possible.

    A code block cut in two is closed at the end of one chunk and reopened in the next.
    """
    reserve = len(_FENCE) + 1  # room to close a fence cut in two
    budget = limit_chars - 2 * reserve
    if budget < 1:
        raise ValueError("limit_chars too small")
    chunks: list[str] = []
    current = ""
    in_fence = False
    for line in _bounded_lines(text, budget):
        piece = line if not current else "\n" + line
        if current and len(current) + len(piece) > budget:
            chunks.append(current + ("\n" + _FENCE if in_fence else ""))
            current = (_FENCE + "\n" if in_fence else "") + line
        else:
            current += piece
        if line.count(_FENCE) % 2 == 1:
            in_fence = not in_fence
    if current or not chunks:
        chunks.append(current)
    return chunks


def _bounded_lines(text: str, max_chars: int) -> list[str]:
    """The text's lines, each cut into pieces of at most `max_chars`."""
    lines: list[str] = []
    for line in text.split("\n"):
        while len(line) > max_chars:
            lines.append(line[:max_chars])
            line = line[max_chars:]
        lines.append(line)
    return lines


def build_message(
    title: str,
    sections: Sequence[str],
    *,
    fields: Mapping[str, str] | None = None,
    fallback_text: str | None = None,
    footer: str | None = None,
    images: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """A Block Kit payload: header, fields, mrkdwn sections, images, footer, a plain `text`.

    Sections longer than 3,000 characters are split; past 50 blocks the rest is dropped and
    the last block says how many were left out. `fallback_text` (default: the title) shows in
    notifications and clients that cannot render blocks. `images` are (public https URL, alt
    text): an incoming webhook cannot upload a file, so Slack must fetch the image itself;
    other URLs are left out.
    """
    head: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(title, MAX_HEADER_CHARS)},
        }
    ]
    field_items = list((fields or {}).items())
    for start in range(0, len(field_items), MAX_FIELDS_PER_SECTION):
        head.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": truncate(f"*{name}*\n{value}", MAX_FIELD_CHARS)}
                    for name, value in field_items[start : start + MAX_FIELDS_PER_SECTION]
                ],
            }
        )
    body = [
        _section(chunk) for text in sections if text.strip() for chunk in split_section_text(text)
    ]
    tail: list[dict[str, Any]] = [
        {
            "type": "image",
            "image_url": url,
            "alt_text": truncate(alt or "image", MAX_IMAGE_ALT_CHARS),
        }
        for url, alt in images
        if url.startswith(("https://", "http://")) and len(url) <= MAX_IMAGE_URL_CHARS
    ]
    if footer:
        tail.append({"type": "context", "elements": [_mrkdwn(truncate(footer, MAX_SECTION_CHARS))]})
    room = MAX_BLOCKS - len(head) - len(tail)
    if len(body) > room:
        omitted = len(body) - (room - 1)
        body = [
            *body[: room - 1],
            _section(f"_{omitted} more section(s) left out: see the report._"),
        ]
    return {
        "text": truncate(fallback_text or title, MAX_FALLBACK_CHARS),
        "blocks": [*head, *body, *tail][:MAX_BLOCKS],
    }


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


# -- posting ------------------------------------------------------------------------------


def post_to_slack(
    url: SlackWebhookUrl,
    payload: Mapping[str, Any],
    *,
    timeout_s: float = 10.0,
    max_attempts: int = 4,
    backoff_s: float = 1.0,
    max_retry_after_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> SlackResult:
    """POST the payload to the webhook; retry 429 (after `Retry-After`), 5xx and network errors.

    Success is what Slack's own SDK calls success: HTTP 200 with the body `ok`. Each attempt
    ends within `timeout_s` of wall-clock time whatever the peer does (a body dripping a byte a
    second included). Raises `SlackPermanentError` on 400/403/404/410 and other non-retryable
    answers, `SlackTransientError` once `max_attempts` are spent, when Slack asks to wait longer
    than `max_retry_after_s`, or when a 200 does not say `ok` (the publication stays pending). A
    timed-out post may have reached Slack: a retry can then repeat it.
    """
    if not isinstance(url, SlackWebhookUrl):
        raise TypeError("pass the webhook URL as a SlackWebhookUrl")
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    started = time.monotonic()
    status_code: int | None = None
    problem = ""
    from tasks.prices.http import watched_session  # cut by a wall-clock deadline

    with _redacted_in_logs(url.reveal()), watched_session() as session:
        for attempt in range(1, max_attempts + 1):
            wait_s = backoff_s * 2 ** (attempt - 1)
            answer = _post_once(session, url, payload, timeout_s)
            status_code, body, problem = answer.status_code, answer.body, answer.problem
            if status_code is not None and not problem:
                shown = truncate(body.strip(), 200)
                if status_code == 200 and body.strip() == SLACK_OK_BODY:
                    elapsed_s = time.monotonic() - started
                    logger.info("Slack accepted the message (attempt %d)", attempt)
                    return SlackResult(status_code, attempt, elapsed_s)
                problem = f"the Slack webhook answered {status_code} {shown!r}"
                if status_code == 200:
                    raise SlackTransientError(
                        f"{problem}, not {SLACK_OK_BODY!r}: not counted as posted",
                        status_code=status_code,
                        attempts=attempt,
                    )
                if status_code == 429:
                    retry_after_s = _retry_after_s(answer.headers, default_s=wait_s)
                    if retry_after_s > max_retry_after_s:
                        raise SlackTransientError(
                            f"{problem}: asked to wait {retry_after_s:g} s,"
                            f" more than {max_retry_after_s:g} s",
                            status_code=status_code,
                            attempts=attempt,
                        )
                    wait_s = retry_after_s
                elif status_code < 500:
                    raise SlackPermanentError(problem, status_code=status_code, attempts=attempt)
            if attempt < max_attempts:
                logger.warning(
                    "%s (attempt %d of %d); retrying in %.3g s",
                    problem,
                    attempt,
                    max_attempts,
                    wait_s,
                )
                sleep(wait_s)
    raise SlackTransientError(
        f"{problem} after {max_attempts} attempt(s)", status_code=status_code, attempts=max_attempts
    )


SLACK_OK_BODY = "ok"
MAX_ANSWER_BYTES = 64 * 1024  # Slack answers `ok` or a short error code


@dataclass(frozen=True)
class _Answer:
    status_code: int | None
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    problem: str = ""  # set when no complete answer arrived


def _post_once(
    session: requests.Session, url: SlackWebhookUrl, payload: Mapping[str, Any], timeout_s: float
) -> _Answer:
    """One POST whose answer (status and body) is read within `timeout_s` of wall-clock time."""
    from tasks.prices.http import DeadlineWatch

    deadline = time.monotonic() + timeout_s
    with DeadlineWatch(deadline) as watch:
        answer = _exchange(session, url, payload, timeout_s, deadline)
    if watch.fired and answer.problem and "within" not in answer.problem:
        problem = f"{answer.problem}: no complete answer within {timeout_s:g} s"
        return _Answer(answer.status_code, problem=problem)
    return answer


def _exchange(
    session: requests.Session,
    url: SlackWebhookUrl,
    payload: Mapping[str, Any],
    timeout_s: float,
    deadline: float,
) -> _Answer:
    from tasks.prices.http import BodyDeadline, BodyError, read_body

    try:
        response = session.post(
            url.reveal(), json=payload, timeout=timeout_s, allow_redirects=False, stream=True
        )
    except requests.RequestException as exc:
        return _Answer(None, problem=f"could not reach the Slack webhook ({type(exc).__name__})")
    with response:
        try:
            raw = read_body(
                response, deadline=deadline, max_bytes=MAX_ANSWER_BYTES, read_timeout_s=timeout_s
            )
        except BodyDeadline:
            return _Answer(
                response.status_code,
                problem=f"the Slack webhook answered {response.status_code} but its body did not"
                f" end within {timeout_s:g} s",
            )
        except BodyError as exc:
            return _Answer(
                response.status_code,
                problem=f"the Slack webhook answered {response.status_code} but reading its body"
                f" failed ({type(exc).__name__})",
            )
        return _Answer(response.status_code, raw.decode("utf-8", "replace"), dict(response.headers))


def _retry_after_s(headers: Mapping[str, str], *, default_s: float) -> float:
    """The `Retry-After` header in seconds (Slack sends whole seconds), else `default_s`."""
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except ValueError:
        return default_s


# -- keeping the URL out of logs ----------------------------------------------------------

_secrets_lock = threading.Lock()
_active_secrets: dict[str, int] = {}


class _RedactSecrets(logging.Filter):
    """Rewrites records of urllib3/requests loggers that mention a webhook being posted to."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _secrets_lock:
            secrets = sorted(_active_secrets, key=len, reverse=True)
        if not secrets:
            return True
        message = record.getMessage()
        if any(secret in message for secret in secrets):
            for secret in secrets:
                message = message.replace(secret, "<the Slack webhook>")
            record.msg, record.args = message, None
        return True


_FILTER = _RedactSecrets()
for _name in ("urllib3", "urllib3.connectionpool", "urllib3.util.retry", "requests"):
    logging.getLogger(_name).addFilter(_FILTER)


class _redacted_in_logs:
    """While active, urllib3/requests log lines carrying the URL or its path are redacted."""

    def __init__(self, url: str) -> None:
        path = re.sub(r"^[a-z]+://[^/]*", "", url)
        self._secrets = [s for s in (url, path) if len(s) > 1]

    def __enter__(self) -> None:
        with _secrets_lock:
            for secret in self._secrets:
                _active_secrets[secret] = _active_secrets.get(secret, 0) + 1

    def __exit__(self, *_exc: object) -> None:
        with _secrets_lock:
            for secret in self._secrets:
                _active_secrets[secret] -= 1
                if not _active_secrets[secret]:
                    del _active_secrets[secret]
