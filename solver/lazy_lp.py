"""The LP relaxation that column generation prices against, over a fleet, and its pricing bound.

Rows (ktokens/s, USD/h, GPUs): each pool's availability, each quota, each model's demand, the
fleet floor, each resilience row (spot domain, model), for a capped model `v_m - T_m <= 0` and
`v_m <= U_m`, the budget, the ratio cap `C - r V <= 0`, the cost cap, at least one replica.
Columns: the configurations, the useful throughput v_m of each capped model (bounded only below,
so that LP duality holds with every reduced cost >= 0), and slack on the rows that ask for
throughput or a replica, priced high so the LP is always feasible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import highspy
import numpy as np

from solver.fleet_figures import spot_domains
from solver.milp import KTOKENS, SOLVER_LOCK, Requirements
from solver.replicas import PricingBound, ReplicaConfig, stage_types
from solver.scenario import Scenario

SLACK_COST = 1e6  # per unit of unmet demand / missing replica in the LP, so it is always feasible

Row = tuple[str, ...]


@dataclass(frozen=True)
class Limits:
    """Objective weights and the extra rows of one solve."""

    cost_weight: float
    throughput_weight: float  # on useful throughput V
    gpu_weight: float
    model_weights: dict[int, float]  # on each model's raw throughput T_m
    requirements: Requirements
    budget_per_hour: float | None
    max_ratio: float | None
    max_cost_per_hour: float | None


@dataclass(frozen=True)
class LpSolution:
    objective: float
    slack: float
    duals: dict[Row, float]
    values: tuple[float, ...] = ()  # replicas of each configuration, in the LP's column order

    def dual(self, *row: str) -> float:
        return self.duals.get(row, 0.0)


def _rows(scenario: Scenario, limits: Limits) -> list[tuple[Row, float, float]]:
    """(row key, lower, upper) in a fixed order: pools first, then the fleet's rows."""
    rows: list[tuple[Row, float, float]] = [
        (("pool", str(p)), -math.inf, float(pool.available))
        for p, pool in enumerate(scenario.pools)
    ]
    rows += [
        (("quota", str(q)), -math.inf, float(quota.max_gpus))
        for q, quota in enumerate(scenario.quotas)
    ]
    requirements = limits.requirements
    rows += [(("demand", str(m)), d, math.inf) for m, d in sorted(requirements.demand_k.items())]
    if requirements.total_demand_k is not None:
        rows.append((("total",), requirements.total_demand_k, math.inf))
    rows += [(("res", *key), r, math.inf) for key, r in sorted(requirements.resilience_k.items())]
    for m in _capped(scenario):
        rows.append((("link", str(m)), -math.inf, 0.0))
        rows.append((("cap", str(m)), -math.inf, scenario.models[m].useful_tokens_per_s / KTOKENS))
    if limits.budget_per_hour is not None:
        rows.append((("budget",), -math.inf, limits.budget_per_hour))
    if limits.max_ratio is not None:
        rows.append((("ratio",), -math.inf, 0.0))
    if limits.max_cost_per_hour is not None:
        rows.append((("cost",), -math.inf, limits.max_cost_per_hour))
    rows.append((("one",), 1.0, math.inf))
    return rows


def _capped(scenario: Scenario) -> list[int]:
    return [i for i, m in enumerate(scenario.models) if m.useful_tokens_per_s is not None]


def _column(
    scenario: Scenario, limits: Limits, config: ReplicaConfig, index: dict[Row, int]
) -> tuple[dict[int, float], float]:
    """A configuration's coefficients by row index, and its objective coefficient."""
    tokens_k = config.tokens_per_s / KTOKENS
    capped = scenario.models[config.model].useful_tokens_per_s is not None
    m = str(config.model)
    column: dict[int, float] = {index[("pool", str(p))]: float(g) for p, g in config.gpus_by_pool}
    for q, quota in enumerate(scenario.quotas):
        gpus = sum(g for p, g in config.gpus_by_pool if quota.matches(scenario.pools[p]))
        if gpus:
            column[index[("quota", str(q))]] = float(gpus)
    ratio = limits.max_ratio or 0.0
    values = {
        ("demand", m): tokens_k,
        ("total",): tokens_k,
        ("link", m): -tokens_k,
        ("budget",): config.cost_per_hour,
        ("ratio",): config.cost_per_hour - (0.0 if capped else ratio * tokens_k),
        ("cost",): config.cost_per_hour,
        ("one",): 1.0,
    }
    domain = config.spot_domain(scenario.solver.survive_spot_loss)
    for key in limits.requirements.resilience_k:
        if key[-1] == m and tuple(key[:-1]) != domain:
            values[("res", *key)] = tokens_k
    for row, value in values.items():
        if row in index:
            column[index[row]] = value
    objective = (
        limits.cost_weight * config.cost_per_hour
        - (0.0 if capped else limits.throughput_weight * tokens_k)
        - limits.model_weights.get(config.model, 0.0) * tokens_k
        + limits.gpu_weight * config.gpus
    )
    return column, objective


