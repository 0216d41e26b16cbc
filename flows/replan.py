"""The nightly re-planning flow: prices → validation → pools → plans → diff → report → Slack."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.state_secret import state_url_with_password
from solver import scenario_from_dict
from solver.diff import gap_to_exact
from solver.frontier import frontier
from tasks.export import RunExport, ServingLimits, export_for_run, serving_limits
from tasks.export.source import PlanSource
from tasks.pipeline import (
    PriceInputs,
    build_fleet_scenario_task,
    fetch_prices_task,
    file_digest,
    load_inventory_task,
    price_moves,
    resilience_of,
    solve_task,
    validate_prices_task,
    without_resilience,
)
from tasks.report import (
    ExportNote,
    Report,
    ReportLinks,
    build_report,
    chart_file_name,
    combine_reports,
    publish_artifacts,
    report_links,
    write_report,
)
from tasks.report.fleet import resilience_line
from tasks.slack import post_to_slack, webhook_url_from_settings
from tasks.state import (
    FLEET_MODEL,
    PublishedPlan,
    StateStore,
    publish_once,
    published_fleet,
    stable_hash,
)
from tasks.state.diff import FleetComparison, compare_fleet_to_published
from tasks.validation import ValidationFailed

DEFAULT_STRATEGIES = ("exact", "iterative", "weighted")
DEFAULT_PRICE_MODE = "both"  # a pool per market: spot and on-demand side by side
UNCONSTRAINED_STRATEGY = "exact-without-resilience"  # recorded for the price of resilience
SNAPSHOT_MAX_AGE_DAYS = 36_500.0  # the bundled snapshot is dated; its age shows in the report
ABANDONED_AFTER_HOURS = 6.0


@flow(name="nightly-replan")
def nightly_replan(
    inventory: str = "config/inventory.yaml",
    sources: list[str] | None = None,
    source_location: str | None = None,
    models: list[str] | None = None,
    strategies: list[str] | None = None,
    switch_threshold: float = 0.02,
    dry_run: bool = False,
    price_mode: str = DEFAULT_PRICE_MODE,
    max_price_age_days: float | None = None,
    fallback_max_age_hours: float = 48.0,
    state_url: str | None = None,
    reports_dir: str = "reports",
    slack_max_attempts: int = 4,
    slack_backoff_s: float = 1.0,
) -> dict[str, Any]:
    """Re-plan the whole fleet (every model on shared GPUs and quotas) and publish it when its
    placement changed enough: one report, one export and at most one Slack message a run."""
    sources = list(sources or ["snapshot"])
    strategies = list(strategies or DEFAULT_STRATEGIES)
    if "exact" not in strategies:
        strategies.insert(0, "exact")  # the decision is made on the exact plan
    store = StateStore.from_url(state_url_with_password(state_url))
    store.create_all()
    # a run still "running" long after any run could take was killed: say so in the record
    store.fail_abandoned_runs(datetime.now(UTC) - timedelta(hours=ABANDONED_AFTER_HOURS))
    parameters = {
        "inventory": inventory,
        "sources": sources,
        "source_location": source_location,
        "models": models,
        "strategies": strategies,
        "switch_threshold": switch_threshold,
        "dry_run": dry_run,
        "price_mode": price_mode,
    }
    inputs_hash = stable_hash({"parameters": parameters, "inventory": _digest_or_none(inventory)})
    run_id = store.start_run(inputs_hash, "", parameters)
    prices_hash: str | None = None
    try:
        fleet = load_inventory_task(inventory)
        previous_prices = store.last_good_prices(timedelta(days=SNAPSHOT_MAX_AGE_DAYS))
        prices = fetch_prices_task(
            sources, source_location, store, timedelta(hours=fallback_max_age_hours)
        )
        # no limit given: 7 days, or the bundled snapshot's age stated (as `replan validate`)
        validate_prices_task(prices, max_price_age_days or None)
        prices_hash = store.save_prices(prices.table, prices.fetched_at)
        model_names = list(models or fleet.models)
        unknown = [m for m in model_names if m not in fleet.models]
        if unknown:
            raise ValueError(f"models not in the inventory: {', '.join(unknown)}")
        document, pool_notes = build_fleet_scenario_task.submit(
            prices.table, fleet, model_names, price_mode
        ).result()
        solving = {s: solve_task.submit(document, s) for s in strategies}
        resilient = resilience_of(document) != "none"
        unconstrained_future = (
            solve_task.submit(without_resilience(document), "exact") if resilient else None
        )
        frontier_future = fleet_frontier_task.submit(document)
        plans = {s: solving[s].result() for s in strategies}
        unconstrained = unconstrained_future.result() if unconstrained_future else None
        recorded = dict(plans)
        if unconstrained is not None:
            recorded[UNCONSTRAINED_STRATEGY] = unconstrained
        plan_id = store.record_plans(run_id, FLEET_MODEL, recorded)["exact"]
        channel, webhook = publication_channel()
        run_dir = Path(reports_dir) / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-run{run_id}"
        published = published_fleet(store, channel)
        # the fleet that runs: a published fleet plan, or the union of pre-fleet plans
        union_before = (
            published is not None
            and published.model == FLEET_MODEL
            and (store.last_published(FLEET_MODEL, channel) is None)
        )
        run_export = write_export_task(
            plans["exact"], run_dir, store, run_id, serving_limits(fleet.models)
        )
        rebuild = partial(
            _report,
            document,
            plans,
            frontier=frontier_future.result(),
            prices=prices,
            previous_prices=previous_prices.table if previous_prices else None,
            price_mode=price_mode,
            threshold=switch_threshold,
            dry_run=dry_run,
            run_dir=run_dir,
            export=run_export,
            unconstrained=unconstrained,
            notes=pool_notes,
        )
        report, comparison = rebuild(published)
        reports = {FLEET_MODEL: report}
        result = _fleet_summary(plans, comparison.decision, unconstrained)
        # the report is written before posting, so a run whose post fails still leaves it
        report_paths = _write_reports(reports, run_dir)
        if comparison.decision.publish and not dry_run:
            posted, decision = _publish_model(
                store, FLEET_MODEL, plan_id, channel, reports, rebuild,
                None if union_before else published,
                webhook, slack_max_attempts, slack_backoff_s,
            )  # fmt: skip
            result["posted"] = posted
            if decision is not None:  # rebuilt against a concurrent run's publication
                result.update(
                    decision=decision.kind, reason=decision.reason, publish=decision.publish
                )
                report_paths = _write_reports(reports, run_dir)
        store.finish_run(run_id, "completed", prices_hash=prices_hash)
        return {
            "run_id": run_id,
            "status": "completed",
            "channel": channel,
            "dry_run": dry_run,
            "prices": {
                "source": prices.source,
                "fetched_at": prices.fetched_at.isoformat(),
                "fallback": prices.fallback_note,
                "rows": len(prices.table),
            },
            "fleet": result,
            "models": _per_model(plans["exact"]),
            "report": str(report_paths.get("markdown", "")),
            "export": run_export.to_json(),
        }
    except ValidationFailed as exc:
        store.finish_run(run_id, "invalid", exc.report.render(), prices_hash=prices_hash)
        raise
    except BaseException as exc:
        store.finish_run(run_id, "failed", f"{type(exc).__name__}: {exc}", prices_hash=prices_hash)
        raise


def _digest_or_none(path: str) -> str | None:
    try:
        return file_digest(path)
    except OSError:
        return None


def publication_channel() -> tuple[str, Any]:
    """Slack when a webhook is configured, else the report alone (still recorded once)."""
    webhook = webhook_url_from_settings()
    return ("slack", webhook) if webhook is not None else ("report", None)


def _report(
    scenario_document: dict[str, Any],
    plans: dict[str, dict[str, Any]],
    published: PublishedPlan | None,
    frontier: list[tuple[float, float]],
    prices: PriceInputs,
    previous_prices: Any,
    price_mode: str,
    threshold: float,
    dry_run: bool = False,
    run_dir: Path | None = None,
    export: RunExport | None = None,
    unconstrained: dict[str, Any] | None = None,
    notes: list[str] | None = None,
) -> tuple[Report, FleetComparison]:
    """The fleet's report against `published` (the fleet that runs), and the comparison."""
    scenario = scenario_from_dict(scenario_document, source="fleet scenario")
    comparison = compare_fleet_to_published(
        published.plan if published else None, plans["exact"], scenario, threshold
    )
    age = datetime.now(UTC) - prices.fetched_at
    freshness = {
        "source": prices.source,
        "fetched_at": prices.fetched_at.isoformat(),
        "age": f"{age.days} d {age.seconds // 3600} h",
        "fallback": prices.fallback_note or "none: the source answered",
    }
    if notes:
        freshness["pools left out"] = "; ".join(notes)
    links = (
        report_links(run_dir, chart_file_name(FLEET_MODEL), flow_run_id=_flow_run_id())
        if run_dir is not None
        else None
    )
    report = build_report(
        FLEET_MODEL,
        plans,
        comparison.previous,
        comparison.diff,
        comparison.decision,
        frontier,
        # None: no earlier prices, which the report says instead of "no price moved"
        price_moves(previous_prices, prices.table, price_mode)
        if previous_prices is not None
        else None,
        freshness,
        sum(model.demand_tokens_per_s for model in scenario.models),
        dry_run=dry_run,
        links=links,
        pool_tokens_per_s=_best_rates(scenario),
        export=_export_note(export, links),
        unconstrained=unconstrained,
    )
    return report, comparison


