"""The wall-clock deadline of one strategy: listing, pricing, every MILP, the proof, the ties.

`solve` opens it from `solver.time_limit_s`; everything below reads it from the context, so a
limit needs no parameter threaded through every call. Searches check it every few thousand
nodes, MILP solves get at most the time left.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_DEADLINE: ContextVar[float | None] = ContextVar("replan_solver_deadline", default=None)
MIN_SOLVE_SECONDS = 0.01  # HiGHS needs a positive limit; a start plan is returned at once


class DeadlineExceeded(RuntimeError):
    """The strategy's time limit ran out."""


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Run the block under a wall-clock limit of `seconds` (None: no limit, or the outer one)."""
    if seconds is None:
        yield
        return
    ends_at = time.monotonic() + seconds
    outer = _DEADLINE.get()
    token = _DEADLINE.set(ends_at if outer is None else min(outer, ends_at))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining_s() -> float | None:
    """Seconds left before the deadline (may be <= 0), or None without one."""
    ends_at = _DEADLINE.get()
    return None if ends_at is None else ends_at - time.monotonic()


def expired() -> bool:
    left = remaining_s()
    return left is not None and left <= 0


def check() -> None:
    """Raise DeadlineExceeded once the deadline has passed."""
    if expired():
        raise DeadlineExceeded("the time limit ran out")


def capped(limit_s: float | None) -> float | None:
    """`limit_s` shortened to the time left (at least MIN_SOLVE_SECONDS), None if neither."""
    left = remaining_s()
    if left is None:
        return limit_s
    left = max(MIN_SOLVE_SECONDS, left)
    return left if limit_s is None else min(limit_s, left)
