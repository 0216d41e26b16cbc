"""The report's sections, built once from the night's numbers and rendered to every format."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
from solver.plan import Stage
from tasks.report.blocks import (
    MISSING,
    Bold,
    Bullets,
    Code,
    Image,
    Section,
    finite_number,
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
from tasks.report.fleet import fleet_sections

SECONDS_PER_DAY = 86_400.0
HOURS_PER_DAY = 24.0
CHART_FILE = "chart.png"
MAX_PRICE_ROWS = 20
PRICE_MOVE_MIN = 0.01  # relative: smaller price moves are hidden from the report
STALE_AFTER_DAYS = 2.0  # prices older than this are flagged at the top of the report
STRATEGY_ORDER = ("exact", "iterative", "weighted", "min-cost", "max-throughput")
STRATEGY_NOTE = (
    "Why the strategies differ: the weighted strategy maximises (1−w)·T/T_norm − w·C/C_norm, "
    "which trades throughput against cost and cannot find the plan of least $/token = C/T; "
    "the iterative strategy's budget loop only approaches it. Only the exact strategy "
    "minimises $/token."
)
STAGE_LEGEND = (
    "How to read a replica: each stage names its pool, the GPUs it uses and the model layers it "
    "holds. TP (tensor parallelism) is the number of GPUs that share each of the stage's layers; "
    "a replica with several stages runs them as a pipeline, in the order shown."
)


def gpu_count(count: int) -> str:
    return f"{count} GPU" if count == 1 else f"{count} GPUs"


def describe_stages(stages: Sequence[Stage]) -> str:
    """e.g. `lab/east/V100: 1 GPU (TP 1), 32 layers` (stages joined by ` → `)."""
    return " → ".join(f"{s.pool}: {gpu_count(s.tp)} (TP {s.tp}), {s.layers} layers" for s in stages)


def _of_model(change: Any) -> str:
    """`llama-8b on ` for a fleet change that names its model, else nothing."""
    model = getattr(change, "model", "")
    return f"{model} on " if model else ""


def replicas(count: int) -> str:
    return f"{count} replica" if count == 1 else f"{count} replicas"


@dataclass(frozen=True)
class ReportLinks:
    """Where the reader finds more: the report, the Prefect run, a public chart image."""

    report_url: str | None = None  # an http(s) URL or a file path
    run_url: str | None = None
    chart_url: str | None = None  # set only when the report is served at a public base URL
    export_url: str | None = None  # the run's launch specs (their README): a URL or a path


@dataclass(frozen=True)
class ExportNote:
    """The launch specs written next to the report: where, what (one line), or why not."""

    location: str  # the export's README URL or its folder's path
    text: str  # ExportResult.summary(), or the reason nothing was written
    written: bool = True


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
        old = finite_number(_first(row, _OLD_KEYS))
        new = finite_number(_first(row, _NEW_KEYS))
        pct = finite_number(_first(row, _PCT_KEYS))
        if new is None and old is not None and pct is not None:
            new = old * (1 + pct / 100)
        moves.append(PriceMove(str(row.get("pool", "")), str(row.get("gpu", "")), old, new))
    return moves


def _first(row: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in row:
            return row[key]
    return None


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
    dry_run: bool = False
    links: ReportLinks = ReportLinks()
    # single-GPU tokens/s per pool of tonight's scenario: finds pools that would beat the plan
    pool_tokens_per_s: Mapping[str, float] | None = None
    earlier_prices: bool = True  # False: no earlier run's prices to compare with
    now: datetime | None = None  # for the data's age; default: the current time
    export: ExportNote | None = None  # the run's launch specs (None: the run writes none)
    # tonight's exact fleet plan solved without the spot-loss constraint (price of resilience)
    unconstrained: Mapping[str, Any] | None = None

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

    def tonight_cost_per_token(self) -> float | None:
        return cost_per_token_of(self.exact) if is_feasible(self.exact) else None


def headline(inputs: ReportInputs) -> str:
    """One line: what happens tonight, with both comparisons when the plan switches."""
    decision = inputs.decision
    if decision.kind == "initial":
        cpt = usd_per_mtoken(inputs.tonight_cost_per_token())
        text = f"publish the first plan, {cpt} per million tokens"
    elif decision.kind == "infeasible":
        text = "switch plan: the running plan no longer fits tonight's prices and quotas"
    elif decision.publish:
        published = cost_per_token_of(inputs.previous)
        now = inputs.tonight_cost_per_token()
        _, _, kept = inputs.previous_tonight()
        text = (
            f"switch plan: {usd_per_mtoken(published)} → {usd_per_mtoken(now)} per million "
            f"tokens vs published ({signed_pct(relative_change(published, now))}); "
            f"{_saving_words(kept, now)} keeping last night's plan"
        )
    elif decision.kind == "unchanged":
        text = "keep the running plan (tonight's plan is the same)"
    elif decision.kind == "below-threshold":
        text = f"keep the running plan (a switch would save less than {decision.threshold:.0%})"
    else:
        # The violations are listed in the report; a title (and Slack header) stays short.
        text = "keep the running plan (no feasible plan tonight)"
    return ("DRY RUN, nothing published: " if inputs.dry_run else "") + text


def _saving_words(before: float | None, after: float | None) -> str:
    change = relative_change(before, after)
    if change is None:
        return "no figure for"
    if change <= 0:
        return f"{-change * 100:.1f}% cheaper than"
    return f"{change * 100:.1f}% dearer than"


def data_age_days(inputs: ReportInputs) -> float | None:
    """Age of the prices in days, from `freshness['fetched_at']`."""
    fetched = inputs.freshness.get("fetched_at") if inputs.freshness else None
    if isinstance(fetched, str):
        try:
            fetched = datetime.fromisoformat(fetched.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(fetched, datetime):
        return None
    if fetched.tzinfo is None:
        fetched = fetched.replace(tzinfo=UTC)
    now = inputs.now or datetime.now(UTC)
    return (now - fetched).total_seconds() / SECONDS_PER_DAY


def warnings(inputs: ReportInputs) -> list[str]:
    """What the reader must know before trusting the numbers: dry run, stale or fallback data."""
    found = []
    if inputs.dry_run:
        found.append(
            "Dry run: nothing was published; the steps below are what a real run would do."
        )
    age = data_age_days(inputs)
    if age is not None and age > STALE_AFTER_DAYS:
        source = inputs.freshness.get("source", "the price source")
        found.append(
            f"Stale prices: the prices ({source}) are {age:,.0f} days old; the plan is cheapest "
            "at those prices, not necessarily at today's."
        )
    fallback = str(inputs.freshness.get("fallback") or "") if inputs.freshness else ""
    if fallback and not fallback.startswith("none"):
        found.append(f"Fallback prices: {fallback}.")
    unproven = unproven_warning(inputs.exact)
    if unproven:
        found.append(unproven)
    return found


def unproven_warning(exact: Mapping[str, Any] | None) -> str | None:
    """Say so when the exact plan is the best found within the time limit, not a proven optimum."""
    if not exact or exact.get("status") != "feasible":
        return None
    bound = exact.get("lower_bound_cost_per_token")
    gap = exact.get("mip_gap")
    within = ""
    if isinstance(gap, int | float) and isinstance(bound, int | float) and bound > 0:
        within = (
            f"; it is at most {100 * gap:.1f} % above the optimum (no plan costs less than "
            f"{usd_per_mtoken(bound)} per million tokens)"
        )
    return (
        "Not proven optimal: the solver's time limit ended the exact search before its proof, so "
        f"tonight's plan is the best found{within}."
    )


def framing(inputs: ReportInputs) -> list[str]:
    """Tonight's cost against what was published, and against keeping last night's plan."""
    now_cpt = inputs.tonight_cost_per_token()
    now_c = figure(inputs.exact, "cost_per_hour") if is_feasible(inputs.exact) else None
    if inputs.previous is None:
        return [
            f"Tonight's plan: {usd_per_mtoken(now_cpt)} per million tokens, {usd(now_c)} per "
            "hour. No plan was published before."
        ]
    published_cpt = cost_per_token_of(inputs.previous)
    published_c = figure(inputs.previous, "cost_per_hour")
    _, kept_c, kept_cpt = inputs.previous_tonight()
    change = relative_change(published_cpt, now_cpt)
    bill = (
        "" if change is None else (" (the bill goes up)" if change > 0 else " (the bill goes down)")
    )
    return [
        f"Against what was published: {usd_per_mtoken(published_cpt)} → "
        f"{usd_per_mtoken(now_cpt)} per million tokens ({signed_pct(change)}), "
        f"{usd(published_c)} → {usd(now_c)} per hour{bill}.",
        f"Against keeping last night's plan at tonight's prices: {usd_per_mtoken(kept_cpt)} → "
        f"{usd_per_mtoken(now_cpt)} per million tokens "
        f"({signed_pct(relative_change(kept_cpt, now_cpt))}), "
        f"{usd(kept_c)} → {usd(now_c)} per hour.",
    ]


def steps(inputs: ReportInputs) -> list[str]:
    """From the running fleet (the published plan) to tonight's plan: launch, then drain."""
    decision, diff = inputs.decision, inputs.diff
    if decision.kind == "no-plan":
        return [
            "Nothing to change: keep the running fleet. No feasible plan tonight; check quotas."
        ]
    if not decision.publish or not diff.changed:
        return ["Nothing to change: keep the running fleet (the published plan)."]
    found = [
        f"Launch {replicas(c.count)} of {_of_model(c)}{describe_stages(c.stages)} "
        f"({gpu_count(c.gpus_per_replica)} each, {c.cloud}/{c.region})."
        for c in diff.added
    ]
    if diff.removed:
        found.append(
            "Wait until the new replicas serve traffic, then drain: launching first keeps "
            "capacity at or above what runs now, and the fleet ends at tonight's "
            f"{rate(diff.tokens_per_s_after)} tokens/s for a demand of "
            f"{inputs.demand_tokens_per_s:,.0f} tokens/s."
        )
    found += [
        f"Drain {replicas(c.count)} of {_of_model(c)}{describe_stages(c.stages)} "
        f"({c.cloud}/{c.region}) and release their GPUs."
        for c in diff.removed
    ]
    if diff.first:
        found.append("Nothing to drain: no plan was published before.")
    return found