def _best_rates(scenario: Any) -> dict[str, float]:
    """Each pool's best single-GPU tokens/s over the models that can use it."""
    rates = {}
    for pool in scenario.pools:
        found = [r for m in scenario.models if (r := pool.rate(m.name)) is not None]
        if found:
            rates[pool.id] = max(found)
    return rates


def _export_note(export: RunExport | None, links: ReportLinks | None) -> ExportNote | None:
    """The export as the report names it: its README's URL when served, else its folder."""
    if export is None:
        return None
    location = (links.export_url if links else None) or str(export.out_dir.absolute())
    return ExportNote(
        location=location,
        text=export.summary if export.written else export.error,
        written=export.written,
    )


@task(name="write-export", cache_policy=NO_CACHE)  # writes files: never skipped
def write_export_task(
    plan: dict[str, Any],
    run_dir: Path,
    store: StateStore,
    run_id: int,
    limits: dict[str, ServingLimits],
) -> RunExport:
    """Tonight's exact plan as launch specs in `<run_dir>/export`, against what runs now.

    Never raises: an export that cannot be written is said in the report and the summary.
    """
    try:
        previous = PlanSource(store).previous(run_id)
    except Exception as exc:  # the store's view of the running fleet: the diff is optional
        get_run_logger().warning("export: no comparison with the running plan: %s", exc)
        previous = None
    notes = list(previous.notes) if previous else []
    run_export = export_for_run(
        plan,
        run_dir,
        previous=previous.plan if previous else None,
        serving_limits=limits,
        notes=notes,
    )
    if not run_export.written:
        get_run_logger().warning(run_export.line())
    return run_export


