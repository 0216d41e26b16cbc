"""The placement MILP in pyomo: an integer count per replica configuration, solved by HiGHS.

Figures are sums over replicas, so with configurations enumerated (`solver.replicas`) every
plan figure is linear in the counts. One model serves every strategy: the objective is
`cost_weight * cost - throughput_weight * throughput + gpu_weight * gpus` with mutable
weights, so Dinkelbach and the iterative loop re-solve the same persistent model and only
parameters change.

Scaling (HiGHS drops coefficients below 1e-9): cost in USD/hour, throughput in
thousands of tokens/s, so coefficients stay within about [1e-3, 1e5].
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import highspy
import pyomo.environ as pyo
from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition
from pyomo.contrib.solver.solvers.highs import Highs

from solver import deadline
from solver.dominance import undominated
from solver.replicas import ReplicaConfig
from solver.scenario import Scenario

KTOKENS = 1000.0  # tokens/s per model throughput unit

# pyomo captures HiGHS's console output by swapping process-wide file descriptors, which two
# threads cannot do at once: solves in one process take turns (processes run in parallel).
SOLVER_LOCK = threading.RLock()


class _HighsWithStart(Highs):
    """pyomo's persistent HiGHS, handing HiGHS a known plan as its first incumbent."""

    start: dict[int, float] | None = None  # id(pyomo var) -> value

    def _solve(self):  # pyomo calls it with the model set up, right before HiGHS runs
        if self.start:
            values = [0.0] * self._solver_model.getNumCol()
            for var_id, value in self.start.items():
                values[self._pyomo_var_to_solver_var_map[var_id]] = value
            solution = highspy.HighsSolution()
            solution.col_value = values
            solution.value_valid = True
            self._solver_model.setSolution(solution)
        return super()._solve()


@dataclass(frozen=True)
class MilpResult:
    status: str  # optimal | feasible | infeasible | unknown (a limit hit before any plan)
    counts: dict[int, int]  # configuration index -> replicas
    objective: float | None
    bound: float | None
    seconds: float

    @property
    def mip_gap(self) -> float | None:
        if self.objective is None or self.bound is None:
            return None
        return abs(self.objective - self.bound) / max(1e-9, abs(self.objective))


class PlacementMilp:
    """The configuration MILP of one scenario, built once and re-solved with new weights."""

    def __init__(self, scenario: Scenario, configs: list[ReplicaConfig]) -> None:
        self.scenario = scenario
        self.configs = configs
        started = time.perf_counter()
        self.model = build_model(scenario, configs) if configs else None
        self.build_seconds = time.perf_counter() - started
        self.solver = _HighsWithStart()
        self.solver.config.auto_updates.check_for_new_or_removed_vars = False
        self.solver.config.auto_updates.update_vars = False
        self.solver.config.auto_updates.update_named_expressions = False
        self.solver.config.solver_options = {"output_flag": False, "log_to_console": False}
        self.solves = 0

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
        """Minimise the weighted objective under the scenario's and the given extra limits.

        `prove` is accepted for interface parity with LazyPlacementMilp (always exact here);
        `rel_gap` loosens the MIP gap (default: the scenario's, else 0); `start` is a plan
        (configuration -> count) known to satisfy the limits, given to HiGHS as its incumbent.

        `scenario_limits=False` drops the scenario's demand and budget (to explain infeasibility).
        """
        del prove
        m = self.model
        if m is None:
            return MilpResult("infeasible", {}, None, None, 0.0)
        m.cost_weight.value = cost_weight
        m.throughput_weight.value = throughput_weight
        m.gpu_weight.value = gpu_weight
        scenario_budget = self.scenario.solver.budget_per_hour if scenario_limits else None
        _set_limit(m.budget, m.budget_per_hour, _min_defined(scenario_budget, budget_per_hour))
        demand_k = self.scenario.solver.demand_tokens_per_s / KTOKENS
        _set_limit(m.demand, m.demand_k, demand_k if scenario_limits and demand_k > 0 else None)
        _set_limit(m.ratio_cap, m.max_ratio, max_ratio)
        _set_limit(m.cost_cap, m.max_cost_per_hour, max_cost_per_hour)
        options = self.scenario.solver
        started = time.perf_counter()
        if rel_gap is None:
            rel_gap = options.mip_rel_gap if options.mip_rel_gap is not None else 0.0
        self.solver.start = (
            None
            if not start
            else {id(var): float(start.get(index, 0)) for index, var in m.replicas.items()}
        )
        with SOLVER_LOCK:
            results = self.solver.solve(
                m,
                load_solutions=False,
                raise_exception_on_nonoptimal_result=False,
                rel_gap=rel_gap,
                abs_gap=abs_gap,
                time_limit=deadline.capped(time_limit_s),
            )
            seconds = time.perf_counter() - started
            self.solves += 1
            return self._result(results, seconds)

    def _result(self, results: Any, seconds: float) -> MilpResult:
        """Counts per configuration, and whether HiGHS proved them optimal."""
        if results.solution_status not in (SolutionStatus.optimal, SolutionStatus.feasible):
            proven_empty = results.termination_condition in (
                TerminationCondition.provenInfeasible,
                TerminationCondition.locallyInfeasible,
                TerminationCondition.infeasibleOrUnbounded,
            )
            # a limit that stopped the search before any plan proves nothing
            return MilpResult("infeasible" if proven_empty else "unknown", {}, None, None, seconds)
        results.solution_loader.load_vars()
        counts = {
            index: round(pyo.value(var))
            for index, var in self.model.replicas.items()
            if pyo.value(var) > 0.5
        }
        proven = results.termination_condition == TerminationCondition.convergenceCriteriaSatisfied
        return MilpResult(
            "optimal" if proven else "feasible",
            counts,
            results.incumbent_objective,
            results.objective_bound,
            seconds,
        )

    def settled(self) -> PlacementMilp:
        """The model over the configurations at hand (all of them, here)."""
        return self

    def totals(self, counts: dict[int, int]) -> tuple[float, float, int]:
        return mix_totals(self.configs, counts)