def build_sections(inputs: ReportInputs, chart_file: str = CHART_FILE) -> list[Section]:
    notes = warnings(inputs)
    top = [Section("Read first", (Bullets(tuple(para(n) for n in notes)),))] if notes else []
    return [
        *top,
        decision_section(inputs),
        Section("What to do", (Bullets(tuple(para(s) for s in steps(inputs)), ordered=True),)),
        *([export_section(inputs.export)] if inputs.export is not None else []),
        *fleet_sections(inputs.exact, inputs.unconstrained),
        changes_section(inputs),
        cost_section(inputs),
        strategies_section(inputs),
        Section(
            "Chart",
            (
                para(
                    "Cost per hour against tokens/s: the least cost found for each throughput "
                    "(the frontier), each strategy's plan and last night's plan; the dashed line "
                    "has constant $/token."
                ),
                Image(chart_file, "cost per hour against tokens/s"),
            ),
        ),
        price_section(inputs),
        freshness_section(inputs),
        links_section(inputs),
    ]


def export_section(export: ExportNote) -> Section:
    """Where tonight's launch specs are, or why none were written."""
    if export.written:
        text = para(
            "Tonight's plan as launch specs (SkyServe services running vLLM, plan.json and a "
            "README.md saying what to launch first and what to stop after): ",
            Code(export.location),
            f". {export.text[:1].upper()}{export.text[1:]}.",
        )
    else:
        text = para(
            "No launch specs were written tonight: ",
            export.text,
            ". The plan and this report stand; `replan export --run N --out DIR` writes them "
            "once the cause is fixed.",
        )
    return Section("Launch specs", (text,))


