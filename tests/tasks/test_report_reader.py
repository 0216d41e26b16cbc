"""What the reader sees: steps to take, honest comparisons, warnings first, moves that matter,
links, a chart whose frontier holds every plan it shows, and words a reader knows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.lines import Line2D

from solver.diff import decide, diff_plans
from tasks.report import (
    Report,
    ReportLinks,
    build_report,
    chart_file_name,
    combine_reports,
    report_links,
    write_report,
)
from tasks.report.chart import FRONTIER_LABEL, ChartPoint, chart_figure
from tests.tasks.test_report import plan, replica

V100, T4, L4, A10 = "lab/east/V100", "lab/east/T4", "lab/east/L4", "lab/east/A10"
NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
FRESH = {"source": "aws-spot", "fetched_at": (NOW - timedelta(hours=1)).isoformat()}

# Last night: 2 × T4 at $0.40/h each, published at $0.1111 per million tokens. Tonight the T4
# costs $1.00/h: kept, last night's plan would cost $0.2778; tonight's plan, 2 × V100 at
# $0.50/h, costs $0.1389: 50 % below keeping last night's plan, yet 25 % above what was published.
PUBLISHED = plan(replica(T4, "T4", 2, 1000, 0.40))
KEPT_TONIGHT = plan(replica(T4, "T4", 2, 1000, 1.00))
EXACT = plan(replica(V100, "V100", 2, 1000, 0.50))
PLANS = {
    "exact": EXACT,
    "iterative": plan(replica(V100, "V100", 3, 1000, 0.50), strategy="iterative"),
    "weighted": plan(replica(V100, "V100", 4, 1000, 0.50), strategy="weighted"),
}
POOL_TOKENS_PER_S = {V100: 1000.0, T4: 1000.0, L4: 2000.0, A10: 1000.0}


def night(
    previous: dict | None = PUBLISHED,
    kept: dict | None = KEPT_TONIGHT,
    freshness: dict | None = None,
    **options: Any,
) -> Report:
    return build_report(
        "tiny-7b",
        PLANS,
        previous,
        diff_plans(previous, EXACT),
        decide(kept, [], EXACT),
        options.pop("frontier", [(1000.0, 0.5), (4000.0, 2.0)]),
        options.pop("price_moves", []),
        FRESH if freshness is None else freshness,
        1500.0,
        pool_tokens_per_s=POOL_TOKENS_PER_S,
        now=NOW,
        **options,
    )


def slack_text(report: Report) -> str:
    return "\n".join(report.slack_sections)


# -- 1. what to do -----------------------------------------------------------------------


def test_the_report_and_slack_list_launches_before_drains() -> None:
    report = night()
    md = report.markdown
    launch = "1. Launch 2 replicas of lab/east/V100: 1 GPU (TP 1), 32 layers"
    drain = "3. Drain 2 replicas of lab/east/T4: 1 GPU (TP 1), 32 layers"
    assert launch in md and drain in md
    assert md.index("## What to do") < md.index(launch) < md.index(drain)
    assert "never" not in md.split(drain)[0] or "capacity" in md  # the order is explained
    slack = slack_text(report)
    assert "*What to do*\n" + launch in slack and drain in slack
    assert slack.index(launch) < slack.index(drain)


def test_a_kept_plan_says_there_is_nothing_to_do() -> None:
    report = night(previous=EXACT, kept=EXACT)
    assert "1. Nothing to change: keep the running fleet" in report.markdown
    assert "Launch" not in report.markdown and "Drain" not in report.markdown


def test_slack_links_the_report_and_the_run_and_shows_the_chart_at_a_public_url(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "20261202T020000Z-run7"
    links = report_links(
        run_dir,
        chart_file_name("tiny-7b"),
        flow_run_id="5f0c",
        ui_url="http://127.0.0.1:4200",
        environ={"REPLAN_REPORT_BASE_URL": "https://reports.example/replan/"},
    )
    report = night(links=links)
    written = write_report(report, run_dir)
    payload = report.slack_payload()
    text = "\n".join(b["text"]["text"] for b in payload["blocks"] if b["type"] == "section")
    base = "https://reports.example/replan/20261202T020000Z-run7"
    assert f"<{base}/report.html|Full report>" in text
    assert "<http://127.0.0.1:4200/runs/flow-run/5f0c|Prefect run>" in text
    (image,) = [b for b in payload["blocks"] if b["type"] == "image"]
    assert image["image_url"] == f"{base}/{chart_file_name('tiny-7b')}"
    assert Path(image["image_url"].rsplit("/", 1)[1]).name in {p.name for p in written.values()}
    assert f"{base}/report.html" in report.markdown.replace("\\", "")


def test_without_a_base_url_slack_names_the_report_file_and_shows_no_image(
    tmp_path: Path,
) -> None:
    links = report_links(
        tmp_path / "run1", "chart-tiny-7b.png", flow_run_id="x", environ={}, ui_url=""
    )
    assert links.chart_url is None and links.run_url is None
    payload = night(links=links).slack_payload()
    assert not [b for b in payload["blocks"] if b["type"] == "image"]
    text = "\n".join(b["text"]["text"] for b in payload["blocks"] if b["type"] == "section")
    assert f"Full report: `{tmp_path / 'run1' / 'report.html'}`" in text
    assert "Prefect run" not in text


# -- 2. framing that cannot mislead ------------------------------------------------------


def test_both_comparisons_are_stated_plainly() -> None:
    report = night()
    vs_published = "$0.1111 → $0.1389 per million tokens (+25.0%)"
    vs_kept = "$0.2778 → $0.1389 per million tokens (-50.0%)"
    md = report.markdown.replace("\\$", "$")
    assert f"Against what was published: {vs_published}" in md
    assert "the bill goes up" in md
    assert f"Against keeping last night's plan at tonight's prices: {vs_kept}" in md
    assert "$0.1111 → $0.1389 per million tokens vs published (+25.0%)" in report.title
    assert "50.0% cheaper than keeping last night's plan" in report.title
    assert "saves" not in report.title.lower()
    slack = slack_text(report)
    assert vs_published in slack and vs_kept in slack


def test_stale_prices_are_flagged_first_in_the_report_and_in_slack() -> None:
    old = {"source": "snapshot", "fetched_at": (NOW - timedelta(days=700)).isoformat()}
    report = night(freshness=old)
    md = report.markdown
    assert "700 days old" in md
    assert md.index("700 days old") < md.index("## Decision")
    assert "700 days old" in report.slack_sections[0]
    assert "days old" not in night().markdown  # fresh prices: no warning


def test_a_dry_run_says_so_in_its_title_and_slack_header() -> None:
    report = night(dry_run=True)
    assert report.title.startswith("replan — tiny-7b: DRY RUN, nothing published")
    assert report.slack_payload()["blocks"][0]["text"]["text"].startswith(
        "replan — tiny-7b: DRY RUN"
    )
    assert "DRY RUN" not in night().title
    combined = combine_reports([night(dry_run=True), night(dry_run=True)])
    assert combined.title.startswith("replan — 2 model(s): DRY RUN, nothing published")


def test_a_first_run_does_not_claim_no_price_moved() -> None:
    report = night(previous=None, kept=None, price_moves=None)
    assert "No price moved" not in report.markdown
    assert "No earlier run's prices to compare with" in report.markdown
    assert "no earlier run's prices" in slack_text(report)
    assert "No price that matters to the plans moved" in night(price_moves=[]).markdown


def test_only_price_moves_that_matter_are_shown_and_the_rest_counted() -> None:
    noise = [
        {"pool": f"lab/west/GPU{i}", "gpu": f"GPU{i}", "old": 1.0, "new": 1.0001} for i in range(20)
    ]
    moves = [
        *noise,
        {"pool": V100, "gpu": "V100", "old": 0.50, "new": 0.50004},  # in the plan, +0.008 %
        {"pool": T4, "gpu": "T4", "old": 0.40, "new": 1.00},  # the running plan's pool
        {"pool": L4, "gpu": "L4", "old": 0.40, "new": 0.20},  # 2.8e-8 $/token: beats 1.4e-7
        {"pool": A10, "gpu": "A10", "old": 2.00, "new": 3.00},  # moved, matters to no plan
    ]
    md = night(price_moves=moves).markdown.replace("\\$", "$")
    rows = [line for line in md.splitlines() if line.startswith("| lab/")]
    shown = [row for row in rows if "| running plan |" in row or "would beat" in row]
    assert [row.split(" | ")[0] for row in shown] == [f"| {T4}", f"| {L4}"]
    prices = md.split("## Price moves")[1].split("## ")[0]
    assert "GPU1" not in md and A10 not in md and "+0.0%" not in prices
    assert "22 other move(s) hidden" in md


# -- 3. the chart agrees with itself -----------------------------------------------------


def drawn_frontier(figure: Any) -> list[tuple[float, float]]:
    (line,) = [
        ln
        for ln in figure.axes[0].get_lines()
        if isinstance(ln, Line2D) and ln.get_label() == FRONTIER_LABEL
    ]
    assert line.get_drawstyle() == "steps-pre"
    return list(zip(line.get_xdata(), line.get_ydata(), strict=True))


def assert_no_plan_beyond(front: list[tuple[float, float]], points: list[ChartPoint]) -> None:
    """A "pre" step costs, at throughput x, the first drawn point's cost at or beyond x."""
    for point in points:
        at_or_beyond = [c for t, c in front if t >= point.tokens_per_s * (1 - 1e-12)]
        assert at_or_beyond, f"{point.label} lies right of the frontier"
        assert at_or_beyond[0] <= point.cost_per_hour * (1 + 1e-12), (
            f"{point.label} ({point.tokens_per_s}, {point.cost_per_hour}) lies below the "
            f"frontier, which costs {at_or_beyond[0]} there"
        )