def solve_lp(
    highs: highspy.Highs, scenario: Scenario, configs: list[ReplicaConfig], limits: Limits
) -> LpSolution:
    """The LP relaxation over the current columns, with slack so it is always feasible."""
    rows = _rows(scenario, limits)
    index = {key: i for i, (key, _, _) in enumerate(rows)}
    starts, indices, values, costs = [0], [], [], []

    def add(column: dict[int, float], cost: float) -> None:
        for row in sorted(column):
            indices.append(row)
            values.append(column[row])
        starts.append(len(indices))
        costs.append(cost)

    for config in configs:
        add(*_column(scenario, limits, config, index))
    for m in _capped(scenario):  # v_m: in V, the ratio cap, its link and cap rows
        column = {index[("link", str(m))]: 1.0, index[("cap", str(m))]: 1.0}
        if ("ratio",) in index:
            column[index[("ratio",)]] = -(limits.max_ratio or 0.0)
        add(column, -limits.throughput_weight)
    slack_from = len(costs)
    for key, _, _ in rows:
        if key[0] in ("demand", "total", "res", "one"):
            add({index[key]: 1.0}, SLACK_COST)

    lp = highspy.HighsLp()
    lp.num_col_ = len(costs)
    lp.num_row_ = len(rows)
    lp.col_cost_ = np.array(costs, dtype=float)
    lp.col_lower_ = np.zeros(len(costs))
    lp.col_upper_ = np.full(len(costs), highspy.kHighsInf)
    lp.row_lower_ = np.array([_finite(lo) for _, lo, _ in rows])
    lp.row_upper_ = np.array([_finite(hi) for _, _, hi in rows])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.array(starts, dtype=np.int32)
    lp.a_matrix_.index_ = np.array(indices, dtype=np.int32)
    lp.a_matrix_.value_ = np.array(values, dtype=float)
    with SOLVER_LOCK:
        highs.passModel(lp)
        highs.run()
    solution = highs.getSolution()
    duals = list(solution.row_dual)
    return LpSolution(
        objective=highs.getInfo().objective_function_value,
        slack=sum(solution.col_value[slack_from:]),
        duals={key: duals[i] for key, i in index.items()},
        values=tuple(solution.col_value[: len(configs)]),
    )


def _finite(value: float) -> float:
    if value == math.inf:
        return highspy.kHighsInf
    if value == -math.inf:
        return -highspy.kHighsInf
    return value


def pricing_bounds(
    scenario: Scenario, limits: Limits, lp: LpSolution, threshold: float
) -> list[PricingBound]:
    """Per model: reduced cost rc = cost_c - y.a_c split into additive stage values, a gain per
    token/s (less for a replica exposed to a spot domain) and a constant."""
    cost_coefficient = limits.cost_weight - lp.dual("budget") - lp.dual("ratio") - lp.dual("cost")
    ratio = limits.max_ratio or 0.0
    kind = scenario.solver.survive_spot_loss
    bounds = []
    for m, model in enumerate(scenario.models):
        capped = model.useful_tokens_per_s is not None
        key = str(m)
        gain = (
            (0.0 if capped else limits.throughput_weight - lp.dual("ratio") * ratio)
            + limits.model_weights.get(m, 0.0)
            + lp.dual("demand", key)
            + lp.dual("total")
            - (lp.dual("link", key) if capped else 0.0)
        )
        exposed_loss: dict[tuple[str, ...], float] = {}
        for domain in spot_domains(scenario):
            row_dual = lp.dual("res", *domain, key)
            gain += row_dual  # a replica not exposed to the domain counts in its row
            exposed_loss[domain] = row_dual / KTOKENS
        view = scenario.for_model(m)
        values = {}
        for stage in stage_types(view):
            quota_dual = sum(
                lp.dual("quota", str(q))
                for q, quota in enumerate(scenario.quotas)
                if quota.matches(stage.pool)
            )
            gpu_value = limits.gpu_weight - lp.dual("pool", str(stage.pool_index)) - quota_dual
            values[(stage.pool_index, stage.tp)] = stage.tp * (
                cost_coefficient * stage.pool.price_per_gpu_hour + gpu_value
            )
        bounds.append(
            PricingBound(
                values,
                gain / KTOKENS,
                -lp.dual("one"),
                threshold,
                exposed_loss if kind != "none" else {},
                kind,
            )
        )
    return bounds
