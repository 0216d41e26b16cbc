"""The one HTTP client every live price source uses.

- one `requests.Session`, `timeout=(connect_timeout_s, read_timeout_s)` on every call;
- retries with capped exponential backoff on 429, 5xx, timeouts, dropped connections and
  truncated bodies; a 429/503 `Retry-After` (seconds or HTTP date) is honoured, and when it asks
  for more than `retry_after_max_s` the call fails at once instead of sleeping for it;
- the body is streamed and reading stops with `ResponseTooLarge` past `max_response_bytes`
  (decoded bytes, so a gzip bomb is caught too) or `SourceTimeout` past `response_deadline_s`;
- the wall-clock `response_deadline_s` holds whatever the peer does: the body is read with
  `read1` (returns after one socket read) and the socket timeout is cut to the time left before
  every read, so a body dripping one byte a second stops at the deadline (`read_body`); a
  `DeadlineWatch` also shuts the socket down at the deadline, so dripping headers stop too.
  A deadline overrun is not retried (retrying a dripping peer multiplies the wall-clock time);
- HTTPS only, except plain HTTP to loopback (127.0.0.0/8, ::1, localhost); redirects are
  followed by hand so every hop passes the same check;
- scheme, host and port are decided by the parser `requests` itself connects with
  (`PreparedRequest.prepare_url`, i.e. urllib3's `parse_url`), never by a second parser, and a
  URL that parsers may read differently (backslash, user info `@`, control characters, spaces,
  non-ASCII) is refused outright (`target_of`);
- `PageGuard` caps the page count and stops page loops; `rebase_link` keeps next-page links
  inside the configured origin.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import ipaddress
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import requests
import requests.adapters
import urllib3
import urllib3.connection
from urllib3.exceptions import LocationParseError, ProtocolError, ReadTimeoutError
from urllib3.util import Url, parse_url

from tasks.prices.errors import (
    HttpStatusError,
    InsecureUrl,
    MalformedResponse,
    PagingError,
    PriceSourceError,
    ResponseTooLarge,
    SourceTimeout,
    SourceUnreachable,
)

logger = logging.getLogger(__name__)

USER_AGENT = "replan-prices/0.1 (+https://github.com/replan)"
_CHUNK_BYTES = 64 * 1024
_MAX_REDIRECTS = 5


@dataclass(frozen=True)
class HttpSettings:
    """Limits for one live fetch; tests shrink every wait to milliseconds."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    response_deadline_s: float = 600.0
    max_attempts: int = 4
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0
    max_response_bytes: int = 64 * 1024 * 1024
    max_pages: int = 2_000


Progress = Callable[[str], None]


def log_progress(message: str) -> None:
    """Default progress sink: the module logger."""
    logger.info(message)


def is_loopback_host(host: str | None) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Characters parsers disagree on (urllib.parse vs urllib3 vs browsers): refuse, never guess.
_AMBIGUOUS_URL_CHARS = re.compile(r"[\\\x00-\x20\x7f-\U0010ffff]")


def refuse_ambiguous(source: str, url: str) -> None:
    """Raise `InsecureUrl` when `url` (absolute or relative) holds a character URL parsers
    read differently: backslash, control character, space, non-ASCII."""
    bad = _AMBIGUOUS_URL_CHARS.search(url)
    if bad:
        raise InsecureUrl(
            source, url, f"URL has an ambiguous character {bad.group()!r} at {bad.start()}"
        )


def target_of(source: str, url: str) -> Url:
    """Where `requests` will connect for `url`: its own parse of the URL it will send.

    Raises `InsecureUrl` for a URL with a backslash, a control character, a space, non-ASCII
    text or user info (`user@host`): each is read differently by different URL parsers, which
    is how a link can pass one check and connect somewhere else.
    """
    refuse_ambiguous(source, url)
    try:
        prepared = requests.models.PreparedRequest()
        prepared.prepare_url(url, None)
        target = parse_url(prepared.url or "")
    except (requests.exceptions.RequestException, LocationParseError, ValueError):
        raise InsecureUrl(source, url, "URL cannot be parsed") from None
    if target.auth is not None or "@" in (target.netloc or ""):
        raise InsecureUrl(source, url, "URL has user info (user@host); not allowed")
    if not target.host:
        raise InsecureUrl(source, url, "URL has no host")
    return target


