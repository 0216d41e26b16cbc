"""The I/O edges of the nightly flow as Prefect tasks; each wraps one plain function."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from solver import scenario_from_dict, solve
from solver.frontier import frontier
from tasks.inventory import Inventory
from tasks.pools import (
    PoolsError,
    build_fleet,
    build_pools,
    build_scenario,
    fleet_document,
    per_gpu_prices,
)
from tasks.prices import fetch_prices
from tasks.prices.errors import MalformedResponse, PriceSourceError
from tasks.state import StateStore
from tasks.validation import (
    ValidationFailed,
    ValidationReport,
    check_inventory_file,
    require_valid,
    validate_fleet_pools,
    validate_pools,
    validate_prices,
)


@dataclass(frozen=True)
class PriceInputs:
    """The validated price table of a run and where it came from."""

    table: pd.DataFrame
    source: str
    fetched_at: datetime
    fallback_note: str  # "" when a live source answered


LOCAL_SOURCES = frozenset({"file"})  # data the operator supplied: bad content is invalid data


class NoPrices(RuntimeError):
    """Every price source failed and the store holds no price table young enough."""


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@task(name="load-inventory")
def load_inventory_task(path: str) -> Inventory:
    """Load and validate the inventory; invalid data stops the run (ValidationFailed)."""
    inventory, report = check_inventory_file(path)
    require_valid(report)
    assert inventory is not None
    return inventory


@task(name="fetch-prices", cache_policy=NO_CACHE)  # the store is no cacheable input
def fetch_prices_task(
    sources: list[str],
    location: str | None,
    store: StateStore,
    fallback_max_age: timedelta,
) -> PriceInputs:
    """The first source that answers; else the store's last good prices if young enough.

    A local file that cannot be read as a canonical price table is invalid data, not a source
    that failed: it stops the run (ValidationFailed) instead of falling back.
    """
    logger = get_run_logger()
    failures: list[str] = []
    for source in sources:
        try:
            table = fetch_prices(source, location)
        except PriceSourceError as exc:
            if isinstance(exc, MalformedResponse) and source in LOCAL_SOURCES:
                raise ValidationFailed(ValidationReport.from_error(source, str(exc))) from None
            logger.warning("price source failed: %s", exc)
            failures.append(str(exc))
            continue
        return PriceInputs(table, source, _newest(table), "")
    saved = store.last_good_prices(fallback_max_age)
    if saved is None:
        raise NoPrices(
            "every price source failed and no saved prices are younger than "
            f"{fallback_max_age.total_seconds() / 3600:g} h: " + "; ".join(failures)
        )
    hours = saved.age.total_seconds() / 3600
    note = f"every live source failed; using the last good prices, {hours:.1f} h old"
    logger.warning(note)
    return PriceInputs(saved.table, "state-store", saved.fetched_at, note)


def _newest(table: pd.DataFrame) -> datetime:
    newest = pd.to_datetime(table["fetched_at"], utc=True).max()
    return newest.to_pydatetime() if pd.notna(newest) else datetime.now(UTC)


@task(name="validate-prices")
def validate_prices_task(prices: PriceInputs, max_age_days: float | None) -> None:
    """Great Expectations on the price table; a failure stops the run before solving.

    `max_age_days=None`: 7 days, or the bundled snapshot's age stated in a warning."""
    report = validate_prices(prices.table, max_age_days=max_age_days, subject=prices.source)
    if report.warnings:
        get_run_logger().warning(report.render())
    require_valid(report)


@task(name="build-scenario")
def build_scenario_task(
    prices: pd.DataFrame, inventory: Inventory, model: str, price_mode: str
) -> dict[str, Any]:
    """Pools of one model from prices and inventory, validated, as a scenario document."""
    build = build_pools(prices, inventory, model, price_mode=price_mode)
    report = validate_pools(build.pools, model, subject=f"pools for {model}")
    require_valid(report)
    if build.pools.empty:
        raise ValidationFailed(report.from_error(f"pools for {model}", "no pool has a price"))
    return build_scenario(build.pools, inventory.models[model])


@task(name="build-fleet-scenario")
def build_fleet_scenario_task(
    prices: pd.DataFrame, inventory: Inventory, models: list[str] | None, price_mode: str
) -> tuple[dict[str, Any], list[str]]:
    """The whole fleet's pools (every model, quotas summed), validated, as one scenario
    document (fleet-model.md), and notes on what was left out."""
    subject = "fleet pools"
    try:
        build = build_fleet(prices, inventory, price_mode=price_mode, models=models)
        require_valid(validate_fleet_pools(build.per_model, subject=subject))
        document = fleet_document(build, inventory)
    except PoolsError as exc:
        raise ValidationFailed(ValidationReport.from_error(subject, str(exc))) from None
    return document, list(build.notes)


def resilience_of(scenario_document: dict[str, Any]) -> str:
    """The scenario's `survive_spot_loss` ("none" when not set)."""
    return str((scenario_document.get("solver") or {}).get("survive_spot_loss", "none"))


def without_resilience(scenario_document: dict[str, Any]) -> dict[str, Any]:
    """The same fleet with no spot-loss constraint: the price of resilience is measured on it."""
    options = {
        k: v
        for k, v in (scenario_document.get("solver") or {}).items()
        if k not in ("survive_spot_loss", "survive_fraction")
    }
    return {**scenario_document, "solver": options}


@task(name="solve")
def solve_task(scenario_document: dict[str, Any], strategy: str) -> dict[str, Any]:
    """One strategy's plan (pure solver; figures recomputed from stages)."""
    return solve(scenario_from_dict(scenario_document), strategy).to_json()


@task(name="frontier")
def frontier_task(scenario_document: dict[str, Any]) -> list[tuple[float, float]]:
    return frontier(scenario_from_dict(scenario_document))


def price_moves(
    old: pd.DataFrame | None, new: pd.DataFrame, price_mode: str
) -> list[dict[str, Any]]:
    """Per-GPU price of every fleet pool (`cloud/region/gpu/market`) before and after, where
    both exist: one pool per market in price mode `both`, else the mode's market."""
    if old is None or old.empty:
        return []
    markets = ("spot", "on-demand") if price_mode in ("both", "cheapest") else (price_mode,)

    def cheapest(table: pd.DataFrame, market: str) -> pd.Series:
        frame = table.assign(per_gpu=per_gpu_prices(table, market))
        frame = frame.dropna(subset=["per_gpu"])
        ids = frame["cloud"] + "/" + frame["region"] + "/" + frame["gpu"] + "/" + market
        return frame.groupby(ids)["per_gpu"].min()

    moves = []
    for market in markets:
        before, after = cheapest(old, market), cheapest(new, market)
        for pool_id in sorted(set(before.index) & set(after.index)):
            old_price, new_price = float(before[pool_id]), float(after[pool_id])
            if old_price != new_price:
                moves.append(
                    {
                        "pool": pool_id,
                        "gpu": pool_id.split("/")[2],
                        "old": old_price,
                        "new": new_price,
                    }
                )
    return moves