def links_section(inputs: ReportInputs) -> Section:
    links = inputs.links
    rows = [
        [name, value]
        for name, value in (
            ("report", links.report_url),
            (
                "launch specs",
                inputs.export.location if inputs.export and inputs.export.written else None,
            ),
            ("Prefect run", links.run_url),
        )
        if value
    ]
    if not rows:
        return Section("Links", (para("No report URL or Prefect UI URL was configured."),))
    return Section("Links", (table(["what", "where"], rows),))


def decision_section(inputs: ReportInputs) -> Section:
    decision = inputs.decision
    verb = "Switch to tonight's plan" if decision.publish else "Keep the running plan"
    if decision.kind == "initial":
        verb = "Publish the first plan"
    # a saving is stated by `framing`, against both plans; other kinds need their reason
    reason = {
        "infeasible": " (the running plan no longer fits)",
        "below-threshold": f" ({decision.reason})",
        "no-plan": f" ({decision.reason})",
        "unchanged": " (tonight's plan is the same)",
    }.get(decision.kind, "")
    blocks: list[Any] = [para(Bold(verb), f"{reason}.")]
    blocks.append(Bullets(tuple(para(line) for line in framing(inputs))))
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
                    _of_model(change) + describe_stages(change.stages),
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
        blocks.append(para(STAGE_LEGEND))
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
            para(STRATEGY_NOTE, " ", tonight),
        ),
    )


