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

import functools
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import highspy
import pyomo.environ as pyo
from pyomo.common.tee import capture_output
from pyomo.contrib.solver.common.results import Results, SolutionStatus, TerminationCondition
from pyomo.contrib.solver.solvers.highs import Highs, HighsSolutionLoader

from solver import deadline, highs_worker
from solver.dominance import undominated
from solver.fleet_figures import spot_domains
from solver.replicas import ReplicaConfig
from solver.scenario import Scenario

KTOKENS = 1000.0  # tokens/s per model throughput unit
DEFAULT_MIP_FEASIBILITY = 1e-6  # HiGHS's mip_feasibility_tolerance
CUTOFF_MIP_FEASIBILITY = 1e-9  # in a cut-off solve (USD/h rows of ~1e2-1e4: below 1e-9 of them)
DEFAULT_MIP_HEURISTIC_EFFORT = 0.05  # HiGHS's mip_heuristic_effort

# pyomo captures HiGHS's console output by swapping process-wide file descriptors, which two
# threads cannot do at once: solves in one process take turns (processes run in parallel).
SOLVER_LOCK = threading.RLock()
LOG = logging.getLogger(__name__)

# A MILP of this many columns with a time limit runs in a worker process (solver.highs_worker):
# HiGHS 1.16 overran its limit by 18 s on 27,403 columns; on a few hundred it returns in time and
# a process round trip would cost more than the solve.
ISOLATE_MIN_COLUMNS = 2000
ISOLATE_MIN_SECONDS = 0.5  # below it HiGHS returns in time (measured: 0.01 s given, 0.1 s taken)


class _HighsWithStart(Highs):
    """pyomo's persistent HiGHS, handing HiGHS a known plan as its first incumbent."""

    start: dict[int, float] | None = None  # id(pyomo var) -> value
    cutoff: float | None = None  # only plans of objective below it count (else infeasible)
    heuristics: bool = True  # off: HiGHS spends nothing on primal heuristics
    capture: list[highs_worker.Request] | None = None  # set: collect requests, solve nothing

    def _solve(self):  # pyomo calls it with the model set up, right before HiGHS runs
        highs = self._solver_model
        # a cut-off search separates plans by 1e-9 of their cost: rows hold that closely
        own_options = {
            "objective_bound": highspy.kHighsInf if self.cutoff is None else self.cutoff,
            "mip_feasibility_tolerance": (
                DEFAULT_MIP_FEASIBILITY if self.cutoff is None else CUTOFF_MIP_FEASIBILITY
            ),
            "mip_heuristic_effort": DEFAULT_MIP_HEURISTIC_EFFORT if self.heuristics else 0.0,
        }
        start = self._start_columns()
        config = self._active_config
        if self.capture is None and not _isolate(highs.getNumCol(), config.time_limit):
            return self._solve_here(own_options, start)
        options = {
            "mip_rel_gap": config.rel_gap,
            "mip_abs_gap": config.abs_gap,
            "threads": config.threads,
            **config.solver_options,
            **own_options,
        }
        options = {name: value for name, value in options.items() if value is not None}
        if self.capture is not None:  # PlacementMilp.solve_all: only the request is wanted
            self.capture.append(highs_worker.request_for(highs, options, start, config.time_limit))
            return self._results_of(_NOT_SOLVED)
        try:
            outcome = highs_worker.solve_isolated(
                highs, options, start=start, time_limit_s=config.time_limit
            )
        except highs_worker.WorkerError as error:
            # the answer is the same in-process; only the limit may then be overrun
            LOG.warning("%s; solving in this process", error)
            return self._solve_here(own_options, start)
        return self._results_of(outcome)

    def _solve_here(self, own_options: dict[str, float], start: list[float] | None) -> Any:
        highs = self._solver_model
        for name, value in own_options.items():
            highs.setOptionValue(name, value)
        if start is not None:
            highs_worker.set_start(highs, start)
        return super()._solve()

    def _start_columns(self) -> list[float] | None:
        """The start plan as HiGHS column values (None without one)."""
        if not self.start:
            return None
        values = [0.0] * self._solver_model.getNumCol()
        for var_id, value in self.start.items():
            values[self._pyomo_var_to_solver_var_map[var_id]] = value
        return values

    def _results_of(self, outcome: highs_worker.HighsOutcome) -> Results:
        """pyomo's results of a solve run by the worker (what `_postsolve` makes in-process)."""
        results = Results()
        results.solution_loader = HighsSolutionLoader(self, self._model)
        results.solver_name = self.name
        results.solver_version = self.version()
        results.solver_config = self._active_config
        self._sol = highspy.HighsSolution()
        if outcome.col_value is not None:
            self._sol.col_value = outcome.col_value
            self._sol.value_valid = True
        status = outcome.status
        if status == highspy.HighsModelStatus.kOptimal:
            results.solution_status = SolutionStatus.optimal
        elif outcome.col_value is not None:
            results.solution_status = SolutionStatus.feasible
        else:
            results.solution_status = SolutionStatus.noSolution
        results.termination_condition = _TERMINATION.get(status, TerminationCondition.unknown)
        results.incumbent_objective = outcome.objective
        proven = status == highspy.HighsModelStatus.kOptimal
        results.objective_bound = (
            outcome.objective if proven and outcome.mip_node_count == -1 else outcome.dual_bound
        )
        return results


