"""The cost/throughput frontier: least cost per hour at growing throughput demands.

Context for the report's chart, not a decision: each point has a time limit and, on large
configuration spaces, skips the optimality proof.
"""

from __future__ import annotations

import time

from solver.scenario import Scenario
from solver.strategies import placement_model

FRONTIER_POINT_SECONDS = 5.0  # a time limit per point: the frontier is context, not a decision
FRONTIER_TOTAL_SECONDS = 20.0


def frontier(scenario: Scenario, points: int = 8) -> list[tuple[float, float]]:
    """(tokens_per_s, cost_per_hour) of min-cost plans at demands spaced geometrically from
    the cheapest single plan to the most all GPUs deliver, plus the scenario's own demand."""
    free = scenario.with_options(demand_tokens_per_s=0.0, budget_per_hour=None)
    milp = placement_model(free)
    limits = {"time_limit_s": FRONTIER_POINT_SECONDS, "prove": False}
    fastest = milp.solve(throughput_weight=1.0, **limits)
    cheapest = milp.solve(cost_weight=1.0, **limits)
    if not fastest.counts or not cheapest.counts:
        return []
    high, _, _ = milp.totals(fastest.counts)
    low, low_cost, _ = milp.totals(cheapest.counts)
    demands = {low * (high / low) ** (step / points) for step in range(1, points + 1)}
    if low < scenario.solver.demand_tokens_per_s <= high:
        demands.add(scenario.solver.demand_tokens_per_s)
    result = {(low, low_cost)}
    started = time.perf_counter()
    for demand in sorted(demands):
        if time.perf_counter() - started > FRONTIER_TOTAL_SECONDS:
            break
        milp.scenario = free.with_options(demand_tokens_per_s=demand)
        plan = milp.solve(cost_weight=1.0, **limits)
        if plan.counts:
            tokens_per_s, cost_per_hour, _ = milp.totals(plan.counts)
            result.add((tokens_per_s, cost_per_hour))
    return sorted(result)