def _fleet_summary(
    plans: dict[str, dict[str, Any]], decision: Any, unconstrained: dict[str, Any] | None
) -> dict[str, Any]:
    exact = plans["exact"]
    gaps = {s: gap_to_exact(p, exact) for s, p in plans.items() if s != "exact"}
    summary = {
        "decision": decision.kind,
        "reason": decision.reason,
        "publish": decision.publish,
        "posted": False,
        "status": exact["status"],
        "tokens_per_s": exact["tokens_per_s"],
        "useful_tokens_per_s": exact.get("useful_tokens_per_s", exact["tokens_per_s"]),
        "cost_per_hour": exact["cost_per_hour"],
        "cost_per_token": exact["cost_per_token"],
        "gpus": exact.get("gpus", 0),
        "gap_to_exact": gaps,
    }
    line = resilience_line(exact, unconstrained)
    if line:
        summary["resilience"] = line
    return summary


def _per_model(exact: dict[str, Any]) -> dict[str, Any]:
    """Each model's figures in tonight's exact fleet plan."""
    keys = ("tokens_per_s", "useful_tokens_per_s", "cost_per_hour", "cost_per_token", "gpus")
    return {
        str(model["name"]): {key: model.get(key) for key in ("demand_tokens_per_s", *keys)}
        for model in exact.get("models") or []
    }


