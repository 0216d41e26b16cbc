"""tasks.report: Markdown, HTML (escaped, self-contained), the chart, files, Slack, artifacts."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from solver.diff import decide, diff_plans
from tasks.report import (
    STRATEGY_NOTE,
    Report,
    artifact_key,
    build_report,
    combine_reports,
    write_report,
)
from tasks.slack import build_message

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
V100 = "lab/east/V100"
T4 = "lab/east/T4"
EVIL = "lab/east/<script>alert(1)</script>"


def replica(pool: str, gpu: str, count: int, tokens_per_s: float, cost: float) -> dict[str, Any]:
    stages = [{"pool": pool, "gpu": gpu, "tp": 1, "layers": 32}]
    return {
        "count": count,
        "cloud": "lab",
        "region": "east",
        "tokens_per_s": tokens_per_s,
        "cost_per_hour": cost,
        "stages": stages,
    }


def plan(*replicas: dict[str, Any], strategy: str = "exact", status: str = "optimal") -> dict:
    tokens = sum(r["count"] * r["tokens_per_s"] for r in replicas)
    cost = sum(r["count"] * r["cost_per_hour"] for r in replicas)
    return {
        "strategy": strategy,
        "status": status,
        "tokens_per_s": tokens,
        "cost_per_hour": cost,
        "cost_per_token": cost / (3600 * tokens) if tokens else None,
        "gpus": sum(r["count"] for r in replicas),
        "replicas": list(replicas),
    }


EXACT = plan(replica(V100, "V100", 2, 1000, 0.30))
PLANS = {
    "exact": EXACT,
    "iterative": plan(replica(V100, "V100", 1, 1000, 0.3), replica(T4, "T4", 1, 1200, 0.8)),
    "weighted": plan(replica(T4, "T4", 4, 1200, 0.80), strategy="weighted"),
}
PREVIOUS = plan(replica(T4, "T4", 2, 1200, 0.80))
FRONTIER = [(1000.0, 0.3), (2000.0, 0.6), (3000.0, 0.9), (4800.0, 3.2)]
MOVES = [
    {"pool": T4, "gpu": "T4", "old_price_per_gpu_hour": 0.70, "new_price_per_gpu_hour": 0.80},
    {"pool": V100, "gpu": "V100", "old_price_per_gpu_hour": 0.31, "new_price_per_gpu_hour": 0.30},
]
FRESHNESS = {"source": "snapshot", "fetched_at": "2025-06-01T02:00:00Z", "age": "2 h"}


def report_for(
    previous: dict | None = PREVIOUS, plans: dict | None = None, model: str = "tiny-7b", **kw: Any
) -> Report:
    plans = plans or PLANS
    violations = kw.pop("violations", ())
    args: dict[str, Any] = {
        "frontier": FRONTIER,
        "price_moves": MOVES,
        "freshness": FRESHNESS,
        "demand_tokens_per_s": 1500.0,
        **kw,
    }
    return build_report(
        model,
        plans,
        previous,
        diff_plans(previous, plans["exact"]),
        decide(previous, violations, plans["exact"]),
        **args,
    )


def test_markdown_names_replicas_added_and_removed_per_pool() -> None:
    report = report_for()
    md = report.markdown
    assert report.title.startswith("replan — tiny-7b: switch plan: ")
    v100, t4 = "lab/east/V100: 1 GPU (TP 1), 32 layers", "lab/east/T4: 1 GPU (TP 1), 32 layers"
    assert f"| added | 2 | lab/east/V100 | lab/east | 1 | {v100} |" in md
    assert f"| removed | 2 | lab/east/T4 | lab/east | 1 | {t4} |" in md
    assert "| lab/east/T4 | 0 | 2 | 2 | 0 |" in md  # replicas per pool, GPUs before/after
    assert "| V100 | 0 | 2 | +2 |" in md  # GPUs by type
    assert "![cost per hour against tokens/s](chart-tiny-7b.png)" in md


def test_markdown_gives_cost_at_demand_gap_and_lesson() -> None:
    md = report_for().markdown
    # $0.6/h for 2000 tokens/s: $/token 8.33e-8; at 1500 tokens/s a day costs $10.80.
    assert "86,400 s" in md
    assert r"| \$/day at the demand (1,500 tokens/s) | \$24.00 | \$24.00 | \$10.80 | -55.0% |" in md
    assert r"| \$ per million tokens | \$0.1852 | \$0.1852 | \$0.08333 | -55.0% |" in md
    assert "iterative +66.7%, weighted +122.2%" in md
    assert "weighted strategy" in md and "cannot find the plan of least" in md
    assert STRATEGY_NOTE.split(":")[0] in md
    assert r"| lab/east/T4 | T4 | \$0.70 | \$0.80 | +14.3% | running plan |" in md
    assert "| source | snapshot |" in md


def test_first_run_report() -> None:
    report = report_for(previous=None)
    assert "publish the first plan" in report.title
    assert "First run" in report.markdown
    assert [row["plan"] for row in report.table_rows] == ["exact", "iterative", "weighted"]


def test_infeasible_previous_says_why_it_must_move() -> None:
    reason = f"pool {T4}: quota fell below use: uses 2 GPUs, 1 available"
    report = report_for(violations=[reason])
    assert "the running plan no longer fits" in report.title
    assert "must move" in report.markdown
    assert "quota fell below use: uses 2 GPUs, 1 available" in report.markdown


def test_unchanged_report() -> None:
    report = report_for(previous=EXACT)
    assert report.title.endswith("keep the running plan (tonight's plan is the same)")
    assert "same replicas" in report.markdown
    assert "Replicas added and removed" not in report.markdown


def test_html_escapes_every_value() -> None:
    evil_plan = plan(replica(EVIL, "<b>GPU</b>", 1, 1000, 0.3))
    plans = {**PLANS, "exact": evil_plan}
    report = build_report(
        "<img src=x onerror=alert(1)>",
        plans,
        PREVIOUS,
        diff_plans(PREVIOUS, evil_plan),
        decide(PREVIOUS, [], evil_plan),
        FRONTIER,
        [{"pool": EVIL, "gpu": "x", "old": 1.0, "new": 2.0}],
        {"source": "<script>x</script>"},
        1000.0,
    )
    assert "<script>" not in report.html
    assert "<b>GPU" not in report.html and "<img src=x" not in report.html
    assert "lab/east/&lt;script&gt;alert(1)&lt;/script&gt;" in report.html
    assert "<script" not in report.markdown and "<img" not in report.markdown
    for section in report.slack_sections:
        assert "<script" not in section


def test_chart_is_png_and_html_embeds_it() -> None:
    report = report_for()
    assert report.chart_png.startswith(PNG_SIGNATURE)
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', report.html)
    assert match is not None
    assert base64.b64decode(match.group(1)) == report.chart_png
    assert not re.search(r"(src|href)=\"(?!data:)", report.html)  # self-contained


def test_chart_survives_missing_plans_and_dollar_signs() -> None:
    infeasible = {"strategy": "weighted", "status": "infeasible", "replicas": []}
    report = report_for(plans={**PLANS, "weighted": infeasible}, frontier=[])
    assert report.chart_png.startswith(PNG_SIGNATURE)
    priced = report_for(previous=None, model="a $5$ model at $0.1/h")  # no mathtext
    assert priced.chart_png.startswith(PNG_SIGNATURE)


def test_price_moves_accept_a_dataframe() -> None:
    report = report_for(price_moves=pd.DataFrame(MOVES))
    assert "+14.3%" in report.markdown


def test_write_report_writes_three_files_atomically(tmp_path: Path) -> None:
    report = report_for()
    run_dir = tmp_path / "runs" / "2025-06-01T020000Z"
    written = write_report(report, run_dir)
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["chart-tiny-7b.png", "report.html", "report.md"]
    assert written["markdown"].read_text(encoding="utf-8") == report.markdown
    assert written["html"].read_text(encoding="utf-8") == report.html
    assert (run_dir / "chart-tiny-7b.png").read_bytes() == report.chart_png
    write_report(report, run_dir)  # overwrite in place
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]


def test_slack_sections_fit_build_message() -> None:
    report = report_for()
    assert report.slack_sections[0].startswith(":warning: *Stale prices")
    assert report.slack_sections[1].startswith("*tiny-7b* — *switch plan: ")
    assert any("Gap to the exact strategy" in s for s in report.slack_sections)
    payload = build_message(report.title, report.slack_sections)
    assert len(payload["blocks"]) <= 50


def test_table_rows_are_json_friendly() -> None:
    rows = report_for().table_rows
    assert [row["plan"] for row in rows] == [
        "exact",
        "iterative",
        "weighted",
        "last night (tonight's prices)",
    ]
    assert rows[0]["gap_to_exact_pct"] == 0.0
    assert rows[2]["gap_to_exact_pct"] == pytest.approx(122.222222, rel=1e-6)


def test_combine_reports(tmp_path: Path) -> None:
    first = report_for()
    second = build_report(
        "other <model>",
        PLANS,
        None,
        diff_plans(None, EXACT),
        decide(None, [], EXACT),
        FRONTIER,
        [],
        {},
        100.0,
    )
    combined = combine_reports([first, second])
    assert combined.title == "replan — 2 model(s): 2 to publish, 0 kept"
    assert len(combined.images) == 2
    assert combined.html.count("data:image/png;base64,") == 2
    assert "other &lt;model&gt;" in combined.html
    names = sorted(p.name for p in write_report(combined, tmp_path).values())
    assert names[:2] == ["chart-other-model.png", "chart-tiny-7b.png"]
    for image in combined.images:
        assert f"]({image})" in combined.markdown
    assert len(combined.table_rows) == len(first.table_rows) + len(second.table_rows)


def test_artifact_keys_are_prefect_safe() -> None:
    assert artifact_key("Replan/Tiny 7B", "report") == "replan-tiny-7b-report"
    assert artifact_key("", "") == "replan-report"


def test_an_unproven_exact_plan_is_said_first_with_its_gap() -> None:
    unproven = {
        **EXACT,
        "status": "feasible",
        "mip_gap": 0.0218,
        "lower_bound_cost_per_token": EXACT["cost_per_token"] / 1.0218,
    }
    report = report_for(plans={**PLANS, "exact": unproven})
    read_first = report.markdown.split("## Decision")[0]
    assert "Not proven optimal" in read_first
    assert "at most 2.2 % above the optimum" in read_first
    assert any("Not proven optimal" in s for s in report.slack_sections)
    proven = report_for()
    assert "Not proven optimal" not in proven.markdown
