"""The `watch-prices` flow: fetch prices, compare them with those behind the published plans,
and emit `replan.prices.changed` (one event a pool) when a pool that matters moved.

A pool matters to a model's published plan when
- the plan places GPUs on it ("in-plan") and its per-GPU price moved by more than the threshold
  (relative), or it has no price any more ("gone"); or
- the plan does not use it, its price moved by more than the threshold (or it is new), and its
  per-GPU $/token at the new price is below the plan's $/token ("would-beat": a lower bound of
  what a re-plan could reach there, memory and quotas aside).

A move the newest completed run already planned on (its prices show the pool within the
threshold of today's price) is not reported again, so a re-plan that decided not to switch is
not re-triggered every hour. The pure part is `detect_price_changes` / `not_yet_planned`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task

from flows.replan import publication_channel
from flows.state_secret import state_url_with_password
from tasks.inventory import Inventory
from tasks.pipeline import fetch_prices_task, load_inventory_task, validate_prices_task
from tasks.pools import build_pools
from tasks.state import StateStore, published_fleet

EVENT_NAME = "replan.prices.changed"
RESOURCE_PREFIX = "replan.pool."
DEFAULT_CHANGE_THRESHOLD = 0.05  # 5 % of the per-GPU price
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class PoolPrice:
    """One pool's per-GPU price and one model's throughput on one GPU of it."""

    price_per_gpu_hour: float
    tokens_per_s: float

    @property
    def cost_per_token(self) -> float:
        """USD per token of one GPU at full use (inf without throughput)."""
        if not self.tokens_per_s or self.tokens_per_s <= 0:
            return float("inf")
        return self.price_per_gpu_hour / (self.tokens_per_s * SECONDS_PER_HOUR)


@dataclass(frozen=True)
class PriceChange:
    """A pool whose move matters to one model's published plan."""

    model: str
    pool: str
    reason: str  # "in-plan", "gone" or "would-beat"
    old_price_per_gpu_hour: float | None
    new_price_per_gpu_hour: float | None
    relative_change: float | None


def relative_change(old: float | None, new: float | None) -> float | None:
    """(new - old) / old, or None when either side is missing or old is 0."""
    if old is None or new is None or old == 0:
        return None
    return (new - old) / old


def _moved(old: PoolPrice | None, new: PoolPrice | None, threshold: float) -> bool:
    if old is None or new is None:
        return old is not new
    change = relative_change(old.price_per_gpu_hour, new.price_per_gpu_hour)
    return change is None or abs(change) > threshold


def detect_price_changes(
    model: str,
    published: Mapping[str, PoolPrice],
    current: Mapping[str, PoolPrice],
    plan_pools: Iterable[str],
    plan_cost_per_token: float | None,
    threshold: float,
) -> list[PriceChange]:
    """The pools whose move since the published plan's prices matters to that plan."""
    used = set(plan_pools)
    changes: list[PriceChange] = []
    for pool in sorted(set(published) | set(current)):
        old, new = published.get(pool), current.get(pool)
        if not _moved(old, new, threshold):
            continue
        if pool in used:
            reason = "gone" if new is None else "in-plan"
        elif (
            new is not None
            and plan_cost_per_token is not None
            and new.cost_per_token < plan_cost_per_token
        ):
            reason = "would-beat"
        else:
            continue
        changes.append(
            PriceChange(
                model=model,
                pool=pool,
                reason=reason,
                old_price_per_gpu_hour=old.price_per_gpu_hour if old else None,
                new_price_per_gpu_hour=new.price_per_gpu_hour if new else None,
                relative_change=relative_change(
                    old.price_per_gpu_hour if old else None,
                    new.price_per_gpu_hour if new else None,
                ),
            )
        )
    return changes


def not_yet_planned(
    changes: Iterable[PriceChange],
    last_run: Mapping[str, PoolPrice] | None,
    current: Mapping[str, PoolPrice],
    threshold: float,
) -> list[PriceChange]:
    """Drop the changes the newest completed run already saw (same price within threshold)."""
    if last_run is None:
        return list(changes)
    return [c for c in changes if _moved(last_run.get(c.pool), current.get(c.pool), threshold)]


def plan_pool_ids(plan: Mapping[str, Any]) -> set[str]:
    """The pools a plan places GPUs on."""
    return {
        str(stage["pool"])
        for replica in plan.get("replicas") or []
        if int(replica.get("count", 1)) > 0
        for stage in replica.get("stages") or []
    }


def model_plan(plan: Mapping[str, Any], model: str, market: str) -> dict[str, Any] | None:
    """One model's part of a published fleet plan, on the watch's pool ids.

    Fleet pools name their market (`cloud/region/GPU/spot`); the watch prices one market under
    `cloud/region/GPU`, so the model's stages in that market are renamed and the others left
    out. Pre-fleet plans (pools without a market) are kept as they are. None: no replica.
    """
    replicas = []
    for replica in plan.get("replicas") or []:
        if replica.get("model", model) != model:
            continue
        stages = []
        for stage in replica.get("stages") or []:
            pool = str(stage["pool"])
            head, _, suffix = pool.rpartition("/")
            if suffix in ("spot", "on-demand") and pool.count("/") == 3:
                if suffix != market:
                    continue
                pool = head
            stages.append({**stage, "pool": pool})
        if stages:
            replicas.append({**replica, "stages": stages})
    if not replicas:
        return None
    figures = next((m for m in plan.get("models") or [] if m.get("name") == model), plan)
    return {"replicas": replicas, "cost_per_token": figures.get("cost_per_token")}


