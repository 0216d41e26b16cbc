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

import highspy
from pyomo.common.tee import capture_output

from solver import deadline
from solver.deadline import DeadlineExceeded
from solver.lazy_lp import Limits, LpSolution, pricing_bounds, solve_lp
from solver.milp import (
    KTOKENS,
    SOLVER_LOCK,
    MilpResult,
    PlacementMilp,
    mix_totals,
    requirements_of,
    runs_in_parallel,
    tokens_by_model,
    useful_floor,
)
from solver.pricing_dp import best_fleet_configs
from solver.replicas import (
    ConfigLimitExceeded,
    ReplicaConfig,
    SearchBudget,
    fleet_configs,
    search_size,
)
from solver.scenario import Scenario

MAX_GAP_ROUNDS = 12
PRICING_TIME_SHARE = 0.5  # of the time left, at most, for one pricing search
BEST_COLUMNS = 20  # columns one column-generation round seeks per location: the most negative
# Beyond this many multisets (search_size), column generation seeks the most negative columns
# per location (solver.pricing_dp) instead of listing every negative one: at S = 16 that
# listing does not finish (237 pools: 1.6e13 multisets), at S = 8 (4.7e8) it is fast and its
# many columns give the first MILPs better plans.
BEST_PRICING_MULTISETS = 2e9


