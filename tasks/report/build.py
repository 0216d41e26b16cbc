"""`build_report`: the night's plans, diff and decision as Markdown, HTML, PNG and Slack text."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from solver.diff import Decision, PlanDiff, cost_per_token_of, gap_to_exact
from tasks.report.blocks import Image, Section, signed_int, signed_pct, usd, usd_per_mtoken
from tasks.report.chart import ChartPoint, render_chart
from tasks.report.content import (
    CHART_FILE,
    ReportInputs,
    build_sections,
    figure,
    headline,
    is_feasible,
    ordered_strategies,
    price_moves_from,
    usd_per_day_at_demand,
)
from tasks.report.render import render_html_body, render_markdown, wrap_html
from tasks.slack import escape_mrkdwn

MAX_SLACK_LIST = 6  # replica changes and price moves listed in Slack before "… more"

_STYLES = {
    "exact": ("*", "#27ae60"),
    "iterative": ("s", "#e67e22"),
    "weighted": ("^", "#8e44ad"),
}


@dataclass(frozen=True)
class Report:
    """One night's report for one model (or several, from `combine_reports`)."""

    title: str
    markdown: str
    html: str
    images: dict[str, bytes]  # file name → PNG, referenced by the Markdown
    slack_sections: list[str]
    table_rows: list[dict[str, Any]]
    publish: bool
    sections: list[Section] = field(default_factory=list)
    parts: tuple[Report, ...] = ()  # the per-model reports of a combined report

    @property
    def chart_png(self) -> bytes:
        """The chart (the first model's, for a combined report)."""
        return self.images.get(CHART_FILE) or next(iter(self.images.values()), b"")

    def artifact_markdown(self) -> str:
        """The Markdown without image links (an artifact cannot show the run's files)."""
        if self.parts:
            return _combined_markdown(self.title, self.parts, include_images=False)
        return render_markdown(self.title, self.sections, include_images=False)


def build_report(
    model_name: str,
    plans: Mapping[str, Mapping[str, Any]],
    previous: Mapping[str, Any] | None,
    diff: PlanDiff,
    decision: Decision,
    frontier: Sequence[tuple[float, float]],
    price_moves: pd.DataFrame | Sequence[Mapping[str, Any]] | None,
    freshness: Mapping[str, Any],
    demand_tokens_per_s: float,
) -> Report:
    """The report of one model: sections rendered to Markdown and HTML, a chart, Slack text.

    `plans` maps strategy → plan JSON (exact, iterative, weighted); `previous` is the last
    published plan JSON (None on the first run); `frontier` lists (tokens_per_s,
    cost_per_hour) of best plans; `price_moves` rows hold pool, gpu, old and new
    price_per_gpu_hour (or pct, in percent); `freshness` holds source, fetched_at, age and a
    fallback note.
    """
    inputs = ReportInputs(
        model_name=model_name,
        plans=plans,
        previous=previous,
        diff=diff,
        decision=decision,
        price_moves=price_moves_from(price_moves),
        freshness=freshness,
        demand_tokens_per_s=demand_tokens_per_s,
    )
    title = f"replan — {model_name}: {headline(inputs)}"
    sections = build_sections(inputs)
    images = {CHART_FILE: _chart(inputs, frontier)}
    return Report(
        title=title,
        markdown=render_markdown(title, sections),
        html=wrap_html(title, render_html_body(title, sections, images)),
        images=images,
        slack_sections=slack_sections(inputs),
        table_rows=table_rows(inputs),
        publish=decision.publish,
        sections=sections,
    )


