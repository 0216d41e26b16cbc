"""The Prefect API a command talks to: `$PREFECT_API_URL`, or a temporary server started here.

Without `PREFECT_API_URL`, Prefect starts a temporary ("ephemeral") server on first use and
gives it `PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS` (Prefect's default: 20 s) to
answer, too little on a busy machine; and each flow-run subprocess of `replan serve` started
a second one of its own. Here the server is started once, before any flow, with
`DEFAULT_STARTUP_TIMEOUT_S` (or the setting when it is set) and up to `START_ATTEMPTS` tries,
its output kept in `<reports>/logs/prefect-server.log`, and its URL exported as
`PREFECT_API_URL` to this process and to every process it starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT_S = 120
START_ATTEMPTS = 3
SERVER_LOG = "prefect-server.log"


class ApiUnavailable(RuntimeError):
    """The temporary Prefect API did not answer in time on any try; the message says the fix."""


def configured_api_url() -> str | None:
    """`PREFECT_API_URL` as Prefect sees it (environment, profile or test harness), or None."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def startup_timeout_s() -> int:
    """Seconds each try waits for the temporary server: the setting when set, else 120."""
    text = os.environ.get(STARTUP_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_STARTUP_TIMEOUT_S
    try:
        return max(1, int(float(text)))
    except ValueError:
        raise ApiUnavailable(
            f"{STARTUP_TIMEOUT_ENV}={text!r} is not a number of seconds; fix: e.g. "
            f"{STARTUP_TIMEOUT_ENV}={DEFAULT_STARTUP_TIMEOUT_S}"
        ) from None


def ensure_api(log_dir: Path, attempts: int = START_ATTEMPTS) -> str:
    """The API URL: `PREFECT_API_URL` when set, else a temporary server started here (tried
    `attempts` times) whose URL is then exported; raises ApiUnavailable."""
    url = configured_api_url()
    if url:
        return url
    timeout_s = startup_timeout_s()
    from prefect.server.api.server import SubprocessASGIServer

    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / SERVER_LOG
    for attempt in range(1, attempts + 1):
        server = SubprocessASGIServer()
        try:
            with _output_to(log_path):  # the server's output, start-up lines and tracebacks
                server.start(timeout=timeout_s)
        except Exception as exc:
            _discard(server)
            _note(log_path, f"try {attempt}/{attempts} failed: {type(exc).__name__}: {exc}")
            continue
        export_api_url(server.api_url, has_ui=False)  # the temporary server serves no UI
        return server.api_url
    raise ApiUnavailable(
        f"the temporary Prefect API did not answer within {timeout_s} s in {attempts} tries "
        f"(its log: {log_path}); fix: give it longer ({STARTUP_TIMEOUT_ENV}={timeout_s * 3}) "
        "or run a server (`prefect server start`) and set PREFECT_API_URL="
        "http://127.0.0.1:4200/api"
    )


def export_api_url(url: str, *, has_ui: bool = True) -> None:
    """Point this process's Prefect settings and every child process at `url` (without a UI,
    no "View at" line nor report link to a UI that is not there)."""
    import prefect.context

    os.environ["PREFECT_API_URL"] = url
    if not has_ui:
        os.environ.setdefault("PREFECT_UI_URL", "")
    refresh = getattr(prefect.context, "refresh_global_settings_context", None)
    if refresh is not None:
        refresh()
    else:  # Prefect before 3.6
        prefect.context.GLOBAL_SETTINGS_CONTEXT = prefect.context.root_settings_context()


def _discard(server: Any) -> None:
    """Kill a server that never answered (Prefect leaves it running; it ignores SIGTERM while
    it starts, so Prefect's own `stop` waits 5 s for nothing) and forget it."""
    process = server.server_process
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
    server.stop()


def _note(log_path: Path, message: str) -> None:
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} replan: {message}\n")


@contextmanager
def _output_to(log_path: Path) -> Iterator[None]:
    """File descriptors 1 and 2 appended to `log_path` (child processes inherit them)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with log_path.open("ab") as log:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
