"""The report's sections, built once from the night's numbers and rendered to every format."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from solver.diff import (
    Decision,
    PlanDiff,
    cost_per_token_of,
    gap_to_exact,
    placement_of,
    pools_of,
)
from tasks.report.blocks import (
    MISSING,
    Bold,
    Bullets,
    Image,
    Section,
    para,
    rate,
    relative_change,
    signed_int,
    signed_pct,
    table,
    usd,
    usd_per_mtoken,
    usd_per_token,
    usd_precise,
)

SECONDS_PER_DAY = 86_400.0
HOURS_PER_DAY = 24.0
CHART_FILE = "chart.png"
MAX_PRICE_ROWS = 20
STRATEGY_ORDER = ("exact", "iterative", "weighted", "min-cost", "max-throughput")
SEED_LESSON = (
    "The seed's lesson: a weighted objective, max (1−w)·T/T_norm − w·C/C_norm, trades "
    "throughput against cost along the Pareto frontier and cannot find the plan of least "
    "$/token = C/T; the iterative budget loop only approaches it. Only the exact fractional "
    "solve minimises $/token."
)


@dataclass(frozen=True)
class PriceMove:
    """One pool's price, last night and tonight, in $/GPU-hour."""

    pool: str
    gpu: str
    old_price_per_gpu_hour: float | None
    new_price_per_gpu_hour: float | None

    @property
    def change(self) -> float | None:
        return relative_change(self.old_price_per_gpu_hour, self.new_price_per_gpu_hour)


# -- figures ------------------------------------------------------------------------------


def figure(plan: Mapping[str, Any] | None, key: str) -> float | None:
    """A plan's figure as a float, None when absent or not finite."""
    if plan is None or plan.get(key) is None:
        return None
    value = float(plan[key])
    return value if math.isfinite(value) else None


def usd_per_day_at_demand(cost_per_token: float | None, demand_tokens_per_s: float) -> float | None:
    """$/token × demand (tokens/s) × 86,400 s: what serving the demand costs a day."""
    if cost_per_token is None or demand_tokens_per_s <= 0:
        return None
    return cost_per_token * demand_tokens_per_s * SECONDS_PER_DAY


def usd_per_day_of_plan(cost_per_hour: float | None) -> float | None:
    """The whole plan's fleet, rented all day."""
    return None if cost_per_hour is None else cost_per_hour * HOURS_PER_DAY


def is_feasible(plan: Mapping[str, Any] | None) -> bool:
    return plan is not None and plan.get("status") in ("optimal", "feasible")


def ordered_strategies(plans: Mapping[str, Mapping[str, Any]]) -> list[str]:
    known = [s for s in STRATEGY_ORDER if s in plans]
    return known + sorted(s for s in plans if s not in STRATEGY_ORDER)


# -- price moves and freshness inputs -----------------------------------------------------

_OLD_KEYS = ("old_price_per_gpu_hour", "old", "price_per_gpu_hour_old", "before")
_NEW_KEYS = (
    "new_price_per_gpu_hour",
    "new",
    "price_per_gpu_hour_new",
    "after",
    "price_per_gpu_hour",
)
_PCT_KEYS = ("pct", "change_pct", "pct_change")


def price_moves_from(rows: pd.DataFrame | Sequence[Mapping[str, Any]] | None) -> list[PriceMove]:
    """Normalise the caller's price moves: (pool, gpu, old, new[, pct in percent]) rows."""
    if rows is None:
        return []
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    moves = []
    for row in records:
        old = _number(_first(row, _OLD_KEYS))
        new = _number(_first(row, _NEW_KEYS))
        pct = _number(_first(row, _PCT_KEYS))
        if new is None and old is not None and pct is not None:
            new = old * (1 + pct / 100)
        moves.append(PriceMove(str(row.get("pool", "")), str(row.get("gpu", "")), old, new))
    return moves


