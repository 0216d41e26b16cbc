"""Which plan to export, read from the state store (fleet plans and pre-fleet per-model plans).

The published fleet plan is recorded under the model key `fleet` (CONTRACT.md). Stores from
before the fleet change hold one plan per model; their union is the fleet that runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tasks.export.groups import ExportError
from tasks.state import PublicationRecord, StateStore
from tasks.state.fleet import FLEET_MODEL, market_for_price_mode, union_plan
from tasks.state.fleet import with_model as _with_model

__all__ = [
    "DECISION_STRATEGY",
    "FLEET_MODEL",
    "PlanSource",
    "StoredPlan",
    "market_for_price_mode",
    "union_plan",
]

DECISION_STRATEGY = "exact"  # the flow decides and publishes on the exact plan
_ALL_PUBLICATIONS = 1_000_000


@dataclass(frozen=True)
class StoredPlan:
    """A plan to export and where it came from."""

    plan: dict[str, Any]
    run_id: int
    description: str  # e.g. "fleet plan of run 7" or "union of 2 model plans (runs 3, 4)"
    notes: tuple[str, ...] = ()  # how a pre-fleet plan was read


class PlanSource:
    """Reads the plan to export, and the plan it replaces, from one state store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._markets: dict[int, str | None] = {}
        self._notes: list[str] = []

    def _market(self, run_id: int) -> str | None:
        if run_id not in self._markets:
            try:
                parameters = self.store.get_run(run_id).parameters or {}
            except KeyError:
                parameters = {}
            self._markets[run_id] = market_for_price_mode(parameters.get("price_mode"))
        return self._markets[run_id]

    def _normalised(self, model: str, plan: dict[str, Any], run_id: int) -> dict[str, Any]:
        if model == FLEET_MODEL:
            return plan
        market = self._market(run_id)
        if market is not None:
            self._notes.append(
                f"{model} (run {run_id}) is a pre-fleet plan without markets: its run priced "
                f"every pool {market}, so its stages are exported {market}"
            )
        return _with_model(plan, model, market)

    def _take_notes(self) -> tuple[str, ...]:
        notes, self._notes = tuple(self._notes), []
        return notes

    def _published(self) -> list[PublicationRecord]:
        """Every delivered publication, newest first."""
        records = [
            p for p in self.store.recent_publications(_ALL_PUBLICATIONS) if p.status == "published"
        ]
        return sorted(
            records,
            key=lambda p: (p.published_at is not None, p.published_at, p.publication_id),
            reverse=True,
        )

    def _view(self, publications: Iterable[PublicationRecord]) -> StoredPlan | None:
        """The fleet plan the publications leave running: the newest `fleet`, else the union."""
        newest: dict[str, PublicationRecord] = {}
        for publication in publications:  # newest first
            newest.setdefault(publication.model, publication)
        if FLEET_MODEL in newest:
            record = newest[FLEET_MODEL]
            plan = self.store.get_plan(record.plan_id).plan
            return StoredPlan(plan, record.run_id, f"published fleet plan of run {record.run_id}")
        if not newest:
            return None
        parts = []
        for model in sorted(newest):
            record = newest[model]
            stored = self.store.get_plan(record.plan_id)
            parts.append((model, self._normalised(model, stored.plan, record.run_id)))
        runs = sorted({r.run_id for r in newest.values()})
        return StoredPlan(
            union_plan(parts),
            max(runs),
            f"union of the latest published plans of {len(parts)} model(s) "
            f"(runs {', '.join(map(str, runs))})",
            self._take_notes(),
        )

    def latest(self) -> StoredPlan:
        """The published fleet plan: the newest `fleet` plan, else every model's latest."""
        view = self._view(self._published())
        if view is None:
            raise ExportError(f"{self.store.url}: no published plan yet (run `replan run` first)")
        return view

    def run(self, run_id: int, strategy: str = DECISION_STRATEGY) -> StoredPlan:
        """A run's exact plan(s): its `fleet` plan, else the union of its per-model plans."""
        try:
            self.store.get_run(run_id)
        except KeyError:
            raise ExportError(f"{self.store.url}: no run {run_id}") from None
        records = [p for p in self.store.run_plans(run_id) if p.strategy == strategy]
        if not records:
            raise ExportError(f"{self.store.url}: run {run_id} recorded no {strategy} plan")
        fleet = [p for p in records if p.model == FLEET_MODEL]
        if fleet:
            return StoredPlan(fleet[0].plan, run_id, f"{strategy} fleet plan of run {run_id}")
        parts = [(p.model, self._normalised(p.model, p.plan, run_id)) for p in records]
        return StoredPlan(
            union_plan(parts),
            run_id,
            f"union of the {strategy} plans of run {run_id}",
            self._take_notes(),
        )

    def previous(self, run_id: int) -> StoredPlan | None:
        """The fleet plan published before run `run_id`, which the export replaces."""
        return self._view(p for p in self._published() if p.run_id < run_id)