_NOT_SOLVED = highs_worker.HighsOutcome(
    int(highspy.HighsModelStatus.kNotset), 0, None, None, -1, None, 0.0
)


def _isolate(num_columns: int, time_limit_s: float | None) -> bool:
    """Whether a solve runs in the worker process, where its time limit is sure to hold."""
    return (
        time_limit_s is not None
        and time_limit_s >= ISOLATE_MIN_SECONDS
        and num_columns >= ISOLATE_MIN_COLUMNS
    )


_TERMINATION = {
    highspy.HighsModelStatus.kOptimal: TerminationCondition.convergenceCriteriaSatisfied,
    highspy.HighsModelStatus.kInfeasible: TerminationCondition.provenInfeasible,
    highspy.HighsModelStatus.kUnboundedOrInfeasible: TerminationCondition.infeasibleOrUnbounded,
    highspy.HighsModelStatus.kUnbounded: TerminationCondition.unbounded,
    highspy.HighsModelStatus.kObjectiveBound: TerminationCondition.objectiveLimit,
    highspy.HighsModelStatus.kObjectiveTarget: TerminationCondition.objectiveLimit,
    highspy.HighsModelStatus.kTimeLimit: TerminationCondition.maxTimeLimit,
    highspy.HighsModelStatus.kIterationLimit: TerminationCondition.iterationLimit,
    highspy.HighsModelStatus.kSolutionLimit: TerminationCondition.iterationLimit,
}


def runs_in_parallel(num_columns: int) -> bool:
    """Whether a model of this many columns runs several solves at once (`solve_all`)."""
    return num_columns >= ISOLATE_MIN_COLUMNS


@functools.cache
def light_presolve() -> dict[str, int]:
    """HiGHS's light presolve where this HiGHS has it (`presolve_mode`, 1.16 on).

    The default presolve probes every binary: on issue 12's 237-pool heavy-demand model
    (~6,800 columns, ~4,700 binaries) that took 40-75 s per MILP solve, past its time limit;
    light presolve takes ~4 s and the steps and proofs run faster overall (bench/README.md).
    """
    with SOLVER_LOCK, capture_output(capture_fd=True):
        probe = highspy.Highs()
    status, _ = probe.getOptionValue("presolve_mode")
    return {"presolve_mode": 2} if status == highspy.HighsStatus.kOk else {}


