"""Plain-text rendering of plans for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def describe_replica(replica: dict[str, Any]) -> str:
    """E.g. `V100 TP1` or `A100 TP2 x3 stages (24+28+28 layers)`."""
    stages = replica["stages"]
    kinds = sorted({(s["gpu"], s["tp"]) for s in stages})
    label = " + ".join(f"{gpu} TP{tp}" for gpu, tp in kinds)
    if len(stages) == 1:
        return label
    layers = "+".join(str(s["layers"]) for s in stages)
    return f"{label} x{len(stages)} stages ({layers} layers)"


def describe_plan(plan: dict[str, Any]) -> str:
    """One line: `1x V100 TP1; 2x A10 TP4` (on a fleet, each replica led by its model)."""
    if not plan.get("replicas"):
        return "-"
    fleet = is_fleet_plan(plan)
    return "; ".join(
        f"{r['count']}x " + (f"{r.get('model', '')}: " if fleet else "") + describe_replica(r)
        for r in plan["replicas"]
    )


def is_fleet_plan(plan: dict[str, Any]) -> bool:
    """A plan of more than one model."""
    return len(plan.get("models") or []) > 1


def model_rows(plan: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """Per model: name, tokens/s (useful), $/h, $/token, demand."""
    rows = []
    for model in plan.get("models") or []:
        tokens = f"{model['tokens_per_s']:,.0f}"
        if model["useful_tokens_per_s"] < model["tokens_per_s"] * (1 - 1e-9):
            tokens += f" ({model['useful_tokens_per_s']:,.0f} useful)"
        rows.append(
            (
                model["name"],
                tokens,
                f"${model['cost_per_hour']:,.2f}",
                format_cost_per_token(model["cost_per_token"]),
                f"{model['demand_tokens_per_s']:,.0f}",
            )
        )
    return rows


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A left-aligned text table with a header rule."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in (headers, *rows)
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def format_cost_per_token(value: float | None) -> str:
    return "-" if value is None else f"${value:.3e}"


def plan_table(plan: dict[str, Any]) -> str:
    """The plan as a summary line and a replica table."""
    summary = (
        f"{plan['strategy']}: {plan['status']}  "
        f"{plan.get('tokens_per_s', 0):,.0f} tokens/s  "
        f"${plan.get('cost_per_hour', 0):,.2f}/h  "
        f"{format_cost_per_token(plan.get('cost_per_token'))}/token  "
        f"{plan.get('gpus', 0)} GPUs"
    )
    if plan.get("replicas") and plan.get("message"):  # e.g. not proven optimal, with its gap
        summary += f"\n{plan['message']}"
    fleet = is_fleet_plan(plan)
    if fleet:
        headers_m = ("model", "tokens/s", "cost/h", "$/token", "demand tokens/s")
        summary += "\n" + format_table(headers_m, model_rows(plan))
    rows = [
        (
            *((r.get("model", ""),) if fleet else ()),
            str(r["count"]),
            f"{r['cloud']}/{r['region']}",
            describe_replica(r),
            f"{r['tokens_per_s']:,.1f}",
            f"{r['cost_per_hour']:,.2f}",
        )
        for r in plan.get("replicas", [])
    ]
    if not rows:
        return summary + ("\n" + plan["message"] if plan.get("message") else "")
    headers = (
        *(("model",) if fleet else ()),
        "count",
        "where",
        "stages",
        "tokens/s each",
        "$/h each",
    )
    return summary + "\n" + format_table(headers, rows)
