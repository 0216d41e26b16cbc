"""Where a run's log goes: every Prefect record, tracebacks included, to a file; the console
(stderr) gets the same records without tracebacks.

Prefect's engine logs a failed flow or task run with its traceback; `replan run` then says
what failed in one line. The operator reads stderr, so the traceback goes to the run's log file
(`<reports>/logs/run-<time>.log`) and, through Prefect's API handler, to the Prefect UI only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _WithoutTraceback(logging.Filter):
    """Lets a record through its handler without `exc_info`/`stack_info` (a copy is handled)."""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.exc_info or record.exc_text or record.stack_info):
            return True
        plain = logging.makeLogRecord(record.__dict__)
        plain.exc_info, plain.exc_text, plain.stack_info = None, None, None
        self.handler.handle(plain)
        return False


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers of `logger` that write to a terminal stream (Prefect's console handler)."""
    return [
        h
        for h in logger.handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]


def new_log_path(log_dir: Path, prefix: str = "run") -> Path:
    """`<log_dir>/<prefix>-<UTC time>.log`, the folder created."""
    log_dir.mkdir(parents=True, exist_ok=True)
    return log_dir / f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.log"


@contextmanager
def tracebacks_to_file(log_path: Path) -> Iterator[Path]:
    """While inside: every record reaching the root logger is written to `log_path` in full,
    and the root's console handlers print it without its traceback."""
    root = logging.getLogger()
    file_handler = logging.FileHandler(log_path, encoding="utf-8", delay=True)
    file_handler.setLevel(logging.INFO)
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    filters = [(h, _WithoutTraceback(h)) for h in _console_handlers(root)]
    root.handlers.insert(0, file_handler)  # before the console: it sees the traceback
    for handler, without in filters:
        handler.addFilter(without)
    try:
        yield log_path
    finally:
        for handler, without in filters:
            handler.removeFilter(without)
        root.removeHandler(file_handler)
        file_handler.close()