def check_url(source: str, url: str) -> str:
    """Return `url` if it is HTTPS, or HTTP to loopback; raise `InsecureUrl` otherwise."""
    target = target_of(source, url)
    if target.scheme == "https":
        return url
    if target.scheme == "http" and is_loopback_host(target.host.strip("[]")):
        return url
    raise InsecureUrl(source, url, "only https:// URLs (or http:// to loopback) are allowed")


def _origin(source: str, url: str) -> tuple[str, str, int | None]:
    target = target_of(source, url)
    default_port = {"https": 443, "http": 80}.get(target.scheme or "")
    return target.scheme or "", (target.host or "").lower(), target.port or default_port


def rebase_link(
    source: str, link: str, *, current_url: str, documented_base: str, configured_base: str
) -> str:
    """Resolve a next-page `link` so it stays within the configured origin.

    A link on the API's documented origin is moved onto the configured base (so a mirror or a
    test server keeps serving the later pages); a link on the configured origin is kept; a link to
    any other host raises `PagingError`. Origins are read as `requests` will connect.
    """
    head, mark, query = link.partition("?")
    if mark and " " in query:  # spaces in a query string are harmless: send them encoded
        link = head + mark + query.replace(" ", "%20")
    try:
        refuse_ambiguous(source, link)  # the raw link too: urljoin must not launder it
    except InsecureUrl as exc:
        raise PagingError(source, link, f"next-page link refused: {exc.reason}") from None
    absolute = urljoin(current_url, link)
    try:
        origin = _origin(source, absolute)
    except InsecureUrl as exc:
        raise PagingError(source, absolute, f"next-page link refused: {exc.reason}") from None
    configured = target_of(source, configured_base)
    if origin == _origin(source, configured_base):
        return check_url(source, absolute)
    if origin == _origin(source, documented_base):
        target = target_of(source, absolute)
        documented_path = (target_of(source, documented_base).path or "").rstrip("/")
        path = target.path or ""
        if documented_path and (path == documented_path or path.startswith(documented_path + "/")):
            path = (configured.path or "").rstrip("/") + path[len(documented_path) :]
        moved = Url(
            scheme=configured.scheme,
            host=configured.host,
            port=configured.port,
            path=path,
            query=target.query,
        ).url
        return check_url(source, moved)
    raise PagingError(
        source, absolute, f"next-page link leaves the configured origin {configured.netloc}"
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait per `Retry-After` (delta-seconds or HTTP date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class _Retry(Exception):
    """A failed attempt worth repeating; carries the error to raise when attempts run out."""

    def __init__(self, error: PriceSourceError, wait_s: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait_s = wait_s


class HttpClient:
    """GETs bytes for one named source with the limits of `HttpSettings`."""

    def __init__(
        self,
        source: str,
        settings: HttpSettings | None = None,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        progress: Progress = log_progress,
    ) -> None:
        self.source = source
        self.settings = settings or HttpSettings()
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = USER_AGENT
        self.session = watched_session(session)
        self._sleep = sleep
        self._progress = progress

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get_bytes(self, url: str, *, accept: str | None = None) -> bytes:
        """The body of `url`, retried per the settings; raises a `PriceSourceError` subclass."""
        check_url(self.source, url)
        attempts = max(1, self.settings.max_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return self._get_once(url, accept)
            except _Retry as retry:
                if attempt == attempts:
                    raise retry.error from None
                wait_s = retry.wait_s if retry.wait_s is not None else self._backoff_s(attempt)
                self._progress(
                    f"{self.source}: {retry.error.reason}; retry {attempt}/{attempts - 1} "
                    f"in {wait_s:.2f} s"
                )
                self._sleep(wait_s)
        raise AssertionError("unreachable")

    def get_text(self, url: str, *, accept: str | None = None) -> str:
        """The body of `url` decoded as UTF-8 (a BOM is dropped)."""
        body = self.get_bytes(url, accept=accept)
        try:
            return body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MalformedResponse(self.source, url, f"body is not UTF-8: {exc}") from None

    def _backoff_s(self, attempt: int) -> float:
        ceiling = min(
            self.settings.backoff_max_s, self.settings.backoff_initial_s * 2 ** (attempt - 1)
        )
        return ceiling * random.uniform(0.5, 1.0)  # jitter so parallel runs do not align

    def _get_once(self, url: str, accept: str | None) -> bytes:
        current = url
        headers = {"Accept": accept} if accept else {}
        deadline = time.monotonic() + self.settings.response_deadline_s
        with DeadlineWatch(deadline) as watch:
            try:
                for _ in range(_MAX_REDIRECTS + 1):
                    response = self._send(current, headers)
                    with response:
                        if response.is_redirect and response.headers.get("Location"):
                            location = response.headers["Location"]
                            refuse_ambiguous(self.source, location)
                            current = check_url(self.source, urljoin(current, location))
                            continue
                        self._raise_for_status(current, response)
                        return self._read_capped(current, response, deadline)
            except _Retry:
                if watch.fired:  # the watch cut the connection: a deadline, not a network fault
                    reason = (
                        f"no complete answer within the deadline of "
                        f"{self.settings.response_deadline_s} s"
                    )
                    raise SourceTimeout(self.source, current, reason) from None
                raise
        raise HttpStatusError(self.source, url, f"more than {_MAX_REDIRECTS} redirects", 310)

    def _send(self, url: str, headers: dict[str, str]) -> requests.Response:
        timeout = (self.settings.connect_timeout_s, self.settings.read_timeout_s)
        try:
            return self.session.get(
                url, headers=headers, timeout=timeout, stream=True, allow_redirects=False
            )
        except requests.exceptions.ConnectTimeout:
            reason = f"connect timed out after {self.settings.connect_timeout_s} s"
            raise _Retry(SourceTimeout(self.source, url, reason)) from None
        except requests.exceptions.ReadTimeout:
            reason = f"no response within the read timeout of {self.settings.read_timeout_s} s"
            raise _Retry(SourceTimeout(self.source, url, reason)) from None
        except requests.exceptions.ConnectionError as exc:
            reason = f"connection failed: {type(exc).__name__}"
            raise _Retry(SourceUnreachable(self.source, url, reason)) from None
        except requests.exceptions.RequestException as exc:
            raise SourceUnreachable(self.source, url, f"request failed: {exc}") from None

    def _raise_for_status(self, url: str, response: requests.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        reason = f"HTTP {status} {response.reason or ''}".strip()
        error = HttpStatusError(self.source, url, reason, status)
        if status == 429 or status >= 500:
            wait_s = parse_retry_after(response.headers.get("Retry-After"))
            if wait_s is not None and wait_s > self.settings.retry_after_max_s:
                raise HttpStatusError(
                    self.source,
                    url,
                    f"{reason}; Retry-After {wait_s:.0f} s exceeds the "
                    f"{self.settings.retry_after_max_s} s we wait",
                    status,
                )
            raise _Retry(error, wait_s)
        raise error

    def _read_capped(self, url: str, response: requests.Response, deadline: float) -> bytes:
        cap = self.settings.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if (
            declared.isdigit()
            and int(declared) > cap
            and not response.headers.get("Content-Encoding")
        ):
            raise ResponseTooLarge(
                self.source, url, f"Content-Length {declared} bytes exceeds the cap of {cap} bytes"
            )
        try:
            return read_body(
                response,
                deadline=deadline,
                max_bytes=cap,
                read_timeout_s=self.settings.read_timeout_s,
            )
        except BodyTooLarge:
            raise ResponseTooLarge(
                self.source, url, f"body exceeds the cap of {cap} bytes"
            ) from None
        except BodyDeadline as exc:
            # Not retried: a peer that drips its body would multiply the wall-clock time.
            reason = (
                f"body not read within the deadline of {self.settings.response_deadline_s} s "
                f"({exc.size_bytes} bytes read)"
            )
            raise SourceTimeout(self.source, url, reason) from None
        except BodyStalled:
            reason = f"body stalled past the read timeout of {self.settings.read_timeout_s} s"
            raise _Retry(SourceTimeout(self.source, url, reason)) from None
        except BodyBroken as exc:
            if exc.truncated:
                reason = f"body truncated after {exc.size_bytes} bytes (connection closed early)"
                raise _Retry(MalformedResponse(self.source, url, reason)) from None
            reason = f"connection failed while reading the body: {exc.kind}"
            raise _Retry(SourceUnreachable(self.source, url, reason)) from None


# --- a wall-clock deadline for the whole exchange (headers included) ------------------------

_current_watch = threading.local()


class DeadlineWatch:
    """Shuts down the sockets of the requests made under it once `deadline` passes.

    A socket timeout bounds one read; a peer that sends a header byte just before every
    timeout would still hold the call forever. At the deadline this shuts the socket down, so
    whatever read is blocked returns at once and the caller sees `fired`.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True

    def track(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            fired = self.fired
        if fired:
            _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def __enter__(self) -> DeadlineWatch:
        self._previous = getattr(_current_watch, "value", None)
        _current_watch.value = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        _current_watch.value = self._previous


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _watch_current(sock: socket.socket | None) -> None:
    watch = getattr(_current_watch, "value", None)
    if watch is not None:
        watch.track(sock)


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def getresponse(self) -> Any:  # the headers are read here
        _watch_current(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def getresponse(self) -> Any:
        _watch_current(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """A `requests` adapter whose connections can be cut by the current `DeadlineWatch`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }


def watched_session(session: requests.Session | None = None) -> requests.Session:
    """`session` (or a new one) with `DeadlineAdapter` mounted for http and https."""
    session = session or requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, DeadlineAdapter())
    return session


# --- reading a body within a wall-clock deadline --------------------------------------------


class BodyError(Exception):
    """Reading a response body failed; `size_bytes` were read before."""

    def __init__(self, size_bytes: int, kind: str = "", *, truncated: bool = False) -> None:
        super().__init__(kind or type(self).__name__)
        self.size_bytes = size_bytes
        self.kind = kind
        self.truncated = truncated


class BodyDeadline(BodyError):
    """The wall-clock deadline passed before the body ended."""


class BodyStalled(BodyError):
    """No byte arrived within the read timeout."""


class BodyTooLarge(BodyError):
    """The (decoded) body grew past the byte cap."""


class BodyBroken(BodyError):
    """The connection closed or broke mid-body (`truncated`: before the declared length)."""


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The socket the body is read from (http.client drops `connection.sock` once the server
    says `Connection: close`; the response's buffered reader still holds it)."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if not isinstance(sock, socket.socket):
        reader = getattr(getattr(response.raw, "_fp", None), "fp", None)
        sock = getattr(getattr(reader, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def read_body(
    response: requests.Response, *, deadline: float, max_bytes: int, read_timeout_s: float
) -> bytes:
    """The decoded body of a streamed `response`, read by `time.monotonic()` `deadline`.

    Each read returns after one socket read (`read1`), and the socket timeout is cut to the
    time left before every read, so no single read can block past the deadline: a body that
    drips one byte a second stops at the deadline, not at its Content-Length.
    """
    raw = response.raw
    sock = _socket_of(response)
    chunks: list[bytes] = []
    size = 0
    while True:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise BodyDeadline(size)
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: the read below reports it
                sock.settimeout(max(0.001, min(read_timeout_s, left_s)))
        try:
            chunk = raw.read1(_CHUNK_BYTES, decode_content=True)
        except (ReadTimeoutError, TimeoutError):
            if time.monotonic() >= deadline - 0.001:
                raise BodyDeadline(size) from None
            raise BodyStalled(size) from None
        except ProtocolError as exc:
            if any(isinstance(arg, ReadTimeoutError | TimeoutError) for arg in exc.args):
                raise BodyStalled(size) from None
            text = str(exc)
            truncated = "IncompleteRead" in text or "incomplete" in text.lower()
            raise BodyBroken(size, type(exc).__name__, truncated=truncated) from None
        except OSError as exc:
            raise BodyBroken(size, type(exc).__name__) from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(size)
        chunks.append(chunk)


class PageGuard:
    """Stops paging past `max_pages` pages, on a URL seen before, or on a page served twice."""

    def __init__(self, source: str, max_pages: int) -> None:
        self.source = source
        self.max_pages = max_pages
        self.pages = 0
        self._urls: set[str] = set()
        self._digests: set[bytes] = set()

    def before(self, url: str) -> None:
        """Call before fetching page `url`."""
        if url in self._urls:
            raise PagingError(self.source, url, f"page loop: link repeats after {self.pages} pages")
        if self.pages >= self.max_pages:
            raise PagingError(self.source, url, f"more than {self.max_pages} pages; stopped")
        self._urls.add(url)
        self.pages += 1

    def after(self, url: str, body: bytes) -> None:
        """Call with the body of the page just fetched."""
        digest = hashlib.sha256(body).digest()
        if digest in self._digests:
            raise PagingError(
                self.source, url, f"page loop: page {self.pages} repeats an earlier page"
            )
        self._digests.add(digest)
