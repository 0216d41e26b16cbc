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
from solver.diff import compare_to_published, gap_to_exact
from tasks.export import RunExport, ServingLimits, export_for_run, serving_limits
from tasks.export.source import PlanSource, market_for_price_mode, union_plan
from tasks.pipeline import (
    PriceInputs,
    build_scenario_task,
    fetch_prices_task,
    file_digest,
    frontier_task,
    load_inventory_task,
    price_moves,
    solve_task,
    validate_prices_task,
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
from tasks.slack import post_to_slack, webhook_url_from_settings
from tasks.state import PublishedPlan, StateStore, publish_once, stable_hash
from tasks.validation import ValidationFailed

DEFAULT_STRATEGIES = ("exact", "iterative", "weighted")
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
    price_mode: str = "spot",
    max_price_age_days: float | None = None,
    fallback_max_age_hours: float = 48.0,
    state_url: str | None = None,
    reports_dir: str = "reports",
    slack_max_attempts: int = 4,
    slack_backoff_s: float = 1.0,
) -> dict[str, Any]:
    """Re-plan every model of the inventory and publish the placements that changed."""
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
        scenarios = {
            m: build_scenario_task.submit(prices.table, fleet, m, price_mode) for m in model_names
        }
        solving = {
            (m, s): solve_task.submit(scenarios[m], s) for m in model_names for s in strategies
        }
        frontiers = {m: frontier_task.submit(scenarios[m]) for m in model_names}
        channel, webhook = publication_channel()
        results: dict[str, Any] = {}
        reports: dict[str, Report] = {}
        to_publish: dict[str, int] = {}  # model -> id of its exact plan
        run_dir = Path(reports_dir) / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-run{run_id}"
        rebuild: dict[str, Callable[[PublishedPlan | None], tuple[Report, Any]]] = {}
        built_against: dict[str, PublishedPlan | None] = {}
        rebuild_inputs: dict[str, dict[str, dict[str, Any]]] = {}
        exact_ids: dict[str, int] = {}
        exact_plans: dict[str, dict[str, Any]] = {}
        for model in model_names:
            plans = {s: solving[(model, s)].result() for s in strategies}
            exact_plans[model] = plans["exact"]
            exact_ids[model] = store.record_plans(run_id, model, plans)["exact"]
            built_against[model] = store.last_published(model, channel)
            rebuild_inputs[model] = plans
        run_export = write_export_task(
            union_plan(list(exact_plans.items()), market=market_for_price_mode(price_mode)),
            run_dir,
            store,
            run_id,
            serving_limits(fleet.models),
        )
        for model in model_names:
            plans = rebuild_inputs[model]
            # the report again against another publication state (a concurrent run's post)
            rebuild[model] = partial(
                _report,
                model,
                scenarios[model].result(),
                plans,
                frontier=frontiers[model].result(),
                prices=prices,
                previous_prices=previous_prices.table if previous_prices else None,
                price_mode=price_mode,
                threshold=switch_threshold,
                dry_run=dry_run,
                run_dir=run_dir,
                export=run_export,
            )
            report, comparison = rebuild[model](built_against[model])
            reports[model] = report
            results[model] = _model_summary(plans, comparison.decision)
            if comparison.decision.publish and not dry_run:
                to_publish[model] = exact_ids[model]
        # the report is written before posting, so a run whose post fails still leaves it
        report_paths = _write_reports(reports, run_dir)
        for model, plan_id in to_publish.items():
            posted, decision = _publish_model(
                store, model, plan_id, channel, reports, rebuild[model], built_against[model],
                webhook, slack_max_attempts, slack_backoff_s,
            )  # fmt: skip
            results[model]["posted"] = posted
            if decision is not None:  # rebuilt against a concurrent run's publication
                results[model].update(
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
            "models": results,
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
    model: str,
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
) -> tuple[Report, Any]:
    scenario = scenario_from_dict(scenario_document, source=f"scenario of {model}")
    previous_plan = published.plan if published else None
    comparison = compare_to_published(previous_plan, plans["exact"], scenario, threshold)
    age = datetime.now(UTC) - prices.fetched_at
    freshness = {
        "source": prices.source,
        "fetched_at": prices.fetched_at.isoformat(),
        "age": f"{age.days} d {age.seconds // 3600} h",
        "fallback": prices.fallback_note or "none: the source answered",
    }
    links = (
        report_links(run_dir, chart_file_name(model), flow_run_id=_flow_run_id())
        if run_dir is not None
        else None
    )
    report = build_report(
        model,
        plans,
        previous_plan,
        comparison.diff,
        comparison.decision,
        frontier,
        # None: no earlier prices, which the report says instead of "no price moved"
        price_moves(previous_prices, prices.table, price_mode)
        if previous_prices is not None
        else None,
        freshness,
        scenario.solver.demand_tokens_per_s,
        dry_run=dry_run,
        links=links,
        pool_tokens_per_s={pool.id: pool.tokens_per_s for pool in scenario.pools},
        export=_export_note(export, links),
    )
    return report, comparison


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


def _model_summary(plans: dict[str, dict[str, Any]], decision: Any) -> dict[str, Any]:
    exact = plans["exact"]
    gaps = {s: gap_to_exact(p, exact) for s, p in plans.items() if s != "exact"}
    return {
        "decision": decision.kind,
        "reason": decision.reason,
        "publish": decision.publish,
        "posted": False,
        "status": exact["status"],
        "tokens_per_s": exact["tokens_per_s"],
        "cost_per_hour": exact["cost_per_hour"],
        "cost_per_token": exact["cost_per_token"],
        "gpus": exact.get("gpus", 0),
        "gap_to_exact": gaps,
    }


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