class LazyPlacementMilp:
    """Same interface as PlacementMilp; generates configurations as the duals ask for them."""

    def __init__(
        self, scenario: Scenario, initial: list[ReplicaConfig], node_budget: int | None
    ) -> None:
        self.scenario = scenario
        self.configs: list[ReplicaConfig] = []
        self._keys: set[tuple] = set()
        self.node_budget = node_budget
        self.seek_best = search_size(scenario) > BEST_PRICING_MULTISETS
        self.build_seconds = 0.0
        self.pricing_seconds = 0.0
        self.solves = 0
        self.lp_solves = 0
        # (limits, LP optimum, threshold) of each complete pricing of C - lam V: what it holds
        self._priced: list[tuple[Limits, float, float]] = []
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
        model_weights: dict[int, float] | None = None,
        demand_models: frozenset[int] | None = None,
    ) -> MilpResult:
        """The exact optimum over all configurations (status `feasible` if a budget ran out).

        `prove=False` stops after column generation: the MILP over the columns the LP asked for,
        a good plan without the proof (for context figures such as the frontier).
        """
        started = time.perf_counter()
        options = self.scenario.solver
        scenario_budget = options.budget_per_hour if scenario_limits else None
        budgets = [b for b in (budget_per_hour, scenario_budget) if b is not None]
        limits = Limits(
            cost_weight,
            throughput_weight,
            gpu_weight,
            dict(model_weights or {}),
            requirements_of(self.scenario, scenario_limits, demand_models),
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
            model_weights=model_weights,
            demand_models=demand_models,
        )
        self.solves += 1
        try:
            lp = self._column_generation(limits)
        except (ConfigLimitExceeded, DeadlineExceeded):
            return self._milp_solve(kwargs, started, proven=False)
        if lp.slack > 1e-7:
            return MilpResult("infeasible", {}, None, None, time.perf_counter() - started)
        if prove and start:
            # the start bounds the optimum: price its gap first, so one MILP settles it
            start_gap = self._objective(limits, start) - lp.objective
            tolerance = self._tolerance(lp, start)
            try:
                self._price(limits, lp, start_gap + tolerance)
            except (ConfigLimitExceeded, DeadlineExceeded):
                return self._milp_solve(kwargs, started, proven=False, lp_bound=lp.objective)
            result = self._milp_solve(kwargs, started, proven=True, lp_bound=lp.objective)
            priced = start_gap + tolerance
            if result.objective is not None and result.objective - lp.objective <= priced:
                return result  # every column that could do better is in the model
        else:
            result = self._milp_solve(kwargs, started, proven=prove, lp_bound=lp.objective)
            if not prove and (result.counts or result.status == "unknown"):
                return result
            # no plan among these columns proves nothing about the others (a budget met only by
            # a configuration the LP did not ask for): price the gap as a proof does
        tolerance = self._tolerance(lp, result.counts)
        gap = (result.objective - lp.objective) if result.objective is not None else None
        threshold = gap if gap is not None else max(1e-6, 0.05 * abs(lp.objective))
        for _ in range(MAX_GAP_ROUNDS):
            try:
                budget = self._price(limits, lp, threshold + tolerance)
            except (ConfigLimitExceeded, DeadlineExceeded):
                unproven = self._milp_solve(kwargs, started, proven=False, lp_bound=lp.objective)
                if unproven.counts:
                    return unproven
                if result.counts:  # the deadline left no time to solve again: keep the plan
                    seconds = time.perf_counter() - started
                    return MilpResult(
                        "feasible", result.counts, result.objective, lp.objective, seconds
                    )
                return MilpResult("unknown", {}, None, None, unproven.seconds)  # none ruled out
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
        return self._milp_solve(kwargs, started, proven=False, lp_bound=lp.objective)

    def lp_ratio(self, ratio: float, tolerance: float) -> tuple[float, float, float] | None:
        """Least cost per useful ktokens/s of the LP relaxation over every configuration.

        Dinkelbach on the LP from `ratio` (any value): each step minimises C - lam V over the LP
        (column generation) and moves lam to the ratio of the LP plan, which converges from above
        to the LP optimum lam_LP <= the integer optimum. Returns (lam_LP as the last LP plan's
        ratio, the LP value at it, the LP plan's cost per hour) or None when the LP has no
        throughput or a budget ran out.
        """
        attained = False  # from the first move on, lam is the ratio of an LP plan: F_LP <= 0
        for _ in range(MAX_GAP_ROUNDS):
            limits = Limits(1.0, ratio, 0.0, {}, requirements_of(self.scenario), None, None, None)
            try:
                lp = self._column_generation(limits)
            except (ConfigLimitExceeded, DeadlineExceeded):
                return None
            if lp.slack > 1e-7:
                return None
            values = list(lp.values)
            by_model: dict[int, float] = {}
            for config, x in zip(self.configs, values, strict=False):
                by_model[config.model] = by_model.get(config.model, 0.0) + x * config.tokens_per_s
            useful = sum(
                t if (cap := self.scenario.models[m].useful_tokens_per_s) is None else min(t, cap)
                for m, t in by_model.items()
            )
            cost = sum(x * c.cost_per_hour for c, x in zip(self.configs, values, strict=False))
            if useful <= 0:
                return None
            if attained and lp.objective >= -tolerance * cost:
                return ratio, lp.objective, cost
            ratio, attained = cost / (useful / KTOKENS), True
        return None

    # -- internals ----------------------------------------------------------------------------

    def _tolerance(self, lp: LpSolution, counts: dict[int, int]) -> float:
        """`_tie_tolerance` for the LP and the plan in hand."""
        incumbent_cost = self.totals(counts)[1] if counts else 0.0
        return _tie_tolerance(lp.objective, incumbent_cost)

    def _objective(self, limits: Limits, counts: dict[int, int]) -> float:
        """The solve's objective at a plan (configuration index -> replicas)."""
        useful, cost, gpus = self.totals(counts)
        by_model = tokens_by_model(self.configs, counts)
        raw = sum(w * by_model.get(m, 0.0) for m, w in limits.model_weights.items())
        return (
            limits.cost_weight * cost
            - limits.throughput_weight * useful / KTOKENS
            - raw / KTOKENS
            + limits.gpu_weight * gpus
        )

    def _add(self, configs: list[ReplicaConfig]) -> int:
        added = 0
        for config in configs:
            key = (
                config.model,
                config.cloud,
                config.region,
                config.gpus_by_pool,
                config.tokens_per_s,
            )
            if key not in self._keys:
                self._keys.add(key)
                self.configs.append(config)
                added += 1
        return added

    @property
    def parallel(self) -> bool:
        """Whether the model over the columns at hand runs several solves at once."""
        return runs_in_parallel(len(self.configs))

    def proof_model(self, ratio: float, start: dict[int, int]) -> PlacementMilp | None:
        """The MILP over every column a plan of F(ratio) <= F(start) may use, ties included.

        Column generation at `ratio`, then every configuration whose reduced cost is within the
        start's gap plus the tie tolerance: a proof at `ratio` over this model and the tie
        searches of `start` need no further pricing. None when a budget or the deadline ran out.
        """
        self.solves += 1
        limits = _dinkelbach_limits(self.scenario, ratio)
        start_value = self._objective(limits, start)
        if self._covered(ratio, start_value, self.totals(start)[1]):
            return self.settled()
        try:
            lp = self._column_generation(limits)
            if lp.slack > 1e-7:
                return None
            self._price(limits, lp, start_value - lp.objective + self._tolerance(lp, start))
        except (ConfigLimitExceeded, DeadlineExceeded):
            return None
        return self.settled()

    def _covered(self, ratio: float, start_value: float, start_cost: float) -> bool:
        """Whether an earlier pricing at a ratio >= `ratio` holds every column of every plan of
        F(ratio) within the tie tolerance of `start_value` (no pricing needed, nor a rebuild).

        That pricing, at lam' with LP optimum z', added every column of reduced cost <= t'. A
        plan x has C - lam' V >= z' + sum_c rc'_c x_c, and V >= D (the demand floor), so each
        column c it uses has rc'_c <= F(ratio)(x) - z' - (lam' - ratio) D: one within `margin`
        of the start uses only columns of rc' <= start_value + margin - z' - (lam' - ratio) D.
        237 pools, 80 layers, S = 8: the last proof's 2.6 s of pricing and rebuilding skipped.
        """
        floor_k = useful_floor(self.scenario) / KTOKENS
        for limits, lp_objective, threshold in self._priced:
            priced_ratio = limits.throughput_weight
            if priced_ratio < ratio or limits != _dinkelbach_limits(self.scenario, priced_ratio):
                continue  # priced for another demand or budget than the scenario's now
            margin = _tie_tolerance(lp_objective, start_cost)
            needed = start_value + margin - lp_objective - (priced_ratio - ratio) * floor_k
            if threshold >= needed:
                return True
        return False

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

    def _milp_solve(
        self, kwargs: dict, started: float, proven: bool, lp_bound: float | None = None
    ) -> MilpResult:
        """The MILP over the columns at hand. Unproven, its own bound covers only those
        columns: the bound reported is then the LP optimum over every column, if known."""
        if deadline.expired() and not kwargs.get("start"):
            # no plan in hand and no time left: building the MILP would only break the promise
            return MilpResult("unknown", {}, None, lp_bound, time.perf_counter() - started)
        result = self.settled().solve(**kwargs)
        status = result.status if proven or not result.counts else "feasible"
        bound = result.bound if proven and result.status == "optimal" else lp_bound
        return MilpResult(
            status,
            result.counts,
            result.objective,
            bound,
            time.perf_counter() - started,
            result.bound,
        )

    def _column_generation(self, limits: Limits) -> LpSolution:
        while True:
            deadline.check()
            lp = solve_lp(self._highs, self.scenario, self.configs, limits)
            self.lp_solves += 1
            scale = max(1.0, abs(lp.objective))
            best = BEST_COLUMNS if self.seek_best else None
            if not self._price(limits, lp, -1e-9 * scale, best=best, converged=False).found:
                return lp

    def _price(
        self,
        limits: Limits,
        lp: LpSolution,
        threshold: float,
        best: int | None = None,
        converged: bool = True,
    ) -> SearchBudget:
        """Add every configuration (of every model) whose reduced cost is at most `threshold`;
        with `best`, about that many of the most negative per location, the least among them
        the least of all (column generation needs no more). `converged`: `lp` is the optimum
        over every configuration (no reduced cost below zero), so what was added is recorded
        for `_covered`."""
        started = time.perf_counter()
        bounds = pricing_bounds(self.scenario, limits, lp, threshold)
        budget = SearchBudget(self.node_budget)
        left = deadline.remaining_s()
        # one search may use a share of the time left: the rest is for a MILP over what is found
        share = None if left is None else max(0.0, PRICING_TIME_SHARE * left)
        try:
            with deadline.deadline(share):
                if best is None:
                    found = fleet_configs(self.scenario, bounds=bounds, budget=budget)
                else:
                    found = best_fleet_configs(self.scenario, bounds, budget, best)
        finally:
            self.pricing_seconds += time.perf_counter() - started
        budget.found = self._add(found)
        dinkelbach = limits == _dinkelbach_limits(self.scenario, limits.throughput_weight)
        if converged and best is None and dinkelbach:
            self._priced.append((limits, lp.objective, threshold))
        return budget


def _tie_tolerance(lp_objective: float, incumbent_cost: float) -> float:
    """Pricing slack wide enough to hold every plan tied with the optimum (1e-9 of its cost)."""
    return 1e-7 * max(1.0, abs(lp_objective)) + 1e-8 * incumbent_cost


def _dinkelbach_limits(scenario: Scenario, ratio: float) -> Limits:
    """A Dinkelbach step's solve: min C - ratio V under the scenario's rows and budget (what
    `solve(cost_weight=1.0, throughput_weight=ratio)` prices under), nothing else."""
    budget = scenario.solver.budget_per_hour
    return Limits(1.0, ratio, 0.0, {}, requirements_of(scenario), budget, None, None)
