"""Fleet report sections from hand-built fleet plan JSON (CONTRACT.md): per model and total,
capacity with the binding limits named, the price of resilience, and their Slack lines."""

from __future__ import annotations

from typing import Any

from solver.diff import decide, diff_plans
from tasks.report import build_report
from tasks.report.blocks import Table
from tasks.report.fleet import (
    binding_limits,
    capacity_section,
    fleet_section,
    fleet_sections,
    resilience_line,
    resilience_section,
    spot_share,
    tokens_left,
)

EAST_SPOT = "aws/us-east-1/A100/spot"
WEST_SPOT = "aws/us-west-2/A100/spot"
EAST_OD = "aws/us-east-1/A100/on-demand"


def replica(model: str, pool: str, count: int, tokens: float, cost: float, tp: int = 1) -> dict:
    cloud, region, gpu, market = pool.split("/")
    return {
        "count": count,
        "model": model,
        "cloud": cloud,
        "region": region,
        "tokens_per_s": tokens,
        "cost_per_hour": cost,
        "stages": [{"pool": pool, "gpu": gpu, "tp": tp, "layers": 32, "market": market}],
    }


def fleet_plan(
    replicas: list[dict], demand: dict[str, float], resilience: dict | None = None
) -> dict[str, Any]:
    """A fleet plan JSON with totals summed from `replicas` (all tokens useful)."""
    models = []
    for name, need in demand.items():
        mine = [r for r in replicas if r["model"] == name]
        tokens = sum(r["count"] * r["tokens_per_s"] for r in mine)
        cost = sum(r["count"] * r["cost_per_hour"] for r in mine)
        models.append(
            {
                "name": name,
                "demand_tokens_per_s": need,
                "tokens_per_s": tokens,
                "useful_tokens_per_s": tokens,
                "cost_per_hour": cost,
                "cost_per_token": cost / (3600 * tokens),
                "gpus": sum(r["count"] * r["stages"][0]["tp"] for r in mine),
                "replicas": mine,
            }
        )
    tokens = sum(m["tokens_per_s"] for m in models)
    cost = sum(m["cost_per_hour"] for m in models)
    used: dict[str, int] = {}
    for r in replicas:
        pool = r["stages"][0]["pool"]
        used[pool] = used.get(pool, 0) + r["count"] * r["stages"][0]["tp"]
    plan: dict[str, Any] = {
        "strategy": "exact",
        "status": "optimal",
        "tokens_per_s": tokens,
        "useful_tokens_per_s": tokens,
        "cost_per_hour": cost,
        "cost_per_token": cost / (3600 * tokens),
        "gpus": sum(m["gpus"] for m in models),
        "replicas": replicas,
        "models": models,
        "capacity": {
            "pools": [
                {
                    "pool": p,
                    "market": p.rsplit("/", 1)[1],
                    "used_gpus": used.get(p, 0),
                    "available_gpus": 8,
                }
                for p in (EAST_SPOT, WEST_SPOT, EAST_OD)
            ],
            "quotas": [
                {
                    "label": "aws/*/A100/spot",
                    "cloud": "aws",
                    "region": None,
                    "gpu": "A100",
                    "market": "spot",
                    "used_gpus": used.get(EAST_SPOT, 0) + used.get(WEST_SPOT, 0),
                    "max_gpus": 6,
                },
            ],
        },
    }
    if resilience is not None:
        plan["resilience"] = resilience
    return plan


DEMAND = {"small": 2000.0, "large": 1000.0}
# Without the constraint: every replica on cheap east spot (loses everything with us-east-1).
UNCONSTRAINED = fleet_plan(
    [replica("small", EAST_SPOT, 2, 1000, 1.0), replica("large", EAST_SPOT, 4, 250, 1.0)], DEMAND
)


def domain(name: str, small_left: float, large_left: float) -> dict:
    return {
        "domain": name,
        "models": [
            {"name": "small", "demand_tokens_per_s": 2000.0, "required_tokens_per_s": 2000.0,
             "tokens_per_s_left": small_left},
            {"name": "large", "demand_tokens_per_s": 1000.0, "required_tokens_per_s": 1000.0,
             "tokens_per_s_left": large_left},
        ],
    }  # fmt: skip


# With it: small spread over both regions' spot (2 + 2), large on on-demand (4 GPUs at $2).
RESILIENT = fleet_plan(
    [
        replica("small", EAST_SPOT, 2, 1000, 1.0),
        replica("small", WEST_SPOT, 2, 1000, 1.2),
        replica("large", EAST_OD, 4, 250, 2.0),
    ],
    DEMAND,
    resilience={
        "domain_kind": "region",
        "fraction": 1.0,
        "domains": [domain("aws/us-east-1", 2000, 1000), domain("aws/us-west-2", 2000, 1000)],
        "spot_share": 0.5,
    },
)


def texts(section: Any) -> str:
    parts = []
    for block in section.blocks:
        if isinstance(block, Table):
            parts.append(" | ".join(block.headers))
            parts += [" | ".join(row) for row in block.rows]
        else:
            parts.append("".join(str(getattr(p, "text", p)) for p in block.parts))
    return "\n".join(parts)


