"""Fleet plans in the store: the `fleet` model key, and what a pre-fleet store's per-model
plans add up to, so the first fleet run compares against the fleet that runs.

A fleet plan (CONTRACT.md) is recorded and published under the model key `fleet`. A store
from before the fleet change holds one published plan per model; their union is the fleet.
"""

from __future__ import annotations

from typing import Any

from tasks.state.hashing import plan_hash
from tasks.state.records import PublishedPlan
from tasks.state.store import StateStore

FLEET_MODEL = "fleet"
MARKETS = ("spot", "on-demand")


def market_for_price_mode(price_mode: Any) -> str | None:
    """A pre-fleet run priced every pool in one market; `cheapest` mixed them (unknown)."""
    return price_mode if price_mode in MARKETS else None


def with_model(plan: dict[str, Any], model: str, market: str | None) -> dict[str, Any]:
    """A pre-fleet plan's replicas named by the store record, stages given the run's market."""
    replicas = []
    for replica in plan.get("replicas") or []:
        entry = {"model": model, **replica}
        stages = []
        for stage in replica.get("stages") or []:
            stage = dict(stage)
            if "market" not in stage and market is not None:
                stage["market"] = market
            stages.append(stage)
        entry["stages"] = stages
        replicas.append(entry)
    return {**plan, "replicas": replicas}


def union_plan(
    parts: list[tuple[str, dict[str, Any]]], *, market: str | None = None
) -> dict[str, Any]:
    """One fleet-shaped plan from (model, plan) pairs: replicas named and concatenated, totals
    summed. This is what a pre-fleet store's per-model plans add up to. `market` fills the
    stages that carry none (a pre-fleet run priced every pool in its price mode's market)."""
    parts = [(model, with_model(plan, model, market)) for model, plan in parts]
    replicas = [r for _, plan in parts for r in plan.get("replicas") or []]
    tokens = sum(float(plan.get("tokens_per_s") or 0) for _, plan in parts)
    cost = sum(float(plan.get("cost_per_hour") or 0) for _, plan in parts)
    statuses = {str(plan.get("status")) for _, plan in parts}
    return {
        "strategy": ",".join(sorted({str(plan.get("strategy")) for _, plan in parts})),
        "status": statuses.pop() if len(statuses) == 1 else "mixed",
        "message": "union of the per-model plans of a pre-fleet store",
        "tokens_per_s": tokens,
        "useful_tokens_per_s": tokens,
        "cost_per_hour": cost,
        "cost_per_token": cost / (3600 * tokens) if tokens > 0 else None,
        "gpus": sum(int(plan.get("gpus") or 0) for _, plan in parts),
        "replicas": replicas,
        "models": [
            {
                "name": model,
                "tokens_per_s": plan.get("tokens_per_s"),
                "cost_per_hour": plan.get("cost_per_hour"),
                "cost_per_token": plan.get("cost_per_token"),
                "gpus": plan.get("gpus"),
                "replicas": plan.get("replicas") or [],
            }
            for model, plan in parts
        ],
    }


def _run_market(store: StateStore, run_id: int) -> str | None:
    try:
        parameters = store.get_run(run_id).parameters or {}
    except KeyError:
        return None
    return market_for_price_mode(parameters.get("price_mode"))


def published_fleet(store: StateStore, channel: str) -> PublishedPlan | None:
    """The fleet the channel's publications leave running: its last published `fleet` plan,
    else the union of every model's last pre-fleet publication (None before any).

    The union carries the newest part's publication, plan and run ids, model `fleet`, and the
    hash of the union's placement (model and market per replica).
    """
    fleet = store.last_published(FLEET_MODEL, channel)
    if fleet is not None:
        return fleet
    parts = [
        published
        for model in store.published_models(channel)
        if (published := store.last_published(model, channel)) is not None
    ]
    if not parts:
        return None
    plan = union_plan(
        [
            (p.model, with_model(p.plan, p.model, _run_market(store, p.run_id)))
            for p in sorted(parts, key=lambda p: p.model)
        ]
    )
    newest = max(parts, key=lambda p: (p.published_at, p.publication_id))
    return PublishedPlan(
        publication_id=newest.publication_id,
        plan_id=newest.plan_id,
        run_id=newest.run_id,
        model=FLEET_MODEL,
        channel=channel,
        strategy=newest.strategy,
        plan_hash=plan_hash(plan),
        plan=plan,
        published_at=newest.published_at,
    )
