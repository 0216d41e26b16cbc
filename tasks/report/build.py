"""`build_report`: the night's plans, diff and decision as Markdown, HTML, PNG and Slack text."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pandas as pd

from solver.diff import Decision, PlanDiff, cost_per_token_of, gap_to_exact
from tasks.report.blocks import Image, Section, signed_pct, usd
from tasks.report.chart import ChartPoint, render_chart
from tasks.report.content import (
    CHART_FILE,
    STRATEGY_NOTE,
    ExportNote,
    ReportInputs,
    ReportLinks,
    build_sections,
    figure,
    framing,
    headline,
    is_feasible,
    moves_that_matter,
    ordered_strategies,
    price_moves_from,
    steps,
    usd_per_day_at_demand,
    warnings,
)
from tasks.report.fleet import fleet_slack_lines
from tasks.report.render import render_html_body, render_markdown, wrap_html
from tasks.slack import build_message, escape_mrkdwn

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
    chart_url: str | None = None  # a public URL of the chart: Slack shows it as an image
    dry_run: bool = False

    def slack_payload(self) -> dict[str, Any]:
        """The Block Kit message: the title, the sections, the chart when it has a public URL."""
        urls = [p.chart_url for p in self.parts] if self.parts else [self.chart_url]
        return build_message(
            self.title,
            self.slack_sections,
            fallback_text=self.title,
            images=[(url, "cost per hour against tokens/s") for url in urls if url],
        )

    @property
    def chart_png(self) -> bytes:
        """The chart (the first model's, for a combined report)."""
        return self.images.get(CHART_FILE) or next(iter(self.images.values()), b"")

    def artifact_markdown(self) -> str:
        """The Markdown without image links (an artifact cannot show the run's files)."""
        if self.parts:
            return _combined_markdown(self.title, self.parts, include_images=False)
        return render_markdown(self.title, self.sections, include_images=False)


def chart_file_name(model_name: str) -> str:
    """The chart's file name: the whole model name, never cut."""
    return f"chart-{_slug(model_name)}.png"


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
    *,
    dry_run: bool = False,
    links: ReportLinks | None = None,
    pool_tokens_per_s: Mapping[str, float] | None = None,
    now: datetime | None = None,
    export: ExportNote | None = None,
    unconstrained: Mapping[str, Any] | None = None,
) -> Report:
    """The report of one model: sections rendered to Markdown and HTML, a chart, Slack text.

    `plans` maps strategy → plan JSON (exact, iterative, weighted); `previous` is the last
    published plan JSON (None on the first run); `frontier` lists (tokens_per_s,
    cost_per_hour) of best plans; `price_moves` rows hold pool, gpu, old and new
    price_per_gpu_hour (or pct, in percent), None when no earlier run's prices exist;
    `freshness` holds source, fetched_at, age and a fallback note; `links` the report's and
    the Prefect run's URLs; `pool_tokens_per_s` the single-GPU tokens/s of tonight's pools;
    `export` the launch specs written next to the report (or why none were);
    `unconstrained` tonight's exact fleet plan without the spot-loss constraint (the report
    prices resilience against it). Fleet plans (CONTRACT.md) add the fleet, capacity and
    resilience sections.
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
        dry_run=dry_run,
        links=links or ReportLinks(),
        pool_tokens_per_s=pool_tokens_per_s,
        earlier_prices=price_moves is not None,
        now=now,
        export=export,
        unconstrained=unconstrained,
    )
    title = f"replan — {model_name}: {headline(inputs)}"
    chart_file = chart_file_name(model_name)
    sections = build_sections(inputs, chart_file)
    images = {chart_file: _chart(inputs, frontier)}
    return Report(
        title=title,
        markdown=render_markdown(title, sections),
        html=wrap_html(title, render_html_body(title, sections, images)),
        images=images,
        slack_sections=slack_sections(inputs),
        table_rows=table_rows(inputs),
        publish=decision.publish,
        sections=sections,
        chart_url=inputs.links.chart_url,
        dry_run=dry_run,
    )


def chart_points(inputs: ReportInputs) -> list[ChartPoint]:
    """Every plan the chart shows: each strategy's feasible plan and last night's plan."""
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
    return points


def _chart(inputs: ReportInputs, frontier: Sequence[tuple[float, float]]) -> bytes:
    exact_cpt = cost_per_token_of(inputs.exact) if is_feasible(inputs.exact) else None
    return render_chart(
        inputs.model_name,
        frontier,
        chart_points(inputs),
        demand_tokens_per_s=inputs.demand_tokens_per_s,
        iso_cost_per_token=[exact_cpt] if exact_cpt else [],
    )


# -- Slack --------------------------------------------------------------------------------


def _m(text: Any) -> str:
    return escape_mrkdwn(str(text))


def _link(url: str, text: str) -> str:
    """A Slack link for http(s) URLs, the path as code otherwise (a file is not clickable)."""
    if url.startswith(("https://", "http://")):
        return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{text}>"
    return f"{text}: `{_m(url)}`"


def slack_sections(inputs: ReportInputs) -> list[str]:
    """Concise mrkdwn for `tasks.slack.build_message`: warnings, decision, both comparisons,
    the steps, the gap to exact, the data, and the links."""
    decision = inputs.decision
    sections = []
    notes = warnings(inputs)
    if notes:
        sections.append("\n".join(f":warning: *{_m(n)}*" for n in notes))
    head = [f"*{_m(inputs.model_name)}* — *{_m(headline(inputs))}*"]
    head += [f"• {_m(line)}" for line in framing(inputs)]
    if decision.kind == "infeasible":
        head += [f"• {_m(v)}" for v in decision.violations[:MAX_SLACK_LIST]]
    demand = inputs.demand_tokens_per_s
    now_cpt = inputs.tonight_cost_per_token()
    head.append(
        f"• $/day at the demand ({demand:,.0f} tokens/s): "
        f"{usd(usd_per_day_at_demand(now_cpt, demand))} tonight"
    )
    sections.append("\n".join(head))
    fleet = fleet_slack_lines(inputs.exact, inputs.unconstrained)
    if fleet:
        sections.append("\n".join(f"• {_m(line)}" for line in fleet))

    todo = steps(inputs)
    shown = todo[:MAX_SLACK_LIST]
    lines = [f"{n}. {_m(step)}" for n, step in enumerate(shown, start=1)]
    if len(todo) > len(shown):
        lines.append(f"… {len(todo) - len(shown)} more step(s) in the report")
    sections.append("*What to do*\n" + "\n".join(lines))

    gaps = [
        f"{strategy} {signed_pct(gap_to_exact(inputs.plans[strategy], inputs.exact))}"
        for strategy in ("iterative", "weighted")
        if is_feasible(inputs.plans.get(strategy)) and is_feasible(inputs.exact)
    ]
    if gaps:
        sections.append(
            f"*Gap to the exact strategy ($/token)* {', '.join(gaps)}. "
            + _m(STRATEGY_NOTE.split(": ", 1)[1][:1].upper() + STRATEGY_NOTE.split(": ", 1)[1][1:])
        )

    data = []
    if not inputs.earlier_prices:
        data.append("*Price moves* none to show: no earlier run's prices")
    else:
        kept, hidden = moves_that_matter(inputs)
        if kept or hidden:
            moved = ", ".join(f"{_m(m.pool)} {signed_pct(m.change)}" for m, _ in kept[:3])
            more = f" ({hidden} move(s) that do not matter hidden)" if hidden else ""
            data.append(f"*Price moves* {moved or 'none that matter'}{more}")
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

    links = inputs.links
    shown_links = [
        _link(url, text)
        for url, text in ((links.report_url, "Full report"), (links.run_url, "Prefect run"))
        if url
    ]
    export = inputs.export
    if export is not None and export.written:
        shown_links.append(_link(export.location, "Launch specs"))
    if shown_links:
        sections.append(" · ".join(shown_links))
    if export is not None:
        if export.written:
            sections.append(f"*Launch specs* {_m(export.text)}")
        else:
            sections.append(f":warning: *Launch specs not written:* {_m(export.text)}")
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


def _renamed_images(
    report: Report, index: int, parts: Sequence[Report]
) -> tuple[list[Section], dict[str, bytes]]:
    """The report's sections and images; a file name another part also uses gets a prefix."""
    elsewhere = {n for i, p in enumerate(parts) if i != index for n in p.images}
    names = {n: f"{index + 1:02d}-{n}" if n in elsewhere else n for n in report.images}
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
        sections, _ = _renamed_images(part, index, parts)
        body.append(render_markdown(part.title, sections, level=2, include_images=include_images))
    return "\n\n".join(body) + "\n"


def combine_reports(reports: Sequence[Report], title: str | None = None) -> Report:
    """One report over every model: sections per model, one chart file per model."""
    if not reports:
        raise ValueError("no report to combine")
    publishing = sum(1 for r in reports if r.publish)
    dry_run = any(r.dry_run for r in reports)
    title = title or (
        f"replan — {len(reports)} model(s): "
        + ("DRY RUN, nothing published: " if dry_run else "")
        + f"{publishing} to publish, {len(reports) - publishing} kept"
    )
    images: dict[str, bytes] = {}
    html_parts = []
    for index, report in enumerate(reports):
        sections, renamed = _renamed_images(report, index, reports)
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
        dry_run=dry_run,
    )