def test_fleet_section_lists_every_model_and_the_total() -> None:
    text = texts(fleet_section(RESILIENT))
    # small: 4 x 1000 tokens/s for $4.40/h; large: 4 x 250 for $8/h; fleet 5000 for $12.40
    assert "small | 2,000 | 4,000 | 4,000 | $4.40 | $0.3056 | 4" in text
    assert "large | 1,000 | 1,000 | 1,000 | $8.00 | $2.222 | 4" in text
    assert "fleet (total) | 3,000 | 5,000 | 5,000 | $12.40 | $0.6889 | 8" in text


def test_useful_tokens_set_the_fleet_cost_per_token() -> None:
    plan = {**RESILIENT, "useful_tokens_per_s": 2500.0}
    del plan["cost_per_token"]
    text = texts(fleet_section(plan))
    assert "fleet (total) | 3,000 | 5,000 | 2,500 | $12.40 | $1.378 | 8" in text


def test_pre_fleet_plans_give_no_fleet_sections() -> None:
    old = {"strategy": "exact", "status": "optimal", "tokens_per_s": 1.0, "replicas": []}
    assert fleet_sections(old) == [] and resilience_line(old, None) is None


def test_capacity_names_the_binding_quota_and_pools() -> None:
    assert [limit.describe() for limit in binding_limits(UNCONSTRAINED)] == [
        "quota aws/*/A100/spot (6 of 6 GPUs)"
    ]
    text = texts(capacity_section(UNCONSTRAINED))
    assert "Binding (used to the last GPU): quota aws/*/A100/spot (6 of 6 GPUs)." in text
    # binding rows first, quotas before pools
    rows = text.splitlines()[2:]
    assert rows == [
        "quota | aws/*/A100/spot | spot | 6 | 6 | binding",
        "pool | aws/us-east-1/A100/spot | spot | 6 | 8 | ",
    ]
    assert "2 pool(s) the plan does not use are not listed" in text


def test_capacity_without_binding_limits_says_so_and_hides_idle_pools() -> None:
    plan = fleet_plan([replica("small", EAST_OD, 2, 1000, 2.0)], {"small": 2000.0})
    text = texts(capacity_section(plan))
    assert "Nothing binds" in text and "2 pool(s) the plan does not use are not listed" in text
    assert EAST_SPOT not in text and "quota | aws/*/A100/spot | spot | 0 | 6 | " in text


def test_price_of_resilience_compares_both_exact_plans_per_domain() -> None:
    text = texts(resilience_section(RESILIENT, UNCONSTRAINED))
    assert "with the constraint (tonight) | optimal | $12.40 | $0.6889 | 8 | 50%" in text
    assert "without the constraint | optimal | $6.00 | $0.5556 | 6 | 100%" in text
    assert "difference |  | +$6.40 | +24.0% |  | " in text
    # losing us-east-1 spot: tonight's plan keeps everything; the unconstrained loses it all
    assert "aws/us-east-1 | small | 2,000 | 2,000 | 2,000 (100%) | 0 (0%)" in text
    assert "aws/us-east-1 | large | 1,000 | 1,000 | 1,000 (100%) | 0 (0%)" in text
    assert "aws/us-west-2 | small | 2,000 | 2,000 | 2,000 (100%) | 2,000 (100%)" in text


def test_resilience_line_for_slack() -> None:
    line = resilience_line(RESILIENT, UNCONSTRAINED)
    assert line == (
        "Surviving the loss of any region's spot capacity costs +$6.40/h (+24.0% $/token): "
        "$12.40/h against $6.00/h without it; spot share 50% of GPUs; the worst region loss "
        "leaves 100% of a model's demand"
    )
    assert "could not be priced" in (resilience_line(RESILIENT, None) or "")
    assert resilience_line(UNCONSTRAINED, None) is None  # solved without the constraint


def test_spot_share_and_tokens_left_from_the_stages() -> None:
    assert spot_share(UNCONSTRAINED) == 1.0
    assert spot_share({"replicas": [replica("small", EAST_OD, 1, 1, 1)]}) == 0.0
    assert tokens_left(RESILIENT, "aws/us-west-2", "region") == {"small": 2000.0, "large": 1000.0}
    assert tokens_left(RESILIENT, "aws", "cloud") == {"small": 0.0, "large": 1000.0}


def test_the_report_carries_the_sections_and_slack_the_resilience_line() -> None:
    plans = {"exact": RESILIENT}
    report = build_report(
        "fleet",
        plans,
        None,
        diff_plans(None, RESILIENT),
        decide(None, (), RESILIENT),
        [],
        None,
        {"source": "test"},
        3000.0,
        unconstrained=UNCONSTRAINED,
    )
    md = report.markdown
    assert md.index("## Fleet") < md.index("## Capacity") < md.index("## Price of resilience")
    slack = "\n".join(report.slack_sections)
    assert "Surviving the loss of any region's spot capacity costs +$6.40/h" in slack
    assert "Binding" not in slack  # nothing in the resilient plan binds