def test_the_exact_plan_between_two_frontier_samples_is_not_below_the_line() -> None:
    # The 70B night: min-cost samples at 640 and 1,050 tokens/s; the exact plan reaches 864
    # tokens/s for $3.56/h, below the $5.12 the next sample costs.
    frontier = [(320.0, 1.333299), (640.0, 2.666598), (1050.0, 5.122165), (1660.0, 8.466598)]
    points = [
        ChartPoint("exact", 864.0, 3.555464, "*", "#27ae60", filled=True),
        ChartPoint("weighted", 1050.0, 5.2, "^", "#8e44ad"),
    ]
    assert_no_plan_beyond(drawn_frontier(chart_figure("70B", frontier, points)), points)


@pytest.mark.filterwarnings("ignore:Tight layout")
@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 5000), st.integers(1, 5000)), max_size=8),
    st.lists(st.tuples(st.integers(1, 5000), st.integers(1, 5000)), min_size=1, max_size=4),
)
def test_no_plan_shown_lies_beyond_the_drawn_frontier(
    frontier: list[tuple[int, int]], plans: list[tuple[int, int]]
) -> None:
    points = [ChartPoint(f"plan {i}", t, c / 100, "o", "#000000") for i, (t, c) in enumerate(plans)]
    front = [(float(t), c / 100) for t, c in frontier]
    figure = chart_figure("random", front, points, demand_tokens_per_s=100.0)
    assert_no_plan_beyond(drawn_frontier(figure), points)