@dataclass(frozen=True)
class MilpResult:
    status: str  # optimal | feasible | infeasible | unknown (a limit hit before any plan)
    counts: dict[int, int]  # configuration index -> replicas
    objective: float | None
    bound: float | None
    seconds: float
    # the MILP's own bound over the columns it had: in the lazy model a guide, not a proof
    search_bound: float | None = None

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
        self.solver.config.solver_options = {
            "output_flag": False,
            "log_to_console": False,
            **light_presolve(),
        }
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
        model_weights: dict[int, float] | None = None,
        demand_models: frozenset[int] | None = None,
        max_gpus: int | None = None,
        cutoff: float | None = None,
        min_cost_per_hour: float | None = None,
        heuristics: bool = True,
    ) -> MilpResult:
        """Minimise the weighted objective under the scenario's and the given extra limits.

        Throughput in the objective is useful throughput V (`throughput_weight`) plus, per
        model, raw throughput T_m (`model_weights`). `demand_models` keeps the demand and
        resilience rows of those models only (default: all).

        `prove` is accepted for interface parity with LazyPlacementMilp (always exact here);
        `rel_gap` loosens the MIP gap (default: the scenario's, else 0); `start` is a plan
        (configuration -> count) known to satisfy the limits, given to HiGHS as its incumbent.
        `max_gpus` caps the plan's GPUs, `min_cost_per_hour` floors its cost; with `cutoff`, a
        plan counts only with an objective below it: none is status `infeasible`.
        `heuristics=False` spares HiGHS's primal heuristics in a search expected to find nothing.

        `scenario_limits=False` drops the scenario's demand and budget (to explain infeasibility).
        """
        del prove
        m = self.model
        if m is None:
            return MilpResult("infeasible", {}, None, None, 0.0)
        m.cost_weight.value = cost_weight
        m.throughput_weight.value = throughput_weight
        m.gpu_weight.value = gpu_weight
        for index in m.MODELS:
            m.model_weight[index].value = (model_weights or {}).get(index, 0.0)
        scenario_budget = self.scenario.solver.budget_per_hour if scenario_limits else None
        _set_limit(m.budget, m.budget_per_hour, _min_defined(scenario_budget, budget_per_hour))
        requirements = self._set_requirements(scenario_limits, demand_models)
        if requirements.unreachable:
            return MilpResult("infeasible", {}, None, None, 0.0)
        _set_limit(m.ratio_cap, m.max_ratio, max_ratio)
        _set_limit(m.cost_cap, m.max_cost_per_hour, max_cost_per_hour)
        _set_limit(m.gpu_cap, m.max_gpus, max_gpus)
        _set_limit(m.cost_floor, m.min_cost_per_hour, min_cost_per_hour)
        options = self.scenario.solver
        started = time.perf_counter()
        if rel_gap is None:
            rel_gap = options.mip_rel_gap if options.mip_rel_gap is not None else 0.0
        self.solver.start = None if not start else self._start_values(start)
        self.solver.cutoff = cutoff
        self.solver.heuristics = heuristics
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

    @property
    def parallel(self) -> bool:
        """Whether `solve_all` runs its solves at once (in worker processes)."""
        return runs_in_parallel(len(self.configs))

    def solve_all(self, calls: Sequence[dict[str, Any]]) -> list[MilpResult]:
        """Several solves of this model (`solve` keyword arguments each), at once where it pays.

        A model of ISOLATE_MIN_COLUMNS or more runs them in parallel worker processes, one each
        (the MIP search is mostly serial, so two use both cores); a smaller one in turn here.
        """
        if self.model is None or len(calls) < 2 or not self.parallel:
            return [self.solve(**call) for call in calls]
        requests: list[highs_worker.Request] = []
        early: dict[int, MilpResult] = {}  # calls answered without HiGHS (an empty row)
        with SOLVER_LOCK:
            self.solver.capture = requests
            try:
                for index, call in enumerate(calls):
                    before = len(requests)
                    result = self.solve(**call)
                    if len(requests) == before:
                        early[index] = result
            finally:
                self.solver.capture = None
            try:
                outcomes = iter(highs_worker.solve_many(requests))
            except highs_worker.WorkerError as error:
                LOG.warning("%s; solving in this process", error)
                return [self.solve(**call) for call in calls]
            results = []
            for index in range(len(calls)):
                if index in early:
                    results.append(early[index])
                    continue
                outcome = next(outcomes)
                results.append(self._result(self.solver._results_of(outcome), outcome.seconds))
            return results

    def _set_requirements(
        self, scenario_limits: bool, demand_models: frozenset[int] | None
    ) -> Requirements:
        """Demand and resilience rows of this solve: right-hand sides set, empty ones found."""
        m = self.model
        requirements = requirements_of(self.scenario, scenario_limits, demand_models)
        for index in m.MODELS:
            value = requirements.demand_k.get(index)
            if index in m.DEMAND_MODELS:
                _set_limit(m.demand[index], m.demand_k[index], value)
            elif value is not None:
                requirements.unreachable.append(f"model {self.scenario.models[index].name}")
        _set_limit(m.total_demand, m.total_demand_k, requirements.total_demand_k)
        for key in m.RESILIENCE:
            _set_limit(m.resilience[key], m.resilience_k[key], requirements.resilience_k.get(key))
        rows = set(m.RESILIENCE)
        for key in requirements.resilience_k:
            if key not in rows:
                requirements.unreachable.append(f"domain {'/'.join(key[:-1])}")
        return requirements

    def _start_values(self, start: dict[int, int]) -> dict[int, float]:
        """HiGHS start: replica counts, and each capped model's useful throughput at that plan."""
        m = self.model
        values = {id(var): float(start.get(index, 0)) for index, var in m.replicas.items()}
        by_model = tokens_by_model(self.configs, start)
        for index in m.USEFUL_CAPPED:
            useful = min(by_model.get(index, 0.0), self.scenario.models[index].useful_tokens_per_s)
            values[id(m.useful_k[index])] = useful / KTOKENS
        return values

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
            results.objective_bound,
        )

    def settled(self) -> PlacementMilp:
        """The model over the configurations at hand (all of them, here)."""
        return self

    def proof_model(self, ratio: float, start: dict[int, int]) -> PlacementMilp | None:
        """The model a proof at `ratio` from `start` needs (every configuration, here)."""
        del ratio, start
        return self

    def totals(self, counts: dict[int, int]) -> tuple[float, float, int]:
        return mix_totals(self.scenario, self.configs, counts)