def _first(row: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in row:
            return row[key]
    return None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def freshness_text(value: Any) -> str:
    """A freshness value as text: ages as hours and minutes, times in ISO form."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, timedelta | pd.Timedelta):
        minutes = int(value.total_seconds() // 60)
        return f"{minutes // 60} h {minutes % 60:02d} min"
    if isinstance(value, datetime | pd.Timestamp):
        return value.isoformat()
    return str(value)


# -- sections -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportInputs:
    model_name: str
    plans: Mapping[str, Mapping[str, Any]]
    previous: Mapping[str, Any] | None
    diff: PlanDiff
    decision: Decision
    price_moves: list[PriceMove]
    freshness: Mapping[str, Any]
    demand_tokens_per_s: float

    @property
    def exact(self) -> Mapping[str, Any] | None:
        return self.plans.get("exact")

    def previous_tonight(self) -> tuple[float | None, float | None, float | None]:
        """(tokens/s, $/hour, $/token) of last night's placement at tonight's prices if known."""
        d = self.decision
        if d.previous_cost_per_hour is not None:
            return d.previous_tokens_per_s, d.previous_cost_per_hour, d.previous_cost_per_token
        return (
            self.diff.tokens_per_s_before,
            self.diff.cost_per_hour_before,
            self.diff.cost_per_token_before,
        )


def headline(inputs: ReportInputs) -> str:
    """One line: what happens tonight."""
    decision = inputs.decision
    verb = "publish" if decision.publish else "keep the published plan"
    # The violations are listed in the report; a title (and Slack header) stays short.
    reason = "current plan infeasible" if decision.kind == "infeasible" else decision.reason
    return f"{verb} ({reason})"


def build_sections(inputs: ReportInputs, chart_file: str = CHART_FILE) -> list[Section]:
    return [
        decision_section(inputs),
        changes_section(inputs),
        cost_section(inputs),
        strategies_section(inputs),
        Section(
            "Chart",
            (
                para(
                    "Cost per hour against tokens/s: the frontier of best plans, the three "
                    "strategies' picks and last night's plan; dashed lines have constant $/token."
                ),
                Image(chart_file, "cost per hour against tokens/s"),
            ),
        ),
        price_section(inputs),
        freshness_section(inputs),
    ]


def decision_section(inputs: ReportInputs) -> Section:
    decision = inputs.decision
    verb = "Publish" if decision.publish else "Keep the published plan"
    blocks: list[Any] = [para(Bold(verb), f": {decision.reason}.")]
    if decision.kind == "infeasible":
        blocks.append(para("Last night's plan must move, at tonight's prices and quotas:"))
        blocks.append(Bullets(tuple(para(v) for v in decision.violations)))
    elif decision.kind == "below-threshold":
        blocks.append(
            para(
                f"Tonight's exact plan differs, but switching saves less than "
                f"{decision.threshold * 100:g}% of $/token and of cost: the fleet stays put to "
                "avoid flapping."
            )
        )
    elif decision.kind == "no-plan":
        blocks.append(para("No feasible plan tonight: the published plan stays; check quotas."))
    return Section("Decision", tuple(blocks))


def _replica_rows(inputs: ReportInputs) -> list[list[str]]:
    rows = []
    for sign, changes in (("added", inputs.diff.added), ("removed", inputs.diff.removed)):
        for change in changes:
            rows.append(
                [
                    sign,
                    str(change.count),
                    ", ".join(change.pools),
                    f"{change.cloud}/{change.region}",
                    str(change.gpus_per_replica),
                    change.describe(),
                ]
            )
    return rows


def changes_section(inputs: ReportInputs) -> Section:
    diff = inputs.diff
    blocks: list[Any] = []
    if diff.first:
        blocks.append(para("First run: no plan was published before; every replica is new."))
    elif not diff.changed:
        blocks.append(para("Tonight's exact plan places the same replicas as the published one."))
    else:
        blocks.append(para("Tonight's exact plan against the last published plan."))
    if diff.changed:
        blocks.append(
            table(
                ["change", "replicas", "pools", "cloud/region", "GPUs per replica", "stages"],
                _replica_rows(inputs),
                "Replicas added and removed",
            )
        )
        added, removed = diff.replicas_added_by_pool, diff.replicas_removed_by_pool
        pools = sorted(set(added) | set(removed))
        blocks.append(
            table(
                ["pool", "replicas added", "replicas removed", "GPUs before", "GPUs after"],
                [
                    [
                        pool,
                        str(added.get(pool, 0)),
                        str(removed.get(pool, 0)),
                        str(diff.gpus_by_pool_before.get(pool, 0)),
                        str(diff.gpus_by_pool_after.get(pool, 0)),
                    ]
                    for pool in pools
                ],
                "Replicas per pool",
            )
        )
    types = sorted(set(diff.gpus_by_type_before) | set(diff.gpus_by_type_after))
    blocks.append(
        table(
            ["GPU", "before", "after", "change"],
            [
                [
                    gpu,
                    str(diff.gpus_by_type_before.get(gpu, 0)),
                    str(diff.gpus_by_type_after.get(gpu, 0)),
                    signed_int(
                        diff.gpus_by_type_after.get(gpu, 0) - diff.gpus_by_type_before.get(gpu, 0)
                    ),
                ]
                for gpu in types
            ],
            "GPUs by type",
        )
    )
    return Section("What changed", tuple(blocks))


def cost_section(inputs: ReportInputs) -> Section:
    demand = inputs.demand_tokens_per_s
    previous = inputs.previous
    exact = inputs.exact
    prev_t, prev_c, prev_cpt = inputs.previous_tonight()
    now_t, now_c, now_cpt = figure(exact, "tokens_per_s"), figure(exact, "cost_per_hour"), None
    now_cpt = cost_per_token_of(exact) if is_feasible(exact) else None
    published_cpt = cost_per_token_of(previous)

    def row(name: str, as_published: Any, repriced: Any, tonight: Any, fmt: Any) -> list[str]:
        return [
            name,
            fmt(as_published),
            fmt(repriced),
            fmt(tonight),
            signed_pct(relative_change(repriced, tonight)),
        ]

    rows = [
        row("throughput (tokens/s)", figure(previous, "tokens_per_s"), prev_t, now_t, rate),
        row("cost ($/hour)", figure(previous, "cost_per_hour"), prev_c, now_c, usd),
        row("$/token", published_cpt, prev_cpt, now_cpt, usd_per_token),
        row("$ per million tokens", published_cpt, prev_cpt, now_cpt, usd_per_mtoken),
        row(
            f"$/day at the demand ({demand:,.0f} tokens/s)",
            usd_per_day_at_demand(published_cpt, demand),
            usd_per_day_at_demand(prev_cpt, demand),
            usd_per_day_at_demand(now_cpt, demand),
            usd,
        ),
        row(
            "$/day of the plan (whole fleet)",
            usd_per_day_of_plan(figure(previous, "cost_per_hour")),
            usd_per_day_of_plan(prev_c),
            usd_per_day_of_plan(now_c),
            usd,
        ),
        [
            "GPUs",
            str(sum(inputs.diff.gpus_by_type_before.values())) if previous else MISSING,
            str(sum(inputs.diff.gpus_by_type_before.values())) if previous else MISSING,
            str(sum(inputs.diff.gpus_by_type_after.values())),
            signed_int(
                sum(inputs.diff.gpus_by_type_after.values())
                - sum(inputs.diff.gpus_by_type_before.values())
            )
            if previous
            else MISSING,
        ],
    ]
    return Section(
        "Cost at the demand",
        (
            para(
                "$/day at the demand = $/token × demand (tokens/s) × 86,400 s: serving exactly "
                "the demand. $/day of the plan = $/hour × 24: renting the whole fleet all day. "
                "The change compares tonight's exact plan with last night's placement at "
                "tonight's prices."
            ),
            table(
                [
                    "figure",
                    "last night (as published)",
                    "last night (tonight's prices)",
                    "tonight (exact)",
                    "change",
                ],
                rows,
            ),
        ),
    )


def strategies_section(inputs: ReportInputs) -> Section:
    exact = inputs.exact
    demand = inputs.demand_tokens_per_s
    rows = []
    for strategy in ordered_strategies(inputs.plans):
        plan = inputs.plans[strategy]
        feasible = is_feasible(plan)
        cpt = cost_per_token_of(plan) if feasible else None
        rows.append(
            [
                strategy,
                str(plan.get("status", MISSING)),
                rate(figure(plan, "tokens_per_s")) if feasible else MISSING,
                usd(figure(plan, "cost_per_hour")) if feasible else MISSING,
                usd_per_mtoken(cpt),
                usd(usd_per_day_at_demand(cpt, demand)),
                signed_pct(gap_to_exact(plan, exact))
                if feasible and is_feasible(exact)
                else MISSING,
                str(plan.get("gpus", MISSING)) if feasible else MISSING,
            ]
        )
    gaps = [
        f"{strategy} {signed_pct(gap_to_exact(inputs.plans[strategy], exact))}"
        for strategy in ("iterative", "weighted")
        if is_feasible(inputs.plans.get(strategy)) and is_feasible(exact)
    ]
    tonight = (
        f"Tonight each token costs more than exact's by: {', '.join(gaps)}."
        if gaps
        else "Tonight no gap could be measured (a strategy found no feasible plan)."
    )
    return Section(
        "Gap to exact",
        (
            table(
                [
                    "strategy",
                    "status",
                    "tokens/s",
                    "$/hour",
                    "$ per million tokens",
                    "$/day at demand",
                    "gap to exact ($/token)",
                    "GPUs",
                ],
                rows,
            ),
            para(SEED_LESSON, " ", tonight),
        ),
    )


def _pools_in_plans(*plans: Mapping[str, Any] | None) -> set[str]:
    return {pool for plan in plans for key in placement_of(plan) for pool in pools_of(key)}


def price_section(inputs: ReportInputs) -> Section:
    moves = [m for m in inputs.price_moves if m.old_price_per_gpu_hour != m.new_price_per_gpu_hour]
    if not moves:
        return Section("Price moves", (para("No price moved since the last run."),))
    before = _pools_in_plans(inputs.previous)
    after = _pools_in_plans(inputs.exact)

    def used(pool: str) -> str:
        return {
            (True, True): "both",
            (True, False): "last night",
            (False, True): "tonight",
        }.get((pool in before, pool in after), "")

    def order(move: PriceMove) -> tuple[int, float, str]:
        change = move.change
        size = abs(change) if change is not None else math.inf  # offers that came or left first
        return (0 if used(move.pool) else 1, -size, move.pool)

    ranked = sorted(moves, key=order)
    rows = [
        [
            m.pool,
            m.gpu,
            usd_precise(m.old_price_per_gpu_hour)
            if m.old_price_per_gpu_hour is not None
            else "new offer",
            usd_precise(m.new_price_per_gpu_hour)
            if m.new_price_per_gpu_hour is not None
            else "gone",
            signed_pct(m.change),
            used(m.pool) or "no",
        ]
        for m in ranked[:MAX_PRICE_ROWS]
    ]
    blocks: list[Any] = [
        para("Pools the plans use come first, then the largest moves, in $ per GPU-hour."),
        table(["pool", "GPU", "last night", "tonight", "change", "in a plan"], rows),
    ]
    if len(ranked) > MAX_PRICE_ROWS:
        blocks.append(para(f"{len(ranked) - MAX_PRICE_ROWS} smaller move(s) left out."))
    return Section("Price moves", tuple(blocks))


def freshness_section(inputs: ReportInputs) -> Section:
    if not inputs.freshness:
        return Section("Data freshness", (para("No freshness information was given."),))
    first = ("source", "fetched_at", "age", "fallback")
    keys = [k for k in first if k in inputs.freshness]
    keys += [k for k in inputs.freshness if k not in first]
    rows = [[str(k).replace("_", " "), freshness_text(inputs.freshness[k])] for k in keys]
    return Section("Data freshness", (table(["field", "value"], rows),))
