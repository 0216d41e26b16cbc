"""A real HTTP server on 127.0.0.1 with programmable routes, for tests of HTTP clients.

    with LoopbackServer() as server:
        server.route("/prices", Reply(status=500), Reply.file(path))   # 500, then the file
        server.route("/hook", Reply.json({"ok": True}), method="POST")
        ...  client calls server.url_for("/prices") ...
        assert server.requests_to("/prices")[0].headers["user-agent"]

- A route answers with a sequence of `Reply`s; the last one repeats. Instead of replies a route
  may take a function `(RecordedRequest) -> Reply` (e.g. dispatch on the query string).
- `Reply` can delay before the headers (`delay_s`, to hit a client's read timeout), stall
  mid-body (`stall_after_bytes` + `stall_s`), declare a longer body than it sends
  (`truncate_to_bytes`, a broken transfer), or omit Content-Length (`chunked=True`).
- `drip_s` sends the body one byte at a time, `drip_s` seconds apart (a peer that keeps a
  connection alive just above any per-read timeout); `header_drip_s` does the same with the
  status line and headers. `LoopbackServer(host="127.0.0.2")`
  listens on another loopback address: "another host" for origin tests.
- Every request is recorded (method, path, query, headers, body), including unmatched ones (404).
- Waits end early when the server stops, so a stuck test never outlives its server.

Reuse it as a fixture: `pytest_plugins = ("tests.support.http_server",)` in a conftest gives
`loopback_server`, or use the context manager directly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it; header names are lower case."""

    method: str
    path: str
    query: dict[str, list[str]]
    raw_path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8")


@dataclass(frozen=True)
class Reply:
    """What the server sends back for one request."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    stall_after_bytes: int | None = None
    stall_s: float = 0.0
    truncate_to_bytes: int | None = None
    chunked: bool = False
    drip_s: float = 0.0
    header_drip_s: float = 0.0

    @classmethod
    def file(cls, path: str | Path, content_type: str | None = None, **options: Any) -> Reply:
        path = Path(path)
        guessed = {".json": "application/json", ".csv": "text/csv", ".js": "text/javascript"}
        kind = content_type or guessed.get(path.suffix, "application/octet-stream")
        return cls(body=path.read_bytes(), headers={"Content-Type": kind}, **options)

    @classmethod
    def json(cls, payload: Any, status: int = 200, **options: Any) -> Reply:
        body = json.dumps(payload).encode()
        return cls(
            status=status, body=body, headers={"Content-Type": "application/json"}, **options
        )

    @classmethod
    def text(
        cls, text: str, status: int = 200, content_type: str = "text/plain", **options: Any
    ) -> Reply:
        return cls(
            status=status, body=text.encode(), headers={"Content-Type": content_type}, **options
        )

    @classmethod
    def sized(cls, n_bytes: int, fill: bytes = b"x", **options: Any) -> Reply:
        """A body of exactly `n_bytes` bytes."""
        return cls(body=(fill * (n_bytes // len(fill) + 1))[:n_bytes], **options)

    @classmethod
    def status_only(cls, status: int, *, retry_after: str | None = None, **options: Any) -> Reply:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls(status=status, body=f"status {status}".encode(), headers=headers, **options)


Responder = Callable[[RecordedRequest], Reply]


class _Route:
    def __init__(self, replies: tuple[Reply | Responder, ...]) -> None:
        self._replies = list(replies)
        self._lock = threading.Lock()

    def next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            step = self._replies[0] if len(self._replies) == 1 else self._replies.pop(0)
        return step if isinstance(step, Reply) else step(request)


class LoopbackServer:
    """A threaded `http.server` on 127.0.0.1, random port, programmable routes."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[RecordedRequest] = []
        self._routes: dict[tuple[str, str], _Route] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer((host, 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url_for(self, path: str) -> str:
        return self.url + path

    def route(self, path: str, *replies: Reply | Responder, method: str = "GET") -> None:
        """Answer `method path` (query ignored) with `replies` in turn; the last one repeats."""
        if not replies:
            raise ValueError("a route needs at least one reply")
        with self._lock:
            self._routes[(method.upper(), path)] = _Route(replies)

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path == path and (method is None or r.method == method)
            ]

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _dispatch(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            route = self._routes.get((request.method, request.path))
        if route is None:
            return Reply.status_only(404)
        return route.next_reply(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = RecordedRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    raw_path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                )
                self._send(server._dispatch(request))

            def _send(self, reply: Reply) -> None:
                if reply.delay_s and server.stopping.wait(reply.delay_s):
                    return
                self.close_connection = True
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.chunked:
                        self.send_header("Transfer-Encoding", "chunked")
                    else:
                        self.send_header("Content-Length", str(len(reply.body)))
                    self.send_header("Connection", "close")
                    if reply.header_drip_s:
                        self._headers_buffer.append(b"\r\n")
                        head = b"".join(self._headers_buffer)
                        self._headers_buffer = []
                        for index in range(len(head)):
                            self.wfile.write(head[index : index + 1])
                            self.wfile.flush()
                            if server.stopping.wait(reply.header_drip_s):
                                return
                    else:
                        self.end_headers()
                    body = reply.body
                    if reply.truncate_to_bytes is not None:
                        body = body[: reply.truncate_to_bytes]
                    if reply.stall_after_bytes is not None:
                        self._write(body[: reply.stall_after_bytes], reply.chunked)
                        if server.stopping.wait(reply.stall_s):
                            return
                        body = body[reply.stall_after_bytes :]
                    if reply.drip_s:
                        for index in range(len(body)):
                            self._write(body[index : index + 1], reply.chunked)
                            self.wfile.flush()
                            if server.stopping.wait(reply.drip_s):
                                return
                        body = b""
                    self._write(body, reply.chunked)
                    if reply.chunked and reply.truncate_to_bytes is None:
                        self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout, size cap): expected in tests

            def _write(self, data: bytes, chunked: bool) -> None:
                step = 64 * 1024
                for start in range(0, len(data), step):
                    piece = data[start : start + step]
                    if chunked:
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    else:
                        self.wfile.write(piece)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        return Handler


@pytest.fixture
def loopback_server() -> Iterator[LoopbackServer]:
    """A started `LoopbackServer`, stopped after the test."""
    with LoopbackServer() as server:
        yield server