def tokens_by_model(configs: list[ReplicaConfig], counts: dict[int, int]) -> dict[int, float]:
    """T_m: tokens/s per model index of a mix of configurations (index -> replicas)."""
    result: dict[int, float] = {}
    for i, n in counts.items():
        result[configs[i].model] = result.get(configs[i].model, 0.0) + configs[i].tokens_per_s * n
    return result


def useful_tokens(scenario: Scenario, by_model: dict[int, float]) -> float:
    """V = sum over models of min(T_m, U_m)."""
    total = 0.0
    for index, tokens in by_model.items():
        cap = scenario.models[index].useful_tokens_per_s
        total += tokens if cap is None else min(tokens, cap)
    return total


def useful_floor(scenario: Scenario) -> float:
    """Useful tokens/s every feasible plan reaches: sum of min(D_m, U_m)."""
    floors = [
        m.demand_tokens_per_s
        if m.useful_tokens_per_s is None
        else min(m.demand_tokens_per_s, m.useful_tokens_per_s)
        for m in scenario.models
    ]
    return max(sum(floors), 0.0)


def mix_totals(
    scenario: Scenario, configs: list[ReplicaConfig], counts: dict[int, int]
) -> tuple[float, float, int]:
    """(useful tokens_per_s V, cost_per_hour, gpus) of a mix of configurations."""
    tokens = useful_tokens(scenario, tokens_by_model(configs, counts))
    cost = sum(configs[i].cost_per_hour * n for i, n in counts.items())
    gpus = sum(configs[i].gpus * n for i, n in counts.items())
    return tokens, cost, gpus


@dataclass
class Requirements:
    """Right-hand sides (ktokens/s) of the demand and resilience rows of one solve."""

    demand_k: dict[int, float]  # model index -> D_m
    total_demand_k: float | None  # fleet floor beyond the models' own (fleets only)
    resilience_k: dict[tuple[str, ...], float]  # (*domain, model index) -> f * D_m
    unreachable: list[str]  # a positive requirement no configuration can serve


