"""The five strategies of the contract over one placement MILP."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from solver import deadline
from solver.deadline import DeadlineExceeded
from solver.explain import explain_infeasible, explain_no_replica
from solver.lazy import LazyPlacementMilp
from solver.milp import KTOKENS, MilpResult, PlacementMilp, useful_floor
from solver.plan import SECONDS_PER_HOUR, Plan, Stage, group_replicas
from solver.replicas import (
    ReplicaConfig,
    fleet_configs,
    lower_bound_ratio,
    search_size,
    throughput_upper_bound,
)
from solver.scenario import Scenario

TIME_LIMIT_MESSAGE = "the time limit stopped the search before any plan was found"
DEADLINE_SHARE = 0.9
LISTING_TIME_LIMIT_MESSAGE = "the time limit ran out while listing replica configurations"
STRATEGIES = ("exact", "iterative", "weighted", "min-cost", "max-throughput")
TIE_REL = 1e-9  # exact-ratio ties within this relative tolerance: lower cost, then fewer GPUs
MAX_DINKELBACH_ITERATIONS = 100
TIE_BREAK_MIN_SECONDS = 1.0
QUICK_REL_GAP = 1e-3  # Dinkelbach steps that only need an improving plan
PROOF_REL_GAP = 1e-9
LP_RATIO_REL_TOL = 1e-12  # Dinkelbach on the LP stops when F_LP(lam) >= -this x its cost
FULL_LISTING_MULTISETS = 20_000  # beyond this, configurations are generated from LP duals
PRICING_SEARCH_NODES = 5_000_000


class StrategyError(ValueError):
    """The scenario lacks what a strategy needs (e.g. min-cost without a demand)."""


def solve(
    scenario: Scenario, strategy: str = "exact", *, columns_on_demand: bool | None = None
) -> Plan:
    """Solve the scenario with one strategy; the plan's figures come from its stages.

    `columns_on_demand`: generate configurations from LP duals (True), list them all (False),
    or decide by the size of the space (None).
    """
    if strategy not in STRATEGIES:
        raise StrategyError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    _check_strategy_inputs(scenario, strategy)
    started = time.perf_counter()
    limit_s = scenario.solver.time_limit_s
    # work stops at a share of the limit: the rest is for what follows (a plan, its figures)
    with deadline.deadline(None if limit_s is None else DEADLINE_SHARE * limit_s):
        try:
            milp = placement_model(scenario, columns_on_demand)
        except DeadlineExceeded:
            return _no_plan(strategy, started, "unknown", LISTING_TIME_LIMIT_MESSAGE, 0)
        return solve_model(milp, strategy, started)


def solve_model(
    milp: PlacementMilp | LazyPlacementMilp, strategy: str, started: float | None = None
) -> Plan:
    """Run one strategy on a built model, under the deadline open around it (if any)."""
    started = time.perf_counter() if started is None else started
    scenario = milp.scenario
    if isinstance(milp, PlacementMilp) and not milp.configs:
        return _no_plan(strategy, started, "infeasible", explain_no_replica(scenario), 0, scenario)
    configs = milp.configs
    run: Callable[[PlacementMilp], tuple[MilpResult, int, dict]] = _RUNNERS[strategy]
    result, iterations, extra = run(milp)
    if result.status == "unknown":
        return _no_plan(strategy, started, "unknown", TIME_LIMIT_MESSAGE, iterations, scenario)
    if result.status == "infeasible":
        message = explain_infeasible(milp)
        return _no_plan(strategy, started, "infeasible", message, iterations, scenario)
    message = extra.pop("message", "")
    extra = {
        "model_building": "listed" if isinstance(milp, PlacementMilp) else "on-demand",
        "configurations": len(configs),
        "build_seconds": milp.build_seconds,
        "milp_solves": milp.solves,
        **extra,
    }
    return Plan(
        strategy=strategy,
        status=result.status,
        replicas=_replicas(scenario, configs, result.counts),
        mip_gap=extra.get("gap", result.mip_gap) if result.status != "optimal" else 0.0,
        solve_seconds=time.perf_counter() - started,
        iterations=iterations,
        message=message,
        extra=extra,
        scenario=scenario,
    )


def placement_model(
    scenario: Scenario, columns_on_demand: bool | None = None
) -> PlacementMilp | LazyPlacementMilp:
    """Every configuration when the space is small enough to list, else columns on demand."""
    if columns_on_demand is None:
        columns_on_demand = search_size(scenario) > FULL_LISTING_MULTISETS
    if columns_on_demand:
        initial = fleet_configs(scenario, homogeneous=True)
        # under a time limit the deadline bounds every search: a node budget would only give up
        # early (474 pools at 25 % demand: an unproven answer at 80 s of 120, 111 % gap)
        limited = scenario.solver.time_limit_s is not None
        budget = None if limited else PRICING_SEARCH_NODES
        return LazyPlacementMilp(scenario, initial, node_budget=budget)
    return PlacementMilp(scenario, fleet_configs(scenario))


def _check_strategy_inputs(scenario: Scenario, strategy: str) -> None:
    options = scenario.solver
    if strategy == "min-cost" and scenario.demand_tokens_per_s <= 0:
        if len(scenario.models) > 1:
            raise StrategyError(
                "min-cost needs a demand: some model's demand_tokens_per_s must be > 0"
            )
        raise StrategyError("solver.demand_tokens_per_s must be > 0 for strategy min-cost")
    if strategy == "max-throughput" and options.budget_per_hour is None:
        raise StrategyError("solver.budget_per_hour is required for strategy max-throughput")


def _replicas(scenario: Scenario, configs: list[ReplicaConfig], counts: dict[int, int]):
    replicas = []
    for index, count in counts.items():
        config = configs[index]
        stages = tuple(Stage(t.pool.id, t.pool.gpu, t.tp, layers) for t, layers in config.stages)
        model = scenario.models[config.model].name
        replicas.extend([(config.cloud, config.region, stages, model)] * count)
    return group_replicas(scenario, replicas)


def _no_plan(
    strategy: str,
    started: float,
    status: str,
    message: str,
    iterations: int,
    scenario: Scenario | None = None,
) -> Plan:
    return Plan(
        strategy=strategy,
        status=status,
        solve_seconds=time.perf_counter() - started,
        iterations=iterations,
        message=message,
        scenario=scenario,
    )


# --- exact: Dinkelbach ---------------------------------------------------------------------


def _exact(milp: PlacementMilp | LazyPlacementMilp) -> tuple[MilpResult, int, dict]:
    """Least cost per token: Dinkelbach over the MILP, then the contract's tie order.

    F(lam) = min cost - lam * throughput over feasible plans; lam* is the optimal ratio exactly
    when F(lam*) = 0. The first lam is the physical lower bound (the best price per fluid
    throughput of any stage type); each step moves lam to the ratio of a plan found at the last
    lam, so from the second step lam decreases. A step needs only *some* plan with F < 0, so
    it is solved with a loose MIP gap; only when that finds none is F(lam) >= 0 proven with an
    exact solve, which ends the loop. When the deadline ends the loop first, the best plan is
    returned `feasible` with the best lower bound on the ratio that the steps proved.
    """
    started = time.perf_counter()
    lower_bound = (lower_bound_ratio(milp.scenario) or 0.0) * KTOKENS
    bounds = _RatioBounds(milp.scenario, lower_bound)
    best: MilpResult | None = None
    best_ratio, best_cost = float("inf"), 0.0
    if isinstance(milp, LazyPlacementMilp):
        # the LP relaxation's ratio: a lower bound far closer than the physical one
        lp = milp.lp_ratio(lower_bound, LP_RATIO_REL_TOL)
        if lp is not None:
            bounds.add(lp[0], lp[1])
            best_cost = lp[2]  # sizes the first step's absolute gap
    ratio, attained = bounds.best, False  # attained: some plan has exactly this ratio
    iterations, proofs = 0, 0
    proven = prove_next = False
    exact_start = False  # the plan to prove next came from an exact solve: most often optimal
    searched: tuple[MilpResult, MilpResult] | None = None  # tie searches a split proof ran
    while iterations < MAX_DINKELBACH_ITERATIONS:
        if best is not None and deadline.expired():
            break
        iterations += 1
        if prove_next:  # the last step was exact: its plan's ratio is most often optimal
            result = best
        else:
            # objective ~ 0 near the optimum makes a relative gap exact: loosen it absolutely
            quick_abs_gap = QUICK_REL_GAP * best_cost if best_cost > 0 else 1e-9
            result = milp.solve(
                cost_weight=1.0,
                throughput_weight=ratio,
                prove=False,
                rel_gap=QUICK_REL_GAP,
                abs_gap=quick_abs_gap,
            )
            bounds.add(ratio, result.bound)
        if result.counts and attained and _value(milp, result, ratio) >= 0:
            proofs += 1  # nothing better found quickly: settle F(ratio) exactly
            if best is not None and _value(milp, best, ratio) <= _value(milp, result, ratio):
                result = best  # the lowest start: the lazy model prices only its gap
            split = None
            if result is best and _splits(milp, exact_start):
                split = _split_proof(milp, best, best_ratio)
            if split is not None:
                bounds.add(best_ratio, split.bound)
                if split.better is None and (split.proven or deadline.expired()):
                    proven, searched = split.proven, split.ties
                    break
            if split is not None and split.better is not None:
                result, prove_next, exact_start = split.better, True, split.better_exact
            else:  # one proof over every plan (no split, or one that found a tie it cannot rank)
                _, cost, _ = _totals_k(milp, result.counts)
                result = milp.solve(**_proof(ratio, result.counts, cost))
                bounds.add(ratio, result.bound)
                if result.counts and _value(milp, result, ratio) >= 0:
                    proven = result.status == "optimal"
                    break
                prove_next = exact_start = bool(result.counts)
        if not result.counts:
            if best is None or result.status == "infeasible":
                return result, iterations, {}
            break  # a limit stopped this step: the best plan so far stands, unproven
        tokens_k, cost, _ = _totals_k(milp, result.counts)
        if cost / tokens_k < best_ratio:
            best, best_ratio, best_cost = result, cost / tokens_k, cost
        if not attained and _value(milp, result, ratio) == 0:
            proven = True  # the plan attains the lower bound: nothing can be cheaper per token
            break
        if not prove_next and attained:
            prove_next = _quick_step_futile(
                result.search_bound, ratio, cost / tokens_k, bounds, cost
            )
        ratio, attained = cost / tokens_k, True
    assert best is not None
    seconds = time.perf_counter() - started
    best, tie_break = _break_ties(milp, best, best_ratio, seconds, searched)
    status = "optimal" if proven else "feasible"
    result = MilpResult(status, best.counts, best.objective, best.bound, best.seconds)
    ratio_bound = best_ratio if proven else min(best_ratio, bounds.best)
    extra = {
        "tie_break": tie_break,
        "lower_bound_cost_per_token": ratio_bound / KTOKENS / SECONDS_PER_HOUR,
        "dinkelbach_ratios": iterations,
        "dinkelbach_proofs": proofs,
    }
    if not proven:
        extra["gap"] = best_ratio / ratio_bound - 1 if ratio_bound > 0 else None
        extra["message"] = _unproven_message(extra["gap"])
    return result, iterations, extra


def _quick_step_futile(
    bound: float | None, ratio: float, next_ratio: float, bounds: _RatioBounds, cost: float
) -> bool:
    """Whether a quick step at `next_ratio` may stop without a better plan: then prove at once.

    The step at `ratio` bounded F(ratio) >= `bound` over its columns (a guide: only which solve
    runs next depends on it); every plan has V >= the demand floor D, so F(next) >= bound +
    (ratio - next) D for next < ratio. A quick step stops within its absolute
    gap of its bound: when that floor is above -gap it may return a plan with F(next) >= 0, and
    the exact solve that must follow would have been enough (237 pools, 80 layers, S = 8: the
    third quick step took 6.4 s and found nothing).
    """
    if bound is None or not math.isfinite(bound) or next_ratio >= ratio:
        return False
    floor = bound + (ratio - next_ratio) * bounds.demand_k
    return floor > -QUICK_REL_GAP * cost


class _RatioBounds:
    """Lower bounds on the optimal ratio (USD/h per ktokens/s) from the steps' MILP bounds.

    A step at lam with a valid bound B <= F(lam) gives, for every plan, C - lam T >= B, so
    C / T >= lam + B / T: with B >= 0 and T <= T_max, lam + B / T_max; with B < 0 and a demand
    T >= D > 0, lam + B / D.
    """

    def __init__(self, scenario: Scenario, physical: float) -> None:
        self.best = physical
        self.max_tokens_k = throughput_upper_bound(scenario) / KTOKENS
        self.demand_k = useful_floor(scenario) / KTOKENS

    def add(self, ratio: float, bound: float | None) -> None:
        if bound is None or not math.isfinite(bound):
            return
        if bound >= 0 and self.max_tokens_k > 0:
            self.best = max(self.best, ratio + bound / self.max_tokens_k)
        elif bound < 0 and self.demand_k > 0:
            self.best = max(self.best, ratio + bound / self.demand_k)


def _unproven_message(gap: float | None) -> str:
    within = f"; at most {100 * gap:.3g} % above the optimum" if gap is not None else ""
    return f"not proven optimal: the time limit ended the search{within}"


def _break_ties(
    milp: PlacementMilp | LazyPlacementMilp,
    best: MilpResult,
    best_ratio: float,
    seconds: float,
    searched: tuple[MilpResult, MilpResult] | None = None,
) -> tuple[MilpResult, str]:
    """Among plans within TIE_REL of the best ratio: least cost, then fewest GPUs.

    These order plans of the proven ratio, so a time limit here leaves the ratio proven; each
    solve starts from the plan in hand, so it never ends with less than that. `searched`: the
    cheaper-tie and fewer-GPU searches, when a split proof already ran them.
    """
    if searched is None and deadline.expired():
        return best, "time-limited"
    cap = best_ratio * (1 + TIE_REL)
    ties = milp.settled()
    limit_s = max(TIE_BREAK_MIN_SECONDS, 0.5 * seconds)
    _, cost, gpus = _totals_k(milp, best.counts)
    # first ask whether the plan in hand wins: is there a tie (C - cap V <= 0) cheaper than it,
    # or as cheap with fewer GPUs? Each is a cut-off Dinkelbach solve at cap, far easier for
    # HiGHS than least cost under the ratio cap (bench/README.md); either found: solve them
    searches = (
        _tie_search(cap, cost, cost * (1 - TIE_REL), None, limit_s),
        _tie_search(cap, cost, cost * (1 + TIE_REL), gpus - 1, limit_s),
    )
    if searched is not None:
        cheaper, fewer = searched
    elif ties.parallel:  # both at once, each in its own worker process (one per core)
        cheaper, fewer = ties.solve_all(searches)
    else:  # the second only if the first finds nothing
        cheaper, fewer = ties.solve(**searches[0]), None
    if cheaper.status == "infeasible":
        fewer = fewer or ties.solve(**searches[1])
        if fewer.status == "infeasible":
            return best, "proven"
        cheapest = best
    else:
        cheapest = ties.solve(
            cost_weight=1.0, max_ratio=cap, time_limit_s=limit_s, start=best.counts
        )
    if not cheapest.counts:
        return best, "time-limited"
    if cheapest is not best:
        _, cost, _ = _totals_k(milp, cheapest.counts)
    fewest = ties.solve(
        abs_gap=0.5,  # a GPU count: any plan within half a GPU of the bound is optimal
        gpu_weight=1.0,
        max_ratio=cap,
        max_cost_per_hour=cost * (1 + TIE_REL),
        time_limit_s=limit_s,
        start=cheapest.counts,
    )
    tie_break = "proven" if cheapest.status == fewest.status == "optimal" else "time-limited"
    return (fewest if fewest.counts else cheapest), tie_break


def _tie_search(
    cap: float, cost: float, max_cost_per_hour: float, max_gpus: int | None, limit_s: float | None
) -> dict[str, Any]:
    """The solve (keyword arguments) finding some plan of ratio <= `cap` within the cost and
    GPU caps, or status `infeasible` if there is none.

    It minimises C - cap V cut off at TIE_REL x `cost` (USD/h), a margin on the side of
    searching on, and stops at the first plan found. Without primal heuristics: 237 pools, 80
    layers, S = 8, one thread, the cheaper-tie search took 19.0 s instead of 22.1 s, the
    fewer-GPU one 11.8 s instead of 14.1 s (the split proof's part above the cost: 11.8 s, 13.4 s).
    """
    return dict(
        cost_weight=1.0,
        throughput_weight=cap,
        max_cost_per_hour=max_cost_per_hour,
        max_gpus=max_gpus,
        cutoff=TIE_REL * cost,
        abs_gap=math.inf,
        time_limit_s=limit_s,
        heuristics=False,  # most often there is none
    )


def _proof(ratio: float, start: dict[int, int], cost: float) -> dict[str, Any]:
    """The solve (keyword arguments) settling F(ratio) exactly from a start plan of that cost."""
    return dict(
        cost_weight=1.0,
        throughput_weight=ratio,
        start=start,
        abs_gap=PROOF_REL_GAP * cost,  # F within 1e-9 of the cost: the tie tolerance
    )


def _splits(milp: PlacementMilp | LazyPlacementMilp, exact_start: bool) -> bool:
    """Whether to prove by `_split_proof`: on a model whose solves run at once, when the start
    came from an exact step (most often the optimum, so its tie searches are not wasted)."""
    return exact_start and milp.parallel


@dataclass(frozen=True)
class _SplitProof:
    """What the three searches of `_split_proof` found."""

    better: MilpResult | None  # a plan of a lower ratio: Dinkelbach goes on from it
    better_exact: bool  # that plan is the optimum of F(ratio) over its half of the plans
    proven: bool  # no plan has a lower ratio than the start
    ties: tuple[MilpResult, MilpResult] | None  # when proven: the cheaper and fewer-GPU searches
    bound: float | None  # a lower bound on F(ratio) over every plan


def _split_proof(
    milp: PlacementMilp | LazyPlacementMilp, start: MilpResult, ratio: float
) -> _SplitProof | None:
    """Prove F(ratio) >= 0 at the start's ratio together with its tie-break, three solves at once.

    The plans split at the start's cost C_b (less 1e-9 of it). At or above: min F(ratio) with
    that cost floor (237 pools, 80 layers, S = 8: 12.0 s against 19.5 s without it). Below: the
    cheaper-tie search, which finds any plan of ratio <= cap cheaper than C_b, a better ratio
    included. Beside them, the fewer-GPU tie search (the floor holds there too: a cheaper tie is
    the other search's). Three searches at once took 30.6 s on 2 cores against 19.5 + 22.3 s for
    the proof, then the tie searches. None when pricing the proof's columns ran out of budget.
    """
    model = milp.proof_model(ratio, start.counts)
    if model is None:
        return None
    _, cost, gpus = _totals_k(milp, start.counts)
    cap, floor = ratio * (1 + TIE_REL), cost * (1 - TIE_REL)
    above = _proof(ratio, start.counts, cost)
    above["min_cost_per_hour"] = floor
    above["heuristics"] = False  # the start is most often the optimum: nothing to find
    below = _tie_search(cap, cost, floor, None, None)  # part of the proof: no limit of its own
    # nor this one: the proof is waited for anyway, and a limit cut it short beside the other two
    # (237 pools: stopped at 16.8 s, then the fallback least-GPU solve took 30.4 s)
    fewer = _tie_search(cap, cost, cost * (1 + TIE_REL), gpus - 1, None)
    fewer["min_cost_per_hour"] = floor
    over, under, fewer_gpus = model.solve_all([above, below, fewer])
    bounds = [over.bound, under.bound if under.status != "infeasible" else math.inf]
    bound = min(bounds) if all(b is not None and not math.isnan(b) for b in bounds) else None
    found = [r for r in (over, under) if r.counts and _value(milp, r, ratio) < 0]
    if found:
        better = min(found, key=lambda r: _ratio(milp, r.counts))
        return _SplitProof(better, better is over, False, None, bound)
    proven = over.status == "optimal" and under.status == "infeasible"
    return _SplitProof(None, False, proven, (under, fewer_gpus) if proven else None, bound)


def _value(milp: PlacementMilp | LazyPlacementMilp, result: MilpResult, ratio: float) -> float:
    """F(ratio) at the result's plan, in units of its cost: < 0 means a better ratio."""
    tokens_k, cost, _ = _totals_k(milp, result.counts)
    value = cost - ratio * tokens_k
    return 0.0 if abs(value) <= TIE_REL * cost else value


def _ratio(milp: PlacementMilp | LazyPlacementMilp, counts: dict[int, int]) -> float:
    """A plan's cost per useful ktokens/s (USD/h per ktokens/s)."""
    tokens_k, cost, _ = _totals_k(milp, counts)
    return cost / tokens_k


def _totals_k(
    milp: PlacementMilp | LazyPlacementMilp, counts: dict[int, int]
) -> tuple[float, float, int]:
    tokens, cost, gpus = milp.totals(counts)
    return tokens / KTOKENS, cost, gpus


# --- single-objective strategies -----------------------------------------------------------


def _min_cost(milp: PlacementMilp) -> tuple[MilpResult, int, dict]:
    return milp.solve(cost_weight=1.0), 1, {}


def _max_throughput(milp: PlacementMilp) -> tuple[MilpResult, int, dict]:
    return milp.solve(throughput_weight=1.0), 1, {}


def _weighted(milp: PlacementMilp) -> tuple[MilpResult, int, dict]:
    """The seed's baseline: max (1 - w) T / T_norm - w C / C_norm, norms over all pools.

    On a fleet T is the raw throughput of every model and T_norm = sum_m sum_p available_p *
    tokens_per_s_{p,m} (fleet-model.md).
    """
    scenario = milp.scenario
    w = scenario.solver.cost_throughput_weight
    t_norm = (
        sum(
            p.available * rate
            for model in scenario.models
            for p in scenario.pools
            if (rate := p.rate(model.name)) is not None
        )
        / KTOKENS
    )
    c_norm = sum(p.available * p.price_per_gpu_hour for p in scenario.pools)
    if t_norm <= 0 or c_norm <= 0:
        return milp.solve(cost_weight=1.0), 1, {}
    if all(model.useful_tokens_per_s is None for model in scenario.models):  # V is T
        result = milp.solve(cost_weight=w / c_norm, throughput_weight=(1 - w) / t_norm)
    else:
        weights = {index: (1 - w) / t_norm for index in range(len(scenario.models))}
        result = milp.solve(cost_weight=w / c_norm, model_weights=weights)
    return result, 1, {"t_norm_tokens_per_s": t_norm * KTOKENS, "c_norm_per_hour": c_norm}


# --- iterative: the seed's Solution 1 ------------------------------------------------------


def _iterative(milp: PlacementMilp) -> tuple[MilpResult, int, dict]:
    """The seed's budget-tightening loop, with the choices it left open made explicit.

    1. T_min: the demand when one is set, else the throughput of the cheapest plan
       (one replica at least).
    2. budget = target_cost_per_token * T_min * 3600 (USD/h), capped by the scenario budget.
    3. maximise throughput subject to cost <= budget.
    4. cost per token of that plan; at or below the target: done.
    5. above it: tighten, budget *= target / achieved (the budget at which the same
       throughput would meet the target), and go to 3, at most max_iterations solves.
    A budget too small for any feasible plan is raised to the cheapest feasible cost once.
    Without a target_cost_per_token (the seed sets none by default) the target is the best
    cost per token of any single replica, a lower bound no plan beats.
    Returns the loop's plan with the lowest cost per token (the T_min solve is not a
    candidate, as in the seed).
    Its solves skip the optimality proof of columns on demand: the loop is a heuristic.
    """
    options = milp.scenario.solver
    target_per_token = options.target_cost_per_token
    if target_per_token is None:  # the seed gives no default: aim at the physical limit
        target_per_token = (lower_bound_ratio(milp.scenario) or 0.0) / SECONDS_PER_HOUR
    cheapest = milp.solve(cost_weight=1.0, prove=False)
    if not cheapest.counts:
        return cheapest, 1, {}
    cheapest_tokens, cheapest_cost, _ = milp.totals(cheapest.counts)
    demand = milp.scenario.demand_tokens_per_s
    t_min = demand if demand > 0 else cheapest_tokens
    budget = target_per_token * t_min * SECONDS_PER_HOUR
    if budget < cheapest_cost:
        budget = cheapest_cost
    best: MilpResult | None = None
    best_ratio = float("inf")
    budgets: list[float] = []
    for _ in range(options.max_iterations):
        if deadline.expired():
            break  # the loop's best plan so far stands
        if budget < cheapest_cost * (1 - TIE_REL):
            break  # below the cheapest feasible plan: nothing can be bought
        budgets.append(budget)
        result = milp.solve(throughput_weight=1.0, budget_per_hour=budget, prove=False)
        if not result.counts:
            break
        tokens, cost, _ = milp.totals(result.counts)
        achieved = cost / (tokens * SECONDS_PER_HOUR)
        if cost / tokens < best_ratio:
            best, best_ratio = result, cost / tokens
        if achieved <= target_per_token:
            break
        budget *= target_per_token / achieved
    if best is None:
        best = cheapest  # every budget was too small: the cheapest feasible plan stands
    status = "feasible"  # a heuristic: never claims the least cost per token
    result = MilpResult(status, best.counts, best.objective, best.bound, best.seconds)
    return result, len(budgets), {"t_min_tokens_per_s": t_min, "budgets_per_hour": budgets}


_RUNNERS = {
    "exact": _exact,
    "min-cost": _min_cost,
    "max-throughput": _max_throughput,
    "weighted": _weighted,
    "iterative": _iterative,
}