def test_the_report_chart_holds_last_nights_plan_and_every_strategy() -> None:
    from tasks.report import chart_points
    from tasks.report.content import ReportInputs

    inputs = ReportInputs(
        "tiny-7b",
        PLANS,
        PUBLISHED,
        diff_plans(PUBLISHED, EXACT),
        decide(KEPT_TONIGHT, [], EXACT),
        [],
        FRESH,
        1500.0,
    )
    points = chart_points(inputs)
    assert {p.label for p in points} == {"exact", "iterative", "weighted", "last night's plan"}
    sparse = [(500.0, 0.1), (9000.0, 9.0)]  # every plan lies below this sampled line
    assert_no_plan_beyond(drawn_frontier(chart_figure("t", sparse, points)), points)


# -- 4. words a reader knows -------------------------------------------------------------


def test_no_seed_no_unexplained_tp_shorthand_one_word_for_strategy() -> None:
    report = night(dry_run=True)
    text = report.markdown + report.html + slack_text(report) + report.title
    assert "seed" not in text.lower()
    assert not re.search(r"\btp\d+ \d+L\b", text)
    assert "TP (tensor parallelism)" in report.markdown
    for other in ("pick", "method", "objective"):
        assert other not in text.lower(), other


def test_chart_file_names_keep_the_whole_model_name(tmp_path: Path) -> None:
    long_name = "meta-llama/Llama-3.1-70B-Instruct, quantised for the night shift"
    other = build_report(
        long_name, PLANS, None, diff_plans(None, EXACT), decide(None, [], EXACT), [], [], {}, 1.0
    )
    combined = combine_reports([night(), other])
    names = {p.name for p in write_report(combined, tmp_path).values()}
    slug = "meta-llama-llama-3-1-70b-instruct-quantised-for-the-night-shift"
    assert f"chart-{slug}.png" in names and "chart-tiny-7b.png" in names
    same = combine_reports([night(), night()])
    assert sorted(same.images) == ["01-chart-tiny-7b.png", "02-chart-tiny-7b.png"]


def test_links_default_to_none() -> None:
    assert ReportLinks() == ReportLinks(None, None, None)