def requirements_of(
    scenario: Scenario, scenario_limits: bool = True, demand_models: frozenset[int] | None = None
) -> Requirements:
    """Each model's demand, the fleet floor, and f * D_m per spot failure domain."""
    demand_k: dict[int, float] = {}
    resilience_k: dict[tuple[str, ...], float] = {}
    total: float | None = None
    if scenario_limits:
        fraction = scenario.solver.survive_fraction
        for index, model in enumerate(scenario.models):
            if model.demand_tokens_per_s <= 0:
                continue
            if demand_models is not None and index not in demand_models:
                continue
            demand_k[index] = model.demand_tokens_per_s / KTOKENS
            for domain in spot_domains(scenario):
                resilience_k[(*domain, str(index))] = fraction * demand_k[index]
        floor = scenario.solver.demand_tokens_per_s
        if len(scenario.models) > 1 and floor > 0 and demand_models is None:
            total = floor / KTOKENS
    return Requirements(demand_k, total, resilience_k, [])


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
    """The recipe: counts, figures, availability, quotas, demand, resilience, limits, objective.

    Only configurations no mix of others beats get a variable (`solver.dominance`); the
    variables keep the configurations' indices.
    """
    chosen = {index: configs[index] for index in undominated(configs)}
    m = pyo.ConcreteModel(name="placement")
    define_replica_counts(m, scenario, chosen)
    define_figures(m, scenario, chosen)
    define_availability(m, scenario, chosen)
    define_quotas(m, scenario, chosen)
    define_demand(m, scenario, chosen)
    define_resilience(m, scenario, chosen)
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
            scenario.quota_limit(scenario.pools[pool_index]) // gpus
            for pool_index, gpus in config.gpus_by_pool
        )
        for index, config in configs.items()
    }
    m.replicas = pyo.Var(
        m.CONFIGS, domain=pyo.NonNegativeIntegers, bounds=lambda _, c: (0, bounds[c])
    )


def define_figures(
    m: pyo.ConcreteModel, scenario: Scenario, configs: dict[int, ReplicaConfig]
) -> None:
    """Plan cost (USD/h), throughput T and useful throughput V (ktokens/s), GPUs; per model T_m.

    V = sum_m min(T_m, U_m): a capped model's useful_k[m] <= T_m and <= U_m (its bound).
    """
    m.cost_per_hour = pyo.Expression(
        expr=sum(c.cost_per_hour * m.replicas[i] for i, c in configs.items())
    )
    m.ktokens_per_s = pyo.Expression(
        expr=sum(c.tokens_per_s / KTOKENS * m.replicas[i] for i, c in configs.items())
    )
    m.gpus = pyo.Expression(expr=sum(c.gpus * m.replicas[i] for i, c in configs.items()))
    m.at_least_one_replica = pyo.Constraint(expr=sum(m.replicas[i] for i in m.CONFIGS) >= 1)
    m.MODELS = pyo.Set(initialize=range(len(scenario.models)), ordered=True)
    m.model_ktokens = pyo.Expression(
        m.MODELS,
        rule=lambda _, model: sum(
            c.tokens_per_s / KTOKENS * m.replicas[i] for i, c in configs.items() if c.model == model
        ),
    )
    capped = {
        index: model.useful_tokens_per_s / KTOKENS
        for index, model in enumerate(scenario.models)
        if model.useful_tokens_per_s is not None
    }
    m.USEFUL_CAPPED = pyo.Set(initialize=sorted(capped), ordered=True)
    m.useful_k = pyo.Var(m.USEFUL_CAPPED, bounds=lambda _, i: (0.0, capped[i]))
    m.useful_link = pyo.Constraint(
        m.USEFUL_CAPPED, rule=lambda _, i: m.useful_k[i] <= m.model_ktokens[i]
    )
    if capped:
        m.useful_ktokens_per_s = pyo.Expression(
            expr=sum(
                m.useful_k[i] if i in capped else m.model_ktokens[i]
                for i in range(len(scenario.models))
            )
        )
    else:
        m.useful_ktokens_per_s = pyo.Expression(
            expr=sum(c.tokens_per_s / KTOKENS * m.replicas[i] for i, c in configs.items())
        )


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


def define_quotas(
    m: pyo.ConcreteModel, scenario: Scenario, configs: dict[int, ReplicaConfig]
) -> None:
    """GPUs used over every pool a quota matches, summed over every model, within max_gpus."""
    users: dict[int, list[tuple[int, int]]] = {}
    for q, quota in enumerate(scenario.quotas):
        for index, config in configs.items():
            gpus = sum(g for p, g in config.gpus_by_pool if quota.matches(scenario.pools[p]))
            if gpus:
                users.setdefault(q, []).append((index, gpus))
    m.QUOTAS = pyo.Set(initialize=sorted(users))
    m.quota = pyo.Constraint(
        m.QUOTAS,
        rule=lambda _, q: (
            sum(g * m.replicas[i] for i, g in users[q]) <= scenario.quotas[q].max_gpus
        ),
    )


