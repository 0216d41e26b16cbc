"""Decide → post → record under the store's lock: one post per placement change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tasks.state.records import PublishedPlan
from tasks.state.store import StateStore


@dataclass(frozen=True)
class PublishResult:
    """What `publish_once` did: posted the plan, or found the channel already shows it."""

    posted: bool
    publication_id: int | None
    previous: PublishedPlan | None


def publish_once(
    store: StateStore,
    *,
    plan_id: int,
    channel: str,
    post: Callable[[PublishedPlan | None], object],
    lock_timeout_s: float | None = None,
) -> PublishResult:
    """Post a stored plan when its placement differs from the channel's last published one.

    Under `store.publish_lock`: read the last published plan; if its hash equals this plan's,
    post nothing (a re-run, or a racer that lost). Otherwise mark the plan pending, call
    `post(previous)` (it builds the diff against `previous` and raises unless Slack answered
    200), then mark it published. When `post` raises, the publication stays pending with the
    error, the exception propagates (the run ends failed) and the next run posts again.
    """
    plan = store.get_plan(plan_id)
    with store.publish_lock(plan.model, channel, timeout_s=lock_timeout_s) as session:
        previous = session.last_published()
        if previous is not None and previous.plan_hash == plan.plan_hash:
            session.supersede_pending()
            return PublishResult(posted=False, publication_id=None, previous=previous)
        publication_id = session.mark_pending(plan_id)
        try:
            post(previous)
        except BaseException as exc:  # an interrupt too: the record says why it is pending
            session.mark_failed(publication_id, f"{type(exc).__name__}: {exc}")
            raise
        session.mark_published(publication_id)
        return PublishResult(posted=True, publication_id=publication_id, previous=previous)