@task(name="frontier")
def fleet_frontier_task(scenario_document: dict[str, Any]) -> list[tuple[float, float]]:
    """The chart's cost/throughput frontier of the fleet; context only, so a failure is empty."""
    try:
        return frontier(scenario_from_dict(scenario_document))
    except Exception as exc:  # the chart then shows the plans alone
        get_run_logger().warning("no frontier for the chart: %s", exc)
        return []


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return flow_run.id


def _publish_model(
    store: StateStore,
    model: str,
    plan_id: int,
    channel: str,
    reports: dict[str, Report],
    rebuild: Callable[[PublishedPlan | None], tuple[Report, Any]],
    built_against: PublishedPlan | None,
    webhook: Any,
    max_attempts: int,
    backoff_s: float,
) -> tuple[bool, Any]:
    """`publish_once` with the report made against the publication it finds under the lock.

    The report was built against `built_against`, the channel's last publication as read
    before; a concurrent run may have published since. Then the report is rebuilt against what the
    channel shows now (in `reports[model]`) and that one is posted, or, when the channel
    already shows this plan, kept as the run's report. Returns (posted, the rebuilt
    decision or None when the first report stood).
    """
    seen = built_against.publication_id if built_against else None
    rebuilt: list[Any] = []

    def against(previous: PublishedPlan | None) -> None:
        if (previous.publication_id if previous else None) != seen:
            reports[model], comparison = rebuild(previous)
            rebuilt.append(comparison.decision)

    def post(previous: PublishedPlan | None) -> None:
        against(previous)
        if webhook is not None:
            post_slack_task(webhook, reports[model].slack_payload(), max_attempts, backoff_s)

    outcome = publish_once(store, plan_id=plan_id, channel=channel, post=post)
    if not outcome.posted:
        against(outcome.previous)
    return outcome.posted, rebuilt[-1] if rebuilt else None


# post_to_slack retries 429 and 5xx itself; a post is never cached (the URL is not hashable)
@task(name="post-to-slack", retries=0, cache_policy=NO_CACHE)
def post_slack_task(webhook: Any, payload: dict, max_attempts: int, backoff_s: float) -> int:
    return post_to_slack(
        webhook, payload, max_attempts=max_attempts, backoff_s=backoff_s
    ).status_code


@task(name="write-report")
def write_reports_task(reports: dict[str, Report], run_dir: Path) -> dict[str, str]:
    """The run's report files (every run, for the record) and one pair of artifacts a model."""
    parts = list(reports.values())
    combined = parts[0] if len(parts) == 1 else combine_reports(parts)
    paths = write_report(combined, run_dir)
    for model, report in reports.items():
        publish_artifacts(report, key_prefix=f"replan-{model}")
    return {name: str(path) for name, path in paths.items()}


def _write_reports(reports: dict[str, Report], run_dir: Path) -> dict[str, str]:
    return write_reports_task(reports, run_dir) if reports else {}


def summary_text(summary: dict[str, Any]) -> str:
    """The one-screen summary `replan run` prints."""
    return json.dumps(summary, indent=2, default=str)