def define_demand(
    m: pyo.ConcreteModel, scenario: Scenario, configs: dict[int, ReplicaConfig]
) -> None:
    """Each model's throughput reaches its demand; a fleet's total its floor (switchable)."""
    served = sorted({c.model for c in configs.values()})
    m.DEMAND_MODELS = pyo.Set(initialize=served, ordered=True)
    m.demand_k = pyo.Param(m.DEMAND_MODELS, mutable=True, initialize=0.0)
    m.demand = pyo.Constraint(
        m.DEMAND_MODELS, rule=lambda _, i: m.model_ktokens[i] >= m.demand_k[i]
    )
    m.demand.deactivate()
    m.total_demand_k = pyo.Param(mutable=True, initialize=0.0)
    m.total_demand = pyo.Constraint(expr=m.ktokens_per_s >= m.total_demand_k)
    m.total_demand.deactivate()


def define_resilience(
    m: pyo.ConcreteModel, scenario: Scenario, configs: dict[int, ReplicaConfig]
) -> None:
    """Per spot failure domain F and model: throughput of replicas not exposed to F >= f * D_m.

    Keys are (*domain, model index as text); a row with no unexposed replica is left out
    (the solve reports it unreachable when its requirement is positive).
    """
    kind = scenario.solver.survive_spot_loss
    users: dict[tuple[str, ...], list[int]] = {}
    for domain in spot_domains(scenario):
        for index, config in configs.items():
            if config.spot_domain(kind) != domain:
                users.setdefault((*domain, str(config.model)), []).append(index)
    m.RESILIENCE = pyo.Set(initialize=sorted(users), dimen=None, ordered=True)
    m.resilience_k = pyo.Param(m.RESILIENCE, mutable=True, initialize=0.0)
    m.resilience = pyo.Constraint(
        m.RESILIENCE,
        rule=lambda _, *key: (
            sum(configs[i].tokens_per_s / KTOKENS * m.replicas[i] for i in users[key])
            >= m.resilience_k[key]
        ),
    )
    m.resilience.deactivate()


def define_limits(m: pyo.ConcreteModel) -> None:
    """Budget, a cap on cost per useful token (tie-breaking), caps on cost and GPUs, a floor on
    cost (splitting a proof), each switchable."""
    m.budget_per_hour = pyo.Param(mutable=True, initialize=math.inf)
    m.budget = pyo.Constraint(expr=m.cost_per_hour <= m.budget_per_hour)
    m.max_ratio = pyo.Param(mutable=True, initialize=0.0)
    m.ratio_cap = pyo.Constraint(expr=m.cost_per_hour - m.max_ratio * m.useful_ktokens_per_s <= 0)
    m.max_cost_per_hour = pyo.Param(mutable=True, initialize=math.inf)
    m.cost_cap = pyo.Constraint(expr=m.cost_per_hour <= m.max_cost_per_hour)
    m.max_gpus = pyo.Param(mutable=True, initialize=math.inf)
    m.gpu_cap = pyo.Constraint(expr=m.gpus <= m.max_gpus)
    m.min_cost_per_hour = pyo.Param(mutable=True, initialize=0.0)
    m.cost_floor = pyo.Constraint(expr=m.cost_per_hour >= m.min_cost_per_hour)
    for constraint in (m.budget, m.ratio_cap, m.cost_cap, m.gpu_cap, m.cost_floor):
        constraint.deactivate()


def define_objective(m: pyo.ConcreteModel) -> None:
    m.cost_weight = pyo.Param(mutable=True, initialize=1.0)
    m.throughput_weight = pyo.Param(mutable=True, initialize=0.0)
    m.gpu_weight = pyo.Param(mutable=True, initialize=0.0)
    m.model_weight = pyo.Param(m.MODELS, mutable=True, initialize=0.0)
    m.objective = pyo.Objective(
        expr=m.cost_weight * m.cost_per_hour
        - m.throughput_weight * m.useful_ktokens_per_s
        - sum(m.model_weight[i] * m.model_ktokens[i] for i in m.MODELS)
        + m.gpu_weight * m.gpus,
        sense=pyo.minimize,
    )
