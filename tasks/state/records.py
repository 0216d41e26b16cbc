"""The typed rows the state store hands out: runs, plans, publications and saved prices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


class StoreBusy(RuntimeError):
    """Another run holds the store's lock (or write lock) longer than the wait allowed."""


@dataclass(frozen=True)
class RunRecord:
    """One pipeline run: what went in and how it ended."""

    run_id: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    inputs_hash: str
    prices_hash: str
    parameters: dict[str, Any]
    error: str | None


@dataclass(frozen=True)
class PlanRecord:
    """One strategy's plan of one run, as the spec's JSON object."""

    plan_id: int
    run_id: int
    model: str
    strategy: str
    plan_hash: str
    plan: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class PublicationRecord:
    """One decision to publish a plan to a channel, and what became of it."""

    publication_id: int
    plan_id: int
    run_id: int
    model: str
    channel: str
    plan_hash: str
    status: str
    created_at: datetime
    published_at: datetime | None
    attempts: int
    error: str | None


@dataclass(frozen=True)
class PublishedPlan:
    """The plan a channel last saw: Slack answered 200 for it."""

    publication_id: int
    plan_id: int
    run_id: int
    model: str
    channel: str
    strategy: str
    plan_hash: str
    plan: dict[str, Any]
    published_at: datetime


@dataclass(frozen=True)
class LastGoodPrices:
    """A saved price table with its age at the time it was read."""

    table: pd.DataFrame
    prices_hash: str
    fetched_at: datetime
    age: timedelta