def _chart(inputs: ReportInputs, frontier: Sequence[tuple[float, float]]) -> bytes:
    points = []
    for strategy in ordered_strategies(inputs.plans):
        plan = inputs.plans[strategy]
        marker, color = _STYLES.get(strategy, ("D", "#7f8c8d"))
        tokens_per_s, cost_per_hour = figure(plan, "tokens_per_s"), figure(plan, "cost_per_hour")
        if is_feasible(plan) and tokens_per_s and cost_per_hour:
            filled = strategy == "exact"
            points.append(
                ChartPoint(strategy, tokens_per_s, cost_per_hour, marker, color, filled=filled)
            )
    prev_t, prev_c, _ = inputs.previous_tonight()
    if prev_t and prev_c:
        points.append(ChartPoint("last night's plan", prev_t, prev_c, "o", "#2c3e50"))
    exact_cpt = cost_per_token_of(inputs.exact) if is_feasible(inputs.exact) else None
    return render_chart(
        inputs.model_name,
        frontier,
        points,
        demand_tokens_per_s=inputs.demand_tokens_per_s,
        iso_cost_per_token=[exact_cpt] if exact_cpt else [],
    )


# -- Slack --------------------------------------------------------------------------------


def _m(text: Any) -> str:
    return escape_mrkdwn(str(text))


def slack_sections(inputs: ReportInputs) -> list[str]:
    """Concise mrkdwn for `tasks.slack.build_message`: decision, cost, changes, gap, data."""
    decision, diff = inputs.decision, inputs.diff
    verb = "Publish" if decision.publish else "Keep the published plan"
    reason = "current plan infeasible" if decision.kind == "infeasible" else decision.reason
    lines = [f"*{_m(inputs.model_name)}* — *{verb}*: {_m(reason)}"]
    if decision.kind == "infeasible":
        lines += [f"• {_m(v)}" for v in decision.violations[:MAX_SLACK_LIST]]
    sections = ["\n".join(lines)]

    demand = inputs.demand_tokens_per_s
    _, prev_c, prev_cpt = inputs.previous_tonight()
    exact = inputs.exact
    now_cpt = cost_per_token_of(exact) if is_feasible(exact) else None
    now_c = figure(exact, "cost_per_hour")
    arrow = "→"
    sections.append(
        f"*$ per million tokens* {usd_per_mtoken(prev_cpt)} {arrow} {usd_per_mtoken(now_cpt)}"
        f"   *$/day at {demand:,.0f} tokens/s* {usd(usd_per_day_at_demand(prev_cpt, demand))}"
        f" {arrow} {usd(usd_per_day_at_demand(now_cpt, demand))}"
        f"   *$/hour* {usd(prev_c)} {arrow} {usd(now_c)}"
        f"\n_last night's placement at tonight's prices {arrow} tonight's exact plan;"
        f" $/day at demand = $/token × demand × 86,400 s_"
    )

    if diff.changed:
        changes = [f"+{c.count} × {_m(c.describe())}" for c in diff.added] + [
            f"−{c.count} × {_m(c.describe())}" for c in diff.removed
        ]
        shown = changes[:MAX_SLACK_LIST]
        if len(changes) > len(shown):
            shown.append(f"… {len(changes) - len(shown)} more")
        gpus = ", ".join(
            f"{_m(gpu)} {diff.gpus_by_type_before.get(gpu, 0)}{arrow}"
            f"{diff.gpus_by_type_after.get(gpu, 0)} ({signed_int(delta)})"
            for gpu, delta in diff.gpus_by_type_delta.items()
        )
        sections.append("*Replicas*\n" + "\n".join(shown) + (f"\n*GPUs* {gpus}" if gpus else ""))

    gaps = [
        f"{strategy} {signed_pct(gap_to_exact(inputs.plans[strategy], exact))}"
        for strategy in ("iterative", "weighted")
        if is_feasible(inputs.plans.get(strategy)) and is_feasible(exact)
    ]
    if gaps:
        sections.append(
            f"*Gap to exact ($/token)* {', '.join(gaps)} — a weighted objective cannot "
            "minimise $/token (the seed's lesson)."
        )

    moves = sorted(
        (m for m in inputs.price_moves if m.change is not None and m.change != 0),
        key=lambda m: -abs(m.change or 0.0),
    )[:3]
    data = []
    if moves:
        data.append(
            "*Price moves* " + ", ".join(f"{_m(m.pool)} {signed_pct(m.change)}" for m in moves)
        )
    if inputs.freshness:
        fresh = ", ".join(
            f"{_m(k)} {_m(v)}"
            for k, v in inputs.freshness.items()
            if k in ("source", "age", "fallback") and v
        )
        if fresh:
            data.append(f"*Data* {fresh}")
    if data:
        sections.append("\n".join(data))
    return sections