def _pools_in_plans(*plans: Mapping[str, Any] | None) -> set[str]:
    return {pool for plan in plans for key in placement_of(plan) for pool in pools_of(key)}


def _would_beat(inputs: ReportInputs, move: PriceMove) -> bool:
    """One GPU of the pool at its new price is cheaper per token than tonight's exact plan."""
    tokens_per_s = (inputs.pool_tokens_per_s or {}).get(move.pool)
    plan_cpt = inputs.tonight_cost_per_token()
    if not tokens_per_s or plan_cpt is None or move.new_price_per_gpu_hour is None:
        return False
    return move.new_price_per_gpu_hour / (tokens_per_s * 3600.0) < plan_cpt


def moves_that_matter(inputs: ReportInputs) -> tuple[list[tuple[PriceMove, str]], int]:
    """(move, why it matters) for pools a plan uses or that would beat tonight's plan, moved
    by at least PRICE_MOVE_MIN (or that came or left); and how many moves were hidden."""
    shown = [inputs.previous, *inputs.plans.values()]
    used = _pools_in_plans(*shown)
    before, after = _pools_in_plans(inputs.previous), _pools_in_plans(inputs.exact)
    kept: list[tuple[PriceMove, str]] = []
    moved = [m for m in inputs.price_moves if m.old_price_per_gpu_hour != m.new_price_per_gpu_hour]
    for move in moved:
        change = move.change
        if change is not None and abs(change) < PRICE_MOVE_MIN:
            continue
        if move.pool in used:
            why = {
                (True, True): "running and tonight",
                (True, False): "running plan",
                (False, True): "tonight's plan",
            }.get((move.pool in before, move.pool in after), "another strategy's plan")
        elif _would_beat(inputs, move):
            why = "would beat tonight's plan"
        else:
            continue
        kept.append((move, why))

    def order(item: tuple[PriceMove, str]) -> tuple[int, float, str]:
        move, why = item
        size = abs(move.change) if move.change is not None else math.inf  # came or left first
        return (0 if why != "would beat tonight's plan" else 1, -size, move.pool)

    kept.sort(key=order)
    return kept, len(moved) - len(kept)


def price_section(inputs: ReportInputs) -> Section:
    if not inputs.earlier_prices:
        return Section(
            "Price moves",
            (para("No earlier run's prices to compare with: this is the first run."),),
        )
    kept, hidden = moves_that_matter(inputs)
    hidden_note = (
        f"{hidden} other move(s) hidden: below {PRICE_MOVE_MIN:.0%}, or in pools no plan uses "
        "and that would not beat tonight's plan."
        if hidden
        else ""
    )
    if not kept:
        text = "No price that matters to the plans moved since the last run."
        return Section("Price moves", (para(text, " ", hidden_note) if hidden else para(text),))
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
            why,
        ]
        for m, why in kept[:MAX_PRICE_ROWS]
    ]
    blocks: list[Any] = [
        para(
            "Moves since the last run, in $ per GPU-hour, of pools the plans use and of pools "
            "that would now beat tonight's plan."
        ),
        table(["pool", "GPU", "last run", "tonight", "change", "why it matters"], rows),
    ]
    left_out = len(kept) - len(rows)
    if left_out or hidden:
        blocks.append(
            para(f"{left_out} smaller move(s) left out. " if left_out else "", hidden_note)
        )
    return Section("Price moves", tuple(blocks))


def freshness_section(inputs: ReportInputs) -> Section:
    if not inputs.freshness:
        return Section("Data freshness", (para("No freshness information was given."),))
    first = ("source", "fetched_at", "age", "fallback")
    keys = [k for k in first if k in inputs.freshness]
    keys += [k for k in inputs.freshness if k not in first]
    rows = [[str(k).replace("_", " "), freshness_text(inputs.freshness[k])] for k in keys]
    return Section("Data freshness", (table(["field", "value"], rows),))