def mix_totals(configs: list[ReplicaConfig], counts: dict[int, int]) -> tuple[float, float, int]:
    """(tokens_per_s, cost_per_hour, gpus) of a mix of configurations (index -> replicas)."""
    tokens = sum(configs[i].tokens_per_s * n for i, n in counts.items())
    cost = sum(configs[i].cost_per_hour * n for i, n in counts.items())
    gpus = sum(configs[i].gpus * n for i, n in counts.items())
    return tokens, cost, gpus


def _min_defined(*values: float | None) -> float | None:
    defined = [v for v in values if v is not None]
    return min(defined) if defined else None


def _set_limit(constraint: pyo.Constraint, param: pyo.Param, value: float | None) -> None:
    if value is None:
        constraint.deactivate()
    else:
        param.value = value
        constraint.activate()


def build_model(scenario: Scenario, configs: list[ReplicaConfig]) -> pyo.ConcreteModel:
    """The recipe: counts, availability, demand, budget, at least one replica, objective.

    Only configurations no mix of others beats get a variable (`solver.dominance`); the
    variables keep the configurations' indices.
    """
    chosen = {index: configs[index] for index in undominated(configs)}
    m = pyo.ConcreteModel(name="placement")
    define_replica_counts(m, scenario, chosen)
    define_figures(m, chosen)
    define_availability(m, scenario, chosen)
    define_demand(m, scenario)
    define_limits(m)
    define_objective(m)
    return m


def define_replica_counts(
    m: pyo.ConcreteModel, scenario: Scenario, configs: dict[int, ReplicaConfig]
) -> None:
    """replicas[c]: how many replicas of configuration c, bounded by each pool it uses."""
    m.CONFIGS = pyo.Set(initialize=sorted(configs), ordered=True)
    bounds = {
        index: min(
            scenario.pools[pool_index].available // gpus for pool_index, gpus in config.gpus_by_pool
        )
        for index, config in configs.items()
    }
    m.replicas = pyo.Var(
        m.CONFIGS, domain=pyo.NonNegativeIntegers, bounds=lambda _, c: (0, bounds[c])
    )


def define_figures(m: pyo.ConcreteModel, configs: dict[int, ReplicaConfig]) -> None:
    """Plan cost (USD/h), throughput (ktokens/s) and GPUs as linear expressions."""
    m.cost_per_hour = pyo.Expression(
        expr=sum(c.cost_per_hour * m.replicas[i] for i, c in configs.items())
    )
    m.ktokens_per_s = pyo.Expression(
        expr=sum(c.tokens_per_s / KTOKENS * m.replicas[i] for i, c in configs.items())
    )
    m.gpus = pyo.Expression(expr=sum(c.gpus * m.replicas[i] for i, c in configs.items()))
    m.at_least_one_replica = pyo.Constraint(expr=sum(m.replicas[i] for i in m.CONFIGS) >= 1)


def define_availability(
    m: pyo.ConcreteModel, scenario: Scenario, configs: dict[int, ReplicaConfig]
) -> None:
    """GPUs used of each pool, over every stage of every replica, within its availability."""
    users: dict[int, list[tuple[int, int]]] = {}
    for index, config in configs.items():
        for pool_index, gpus in config.gpus_by_pool:
            users.setdefault(pool_index, []).append((index, gpus))
    m.POOLS = pyo.Set(initialize=sorted(users))
    m.availability = pyo.Constraint(
        m.POOLS,
        rule=lambda _, p: (
            sum(g * m.replicas[i] for i, g in users[p]) <= scenario.pools[p].available
        ),
    )


def define_demand(m: pyo.ConcreteModel, scenario: Scenario) -> None:
    """Plan throughput reaches the demand (switched off when there is none)."""
    m.demand_k = pyo.Param(mutable=True, initialize=scenario.solver.demand_tokens_per_s / KTOKENS)
    m.demand = pyo.Constraint(expr=m.ktokens_per_s >= m.demand_k)
    m.demand.deactivate()


def define_limits(m: pyo.ConcreteModel) -> None:
    """Budget, a cap on cost per token (tie-breaking) and a cap on cost, each switchable."""
    m.budget_per_hour = pyo.Param(mutable=True, initialize=math.inf)
    m.budget = pyo.Constraint(expr=m.cost_per_hour <= m.budget_per_hour)
    m.max_ratio = pyo.Param(mutable=True, initialize=0.0)
    m.ratio_cap = pyo.Constraint(expr=m.cost_per_hour - m.max_ratio * m.ktokens_per_s <= 0)
    m.max_cost_per_hour = pyo.Param(mutable=True, initialize=math.inf)
    m.cost_cap = pyo.Constraint(expr=m.cost_per_hour <= m.max_cost_per_hour)
    for constraint in (m.budget, m.ratio_cap, m.cost_cap):
        constraint.deactivate()


def define_objective(m: pyo.ConcreteModel) -> None:
    m.cost_weight = pyo.Param(mutable=True, initialize=1.0)
    m.throughput_weight = pyo.Param(mutable=True, initialize=0.0)
    m.gpu_weight = pyo.Param(mutable=True, initialize=0.0)
    m.objective = pyo.Objective(
        expr=m.cost_weight * m.cost_per_hour
        - m.throughput_weight * m.ktokens_per_s
        + m.gpu_weight * m.gpus,
        sense=pyo.minimize,
    )
