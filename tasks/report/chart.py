"""The report's chart: cost per hour against tokens/s, the frontier and the plans, as a PNG."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

# The Agg canvas is attached to the figure directly: no pyplot, no global backend switch.
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SECONDS_PER_HOUR = 3600.0
LOG_SCALE_SPAN = 30.0  # switch both axes to log when the values span more than this factor
FRONTIER_LABEL = "frontier: least cost found for each throughput"


@dataclass(frozen=True)
class ChartPoint:
    """One plan on the chart."""

    label: str
    tokens_per_s: float
    cost_per_hour: float
    marker: str
    color: str
    filled: bool = False


def frontier_line(
    frontier: Sequence[tuple[float, float]], points: Sequence[ChartPoint] = ()
) -> list[tuple[float, float]]:
    """The frontier the chart draws: the plans no other plan beats (as much throughput or more
    for no more cost), from the sampled frontier and every plan shown, by growing throughput.

    The sampled frontier holds min-cost plans at a few throughput demands only: a plan between
    two samples (tonight's exact plan, typically) can reach its throughput for less than the
    next sample costs. Adding the shown plans keeps every one of them on or above the line.
    """
    candidates = sorted(
        {(t, c) for t, c in frontier if t > 0 and c > 0}
        | {
            (p.tokens_per_s, p.cost_per_hour)
            for p in points
            if p.tokens_per_s > 0 and p.cost_per_hour > 0
        },
        key=lambda tc: (-tc[0], tc[1]),
    )
    line: list[tuple[float, float]] = []
    for tokens_per_s, cost_per_hour in candidates:  # by throughput, highest first
        if not line or cost_per_hour < line[-1][1]:
            line.append((tokens_per_s, cost_per_hour))
    return line[::-1]


def cost_on_frontier(line: Sequence[tuple[float, float]], tokens_per_s: float) -> float | None:
    """The drawn frontier's cost at a throughput (the step's "pre" value); None beyond it."""
    for t, c in line:
        if t >= tokens_per_s:
            return c
    return None


def render_chart(
    title: str,
    frontier: Sequence[tuple[float, float]],
    points: Sequence[ChartPoint],
    *,
    demand_tokens_per_s: float = 0.0,
    iso_cost_per_token: Sequence[float] = (),
) -> bytes:
    """PNG bytes of `chart_figure`."""
    figure = chart_figure(
        title,
        frontier,
        points,
        demand_tokens_per_s=demand_tokens_per_s,
        iso_cost_per_token=iso_cost_per_token,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def chart_figure(
    title: str,
    frontier: Sequence[tuple[float, float]],
    points: Sequence[ChartPoint],
    *,
    demand_tokens_per_s: float = 0.0,
    iso_cost_per_token: Sequence[float] = (),
) -> Figure:
    """Frontier as a step line, one marker per plan, iso-$/token lines, demand."""
    figure = Figure(figsize=(8.0, 5.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    front = frontier_line(frontier, points)
    xs = [t for t, _ in front] + [p.tokens_per_s for p in points if p.tokens_per_s > 0]
    ys = [c for _, c in front] + [p.cost_per_hour for p in points if p.cost_per_hour > 0]
    log = _spans(xs) or _spans(ys)
    if front:
        # Reaching a throughput between two frontier plans costs the next plan's price: "pre".
        axes.step(
            [t for t, _ in front],
            [c for _, c in front],
            where="pre",
            color="#888888",
            linewidth=1.5,
            label=FRONTIER_LABEL,
        )
        samples = {(float(t), float(c)) for t, c in frontier}
        sampled = [(t, c) for t, c in front if (t, c) in samples]
        axes.plot([t for t, _ in sampled], [c for _, c in sampled], ".", color="#888888")
    if xs and ys:
        _iso_lines(axes, xs, ys, iso_cost_per_token, log)
    if demand_tokens_per_s > 0:
        axes.axvline(demand_tokens_per_s, color="#c0392b", linestyle=":", linewidth=1)
        axes.annotate(
            f"demand {demand_tokens_per_s:,.0f} tokens/s",
            (demand_tokens_per_s, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, -12),  # inside the top edge, right of the line
            textcoords="offset points",
            fontsize=8,
            color="#c0392b",
        )
    for point in points:
        if point.tokens_per_s <= 0 or point.cost_per_hour <= 0:
            continue
        # Hollow markers over one filled one: plans that coincide stay visible.
        axes.plot(
            point.tokens_per_s,
            point.cost_per_hour,
            point.marker,
            markersize=14 if point.filled else 11,
            markerfacecolor=point.color if point.filled else "none",
            markeredgecolor=point.color,
            markeredgewidth=1.8,
            linestyle="none",
            label=_plain(point.label),
            zorder=4 if point.filled else 5,
        )
    if log:
        axes.set_xscale("log")
        axes.set_yscale("log")
    axes.set_xlabel("throughput (output tokens/s)")
    axes.set_ylabel(_plain("cost ($/hour)"))
    axes.set_title(_plain(title), fontsize=11)
    axes.grid(True, which="both", alpha=0.25)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="lower right")  # plans sit above the best iso-line
    figure.tight_layout()
    return figure


def _plain(text: str) -> str:
    """Text matplotlib shows as is: a pair of `$` would otherwise start mathtext."""
    return text.replace("$", r"\$")


def _spans(values: Sequence[float]) -> bool:
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > LOG_SCALE_SPAN


def _iso_lines(
    axes: Axes, xs: Sequence[float], ys: Sequence[float], cpts: Sequence[float], log: bool
) -> None:
    """Dashed lines of constant $/token: cost_per_hour = cpt × 3600 × tokens_per_s."""
    low = min(xs) * (0.5 if log else 0.0)
    high = max(xs) * 1.1
    for cpt in sorted({c for c in cpts if c and c > 0}):
        slope = cpt * SECONDS_PER_HOUR
        axes.plot(
            [max(low, 1e-9), high],
            [slope * max(low, 1e-9), slope * high],
            "--",
            color="#4a90d9",
            linewidth=0.8,
            alpha=0.7,
            label=_plain(f"constant $/token: ${cpt * 1e6:.4g} per million tokens"),
        )
    if not log:
        axes.set_xlim(left=0)
        axes.set_ylim(bottom=0, top=max(ys) * 1.15)
