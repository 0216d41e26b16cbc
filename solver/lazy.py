"""The placement MILP over a configuration space too large to enumerate: columns on demand.

Exact, by LP duality. Column generation solves the LP relaxation over *every* configuration
(pricing searches the whole space with a bound that cuts subtrees). With its optimum z_LP and
duals y, any integer plan x has objective >= z_LP + sum_c rc_c x_c with every rc_c >= 0, so a
plan of objective <= F uses only configurations with rc_c <= F - z_LP. Those are enumerated
(the same bounded search) and added; the MILP over the columns then finds a plan of objective
F*, and once every column with rc <= F* - z_LP is present, F* is the optimum over all plans.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import highspy
import numpy as np
from pyomo.common.tee import capture_output

from solver.milp import KTOKENS, SOLVER_LOCK, MilpResult, PlacementMilp, mix_totals
from solver.replicas import (
    ConfigLimitExceeded,
    PricingBound,
    ReplicaConfig,
    SearchBudget,
    enumerate_configs,
    stage_types,
)
from solver.scenario import Scenario

SLACK_COST = 1e6  # per unit of unmet demand / missing replica in the LP, so it is always feasible
MAX_GAP_ROUNDS = 12


@dataclass(frozen=True)
class _Limits:
    """Objective weights and the extra rows of one solve."""

    cost_weight: float
    throughput_weight: float
    gpu_weight: float
    demand_k: float | None
    budget_per_hour: float | None
    max_ratio: float | None
    max_cost_per_hour: float | None


@dataclass(frozen=True)
class _LpSolution:
    objective: float
    slack: float
    pool_duals: dict[int, float]
    demand_dual: float
    budget_dual: float
    ratio_dual: float
    cost_dual: float
    one_dual: float


class LazyPlacementMilp:
    """Same interface as PlacementMilp; generates configurations as the duals ask for them."""

    def __init__(
        self, scenario: Scenario, initial: list[ReplicaConfig], node_budget: int | None
    ) -> None:
        self.scenario = scenario
        self.configs: list[ReplicaConfig] = []
        self._keys: set[tuple] = set()
        self.node_budget = node_budget
        self.build_seconds = 0.0
        self.pricing_seconds = 0.0
        self.solves = 0
        self.lp_solves = 0
        self._milp: PlacementMilp | None = None
        self._milp_size = 0
        # HiGHS prints a banner on stdout when created
        with SOLVER_LOCK, capture_output(capture_fd=True):
            self._highs = highspy.Highs()
        self._highs.setOptionValue("output_flag", False)
        self._add(initial)

    # -- the PlacementMilp interface ----------------------------------------------------------

    def totals(self, counts: dict[int, int]) -> tuple[float, float, int]:
        return mix_totals(self.scenario, self.configs, counts)

    def solve(
        self,
        *,
        cost_weight: float = 0.0,
        throughput_weight: float = 0.0,
        gpu_weight: float = 0.0,
        budget_per_hour: float | None = None,
        max_ratio: float | None = None,
        max_cost_per_hour: float | None = None,
        scenario_limits: bool = True,
        abs_gap: float = 1e-9,
        time_limit_s: float | None = None,
        prove: bool = True,
        rel_gap: float | None = None,
        start: dict[int, int] | None = None,
    ) -> MilpResult:
        """The exact optimum over all configurations (status `feasible` if a budget ran out).

        `prove=False` stops after column generation: the MILP over the columns the LP asked for,
        a good plan without the proof (for context figures such as the frontier).
        """
        started = time.perf_counter()
        options = self.scenario.solver
        scenario_budget = options.budget_per_hour if scenario_limits else None
        budgets = [b for b in (budget_per_hour, scenario_budget) if b is not None]
        demand_k = options.demand_tokens_per_s / KTOKENS if scenario_limits else 0.0
        limits = _Limits(
            cost_weight,
            throughput_weight,
            gpu_weight,
            demand_k if demand_k > 0 else None,
            min(budgets) if budgets else None,
            max_ratio,
            max_cost_per_hour,
        )
        kwargs = dict(
            cost_weight=cost_weight,
            throughput_weight=throughput_weight,
            gpu_weight=gpu_weight,
            budget_per_hour=budget_per_hour,
            max_ratio=max_ratio,
            max_cost_per_hour=max_cost_per_hour,
            scenario_limits=scenario_limits,
            abs_gap=abs_gap,
            time_limit_s=time_limit_s,
            rel_gap=rel_gap,
            start=start,
        )
        self.solves += 1
        try:
            lp = self._column_generation(limits)
        except ConfigLimitExceeded:
            return self._milp_solve(kwargs, started, proven=False)
        if lp.slack > 1e-7:
            return MilpResult("infeasible", {}, None, None, time.perf_counter() - started)
        result = self._milp_solve(kwargs, started, proven=prove)
        if not prove:
            return result
        incumbent_cost = self.totals(result.counts)[1] if result.counts else 0.0
        # wide enough to hold every plan tied with the optimum (relative 1e-9 of its cost)
        tolerance = 1e-7 * max(1.0, abs(lp.objective)) + 1e-8 * incumbent_cost
        gap = (result.objective - lp.objective) if result.objective is not None else None
        threshold = gap if gap is not None else max(1e-6, 0.05 * abs(lp.objective))
        for _ in range(MAX_GAP_ROUNDS):
            try:
                budget = self._price(limits, lp, threshold + tolerance)
            except ConfigLimitExceeded:
                unproven = self._milp_solve(kwargs, started, proven=False)
                if not unproven.counts:  # no plan found, none ruled out
                    return MilpResult("unknown", {}, None, None, unproven.seconds)
                return unproven
            if budget.found == 0 and result.objective is not None:
                return result  # every column with rc <= the gap was already in the model
            result = self._milp_solve(kwargs, started, proven=True)
            if result.status == "unknown":
                return result
            if result.objective is not None:
                gap = result.objective - lp.objective
                if gap <= threshold + tolerance:
                    return result  # every column that could do better is in the model
                threshold = gap
            elif budget.cut_by_bound == 0:
                return result  # the whole space is in the model and no plan fits
            else:
                # LP-feasible but no integer plan among the columns: only the whole space
                # can prove there is none (within the node budget, else "unknown")
                threshold = math.inf
        return self._milp_solve(kwargs, started, proven=False)

    # -- internals ----------------------------------------------------------------------------

    def _add(self, configs: list[ReplicaConfig]) -> int:
        added = 0
        for config in configs:
            key = (config.cloud, config.region, config.gpus_by_pool, config.tokens_per_s)
            if key not in self._keys:
                self._keys.add(key)
                self.configs.append(config)
                added += 1
        return added

    def settled(self) -> PlacementMilp:
        """The MILP over the columns generated so far.

        After an exact solve at the optimal ratio, every configuration of a plan tied with the
        optimum (objective within the tolerance) has reduced cost below the last threshold, so
        it is already a column: tie-breaking needs no further pricing.
        """
        if self._milp is None or self._milp_size != len(self.configs):
            self._milp = PlacementMilp(self.scenario, list(self.configs))
            self._milp_size = len(self.configs)
            self.build_seconds += self._milp.build_seconds
        self._milp.scenario = self.scenario  # demand and budget are read at each solve
        return self._milp

    def _milp_solve(self, kwargs: dict, started: float, proven: bool) -> MilpResult:
        result = self.settled().solve(**kwargs)
        status = result.status if proven or not result.counts else "feasible"
        return MilpResult(
            status, result.counts, result.objective, result.bound, time.perf_counter() - started
        )

    def _column_generation(self, limits: _Limits) -> _LpSolution:
        while True:
            lp = self._solve_lp(limits)
            scale = max(1.0, abs(lp.objective))
            if not self._price(limits, lp, -1e-9 * scale).found:
                return lp

    def _price(self, limits: _Limits, lp: _LpSolution, threshold: float) -> SearchBudget:
        """Add every configuration whose reduced cost is at most `threshold`."""
        started = time.perf_counter()
        bound = _bound(self.scenario, limits, lp, threshold)
        budget = SearchBudget(self.node_budget)
        try:
            found = enumerate_configs(self.scenario, bound=bound, budget=budget)
        finally:
            self.pricing_seconds += time.perf_counter() - started
        budget.found = self._add(found)
        return budget

    def _solve_lp(self, limits: _Limits) -> _LpSolution:
        """The LP relaxation over the current columns, with slack so it is always feasible."""
        self.lp_solves += 1
        pools = list(range(len(self.scenario.pools)))
        rows: list[tuple[str, float, float]] = [
            ("pool", -math.inf, float(self.scenario.pools[p].available)) for p in pools
        ]
        extra = []
        if limits.demand_k is not None:
            extra.append(("demand", limits.demand_k, math.inf))
        if limits.budget_per_hour is not None:
            extra.append(("budget", -math.inf, limits.budget_per_hour))
        if limits.max_ratio is not None:
            extra.append(("ratio", -math.inf, 0.0))
        if limits.max_cost_per_hour is not None:
            extra.append(("cost", -math.inf, limits.max_cost_per_hour))
        extra.append(("one", 1.0, math.inf))
        rows += extra
        row_index = {name: len(pools) + i for i, (name, _, _) in enumerate(extra)}

        starts, indices, values, costs = [0], [], [], []
        for config in self.configs:
            tokens_k = config.tokens_per_s / KTOKENS
            column = {p: float(g) for p, g in config.gpus_by_pool}
            coefficient = {
                "demand": tokens_k,
                "budget": config.cost_per_hour,
                "ratio": config.cost_per_hour - (limits.max_ratio or 0.0) * tokens_k,
                "cost": config.cost_per_hour,
                "one": 1.0,
            }
            for name, index in row_index.items():
                column[index] = coefficient[name]
            for index in sorted(column):
                indices.append(index)
                values.append(column[index])
            starts.append(len(indices))
            costs.append(
                limits.cost_weight * config.cost_per_hour
                - limits.throughput_weight * tokens_k
                + limits.gpu_weight * config.gpus
            )
        slack_rows = [row_index[name] for name in ("demand", "one") if name in row_index]
        for index in slack_rows:
            indices.append(index)
            values.append(1.0)
            starts.append(len(indices))
            costs.append(SLACK_COST)

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
        highs = self._highs
        with SOLVER_LOCK:
            highs.passModel(lp)
            highs.run()
        solution = highs.getSolution()
        duals = list(solution.row_dual)
        slack = sum(solution.col_value[len(self.configs) :])

        def dual(name: str) -> float:
            return duals[row_index[name]] if name in row_index else 0.0

        return _LpSolution(
            objective=highs.getInfo().objective_function_value,
            slack=slack,
            pool_duals={p: duals[p] for p in pools},
            demand_dual=dual("demand"),
            budget_dual=dual("budget"),
            ratio_dual=dual("ratio"),
            cost_dual=dual("cost"),
            one_dual=dual("one"),
        )


def _finite(value: float) -> float:
    if value == math.inf:
        return highspy.kHighsInf
    if value == -math.inf:
        return -highspy.kHighsInf
    return value


def _bound(scenario: Scenario, limits: _Limits, lp: _LpSolution, threshold: float) -> PricingBound:
    """Reduced cost rc = cost_c - y.a_c split into additive stage values and a throughput gain."""
    cost_coefficient = limits.cost_weight - lp.budget_dual - lp.ratio_dual - lp.cost_dual
    ratio = limits.max_ratio or 0.0
    tokens_gain = (limits.throughput_weight + lp.demand_dual - lp.ratio_dual * ratio) / KTOKENS
    values = {}
    for stage in stage_types(scenario):
        gpu_value = limits.gpu_weight - lp.pool_duals.get(stage.pool_index, 0.0)
        values[(stage.pool_index, stage.tp)] = stage.tp * (
            cost_coefficient * stage.pool.price_per_gpu_hour + gpu_value
        )
    return PricingBound(values, tokens_gain, -lp.one_dual, threshold)