def pool_prices(
    table: pd.DataFrame, inventory: Inventory, model: str, price_mode: str
) -> dict[str, PoolPrice]:
    """Per-pool price and throughput of one model, as `build_pools` makes them."""
    pools = build_pools(table, inventory, model, price_mode=price_mode).pools
    return {
        str(row["id"]): PoolPrice(float(row["price_per_gpu_hour"]), float(row["tokens_per_s"]))
        for row in pools.to_dict("records")
    }


def price_change_events(changes: Iterable[PriceChange], price_mode: str) -> list[dict[str, Any]]:
    """One event a pool: `resource` names the pool, `payload` has old and new price and why."""
    by_pool: dict[str, list[PriceChange]] = {}
    for change in changes:
        by_pool.setdefault(change.pool, []).append(change)
    events = []
    for pool, pool_changes in sorted(by_pool.items()):
        first = pool_changes[0]
        cloud, region, gpu = [*pool.split("/", 2), "", ""][:3]
        events.append(
            {
                "event": EVENT_NAME,
                "resource": {
                    "prefect.resource.id": RESOURCE_PREFIX + pool,
                    "prefect.resource.name": pool,
                    "replan.cloud": cloud,
                    "replan.region": region,
                    "replan.gpu": gpu,
                },
                "payload": {
                    "pool": pool,
                    "price_mode": price_mode,
                    "old_price_per_gpu_hour": first.old_price_per_gpu_hour,
                    "new_price_per_gpu_hour": first.new_price_per_gpu_hour,
                    "relative_change": first.relative_change,
                    "models": {c.model: c.reason for c in pool_changes},
                },
            }
        )
    return events


# -- the state store side ---------------------------------------------------------------


def saved_prices(store: StateStore, prices_hash: str) -> pd.DataFrame | None:
    """The saved price table with this content hash, or None."""
    return store.prices_by_hash(prices_hash)


def newest_completed_prices_hash(store: StateStore, limit: int = 50) -> str | None:
    """The prices hash of the newest completed run."""
    for run in store.recent_runs(limit):
        if run.status == "completed" and run.prices_hash:
            return run.prices_hash
    return None


# -- the flow ----------------------------------------------------------------------------


@task(name="emit-price-events")
def emit_price_events_task(events: list[dict[str, Any]]) -> int:
    """Emit each event to the Prefect API; returns how many were sent."""
    from prefect.events import emit_event

    for event in events:
        emit_event(**event)
    return len(events)


@flow(name="watch-prices")
def watch_prices(
    inventory: str = "config/inventory.yaml",
    sources: list[str] | None = None,
    source_location: str | None = None,
    models: list[str] | None = None,
    price_mode: str = "spot",
    change_threshold: float = DEFAULT_CHANGE_THRESHOLD,
    max_price_age_days: float | None = None,
    state_url: str | None = None,
) -> dict[str, Any]:
    """Compare today's prices with those behind each published plan; emit the moves that matter."""
    logger = get_run_logger()
    sources = list(sources or ["snapshot"])
    store = StateStore.from_url(state_url_with_password(state_url))
    fleet = load_inventory_task(inventory)
    prices = fetch_prices_task(sources, source_location, store, timedelta(0))
    validate_prices_task(prices, max_price_age_days or None)
    channel, _ = publication_channel()
    last_hash = newest_completed_prices_hash(store)
    last_table = saved_prices(store, last_hash) if last_hash else None
    changes: list[PriceChange] = []
    skipped: dict[str, str] = {}
    published = published_fleet(store, channel)  # the fleet plan, or pre-fleet plans' union
    for model in list(models or fleet.models):
        plan = model_plan(published.plan, model, price_mode) if published else None
        if published is None or plan is None:
            skipped[model] = f"no {price_mode} plan of it published on {channel!r} yet"
            continue
        baseline_hash = store.get_run(published.run_id).prices_hash
        baseline = saved_prices(store, baseline_hash) if baseline_hash else None
        if baseline is None:
            skipped[model] = "the published plan's prices are not in the store"
            continue
        current = pool_prices(prices.table, fleet, model, price_mode)
        found = detect_price_changes(
            model,
            pool_prices(baseline, fleet, model, price_mode),
            current,
            plan_pool_ids(plan),
            plan.get("cost_per_token"),
            change_threshold,
        )
        last_run = (
            pool_prices(last_table, fleet, model, price_mode) if last_table is not None else None
        )
        changes += not_yet_planned(found, last_run, current, change_threshold)
    for model, why in skipped.items():
        logger.info("%s: nothing to compare: %s", model, why)
    events = price_change_events(changes, price_mode)
    emitted = emit_price_events_task(events) if events else 0
    logger.info("%d pool(s) moved enough to re-plan; %d event(s) emitted", len(events), emitted)
    return {
        "channel": channel,
        "prices": {"source": prices.source, "rows": len(prices.table)},
        "changes": [asdict(c) for c in changes],
        "events": emitted,
        "skipped": skipped,
    }