# -- Prefect table artifact ---------------------------------------------------------------


def table_rows(inputs: ReportInputs) -> list[dict[str, Any]]:
    """One row per strategy and one for last night's plan; JSON-safe numbers."""
    demand = inputs.demand_tokens_per_s
    rows = []
    for strategy in ordered_strategies(inputs.plans):
        plan = inputs.plans[strategy]
        feasible = is_feasible(plan)
        cpt = cost_per_token_of(plan) if feasible else None
        rows.append(
            {
                "model": inputs.model_name,
                "plan": strategy,
                "status": str(plan.get("status", "")),
                "tokens_per_s": figure(plan, "tokens_per_s") if feasible else None,
                "cost_per_hour": figure(plan, "cost_per_hour") if feasible else None,
                "usd_per_mtoken": _round(cpt * 1e6 if cpt is not None else None),
                "usd_per_day_at_demand": _round(usd_per_day_at_demand(cpt, demand)),
                "gap_to_exact_pct": _round(_pct(gap_to_exact(plan, inputs.exact)))
                if feasible
                else None,
                "gpus": plan.get("gpus"),
            }
        )
    prev_t, prev_c, prev_cpt = inputs.previous_tonight()
    if inputs.previous is not None:
        rows.append(
            {
                "model": inputs.model_name,
                "plan": "last night (tonight's prices)",
                "status": "published",
                "tokens_per_s": prev_t,
                "cost_per_hour": prev_c,
                "usd_per_mtoken": _round(prev_cpt * 1e6 if prev_cpt is not None else None),
                "usd_per_day_at_demand": _round(usd_per_day_at_demand(prev_cpt, demand)),
                "gap_to_exact_pct": _round(
                    _pct(
                        gap_to_exact({"cost_per_token": prev_cpt}, inputs.exact)
                        if prev_cpt is not None
                        else None
                    )
                ),
                "gpus": sum(inputs.diff.gpus_by_type_before.values()),
            }
        )
    return rows


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else fraction * 100


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


# -- several models -----------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


def _renamed_images(report: Report, index: int) -> tuple[list[Section], dict[str, bytes]]:
    """The report's sections and images with file names unique within a combined report."""
    prefix = f"{index + 1:02d}-{_slug(report.title)[:40]}-"
    names = {name: prefix + name for name in report.images}
    sections = [
        replace(
            section,
            blocks=tuple(
                Image(names.get(b.filename, b.filename), b.alt) if isinstance(b, Image) else b
                for b in section.blocks
            ),
        )
        for section in report.sections
    ]
    return sections, {names[name]: png for name, png in report.images.items()}


def _combined_markdown(title: str, parts: Sequence[Report], include_images: bool) -> str:
    body = [f"# {title}"]
    for index, part in enumerate(parts):
        sections, _ = _renamed_images(part, index)
        body.append(render_markdown(part.title, sections, level=2, include_images=include_images))
    return "\n\n".join(body) + "\n"


def combine_reports(reports: Sequence[Report], title: str | None = None) -> Report:
    """One report over every model: sections per model, one chart file per model."""
    if not reports:
        raise ValueError("no report to combine")
    publishing = sum(1 for r in reports if r.publish)
    title = title or (
        f"replan — {len(reports)} model(s): {publishing} to publish, "
        f"{len(reports) - publishing} kept"
    )
    images: dict[str, bytes] = {}
    html_parts = []
    for index, report in enumerate(reports):
        sections, renamed = _renamed_images(report, index)
        images.update(renamed)
        html_parts.append(render_html_body(report.title, sections, renamed, level=2))
    body = f"<h1>{html.escape(title)}</h1>\n" + "\n<hr>\n".join(html_parts)
    return Report(
        title=title,
        markdown=_combined_markdown(title, reports, include_images=True),
        html=wrap_html(title, body),
        images=images,
        slack_sections=[s for r in reports for s in r.slack_sections],
        table_rows=[row for r in reports for row in r.table_rows],
        publish=publishing > 0,
        parts=tuple(reports),
    )
