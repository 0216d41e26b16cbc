"""Why a scenario has no feasible plan: which model, which demand, which pool or quota binds."""

from __future__ import annotations

from solver.fleet_figures import spot_domains
from solver.lazy import LazyPlacementMilp
from solver.milp import PlacementMilp, tokens_by_model
from solver.replicas import ReplicaConfig
from solver.scenario import Scenario


def explain_no_replica(scenario: Scenario) -> str:
    """No replica of any model fits: the memory and stage limits that rule them out."""
    options = scenario.solver
    models = ", ".join(
        f"{m.num_layers} layers x {m.layer_memory_gb:g} GB"
        + (f" ({m.name})" if len(scenario.models) > 1 else "")
        for m in scenario.models
    )
    return (
        f"no feasible replica: {models} do not fit "
        f"in {options.max_stages} stage(s) of any single region's available GPUs "
        f"(memory_utilization {options.memory_utilization:g}, "
        f"tp_degrees {list(options.tp_degrees)})"
    )


def explain_infeasible(milp: PlacementMilp | LazyPlacementMilp) -> str:
    """Which constraint bites: a model's demand above what its GPUs deliver, a spot domain's
    loss, the models' demands together on shared pools and quotas, or the budget."""
    scenario = milp.scenario
    options = scenario.solver
    fastest = milp.solve(throughput_weight=1.0, scenario_limits=False)
    if fastest.status == "unknown":
        return "no feasible plan; the time limit ran out before finding which limit binds"
    if fastest.status == "infeasible":
        return "no feasible plan: no replica fits the available GPUs"
    fleet = scenario.is_fleet or scenario.solver.survive_spot_loss != "none"
    if not fleet:
        demand = options.demand_tokens_per_s
        max_tokens, _, _ = milp.totals(fastest.counts)
        if max_tokens < demand:
            return (
                f"demand {demand:g} tokens/s is above what all available GPUs can deliver "
                f"({max_tokens:g} tokens/s at most)"
            )
    else:
        reason = _fleet_reason(milp, fastest.counts)
        if reason:
            return reason
    budget = options.budget_per_hour
    if budget is not None:
        cheapest = milp.solve(cost_weight=1.0, scenario_limits=False)
        _, min_cost, _ = milp.totals(cheapest.counts)
        if min_cost > budget:
            return f"budget {budget:g} $/h is below the cheapest replica ({min_cost:g} $/h)"
        if scenario.demand_tokens_per_s > 0:
            return (
                f"budget {budget:g} $/h is below the least cost of meeting the demand "
                f"{scenario.demand_tokens_per_s:g} tokens/s"
            )
    return "no feasible plan under the strategy's own limits"


def _fleet_reason(milp: PlacementMilp | LazyPlacementMilp, fastest: dict[int, int]) -> str:
    """A model whose demand its pools cannot reach alone, a spot domain whose loss leaves a
    model short, or the demands together against the shared capacity ('' when none binds).

    With columns on demand, the spot-loss check sees only the configurations generated so far.
    """
    scenario = milp.scenario
    fraction = scenario.solver.survive_fraction
    for index, model in enumerate(scenario.models):
        demand = model.demand_tokens_per_s
        if demand <= 0:
            continue
        alone = milp.solve(model_weights={index: 1.0}, scenario_limits=False)
        most = tokens_by_model(milp.configs, alone.counts).get(index, 0.0)
        positions = [i for i, c in enumerate(milp.configs) if c.model == index]
        mine = [milp.configs[i] for i in positions]
        if most < demand:
            local = {i: k for k, i in enumerate(positions)}
            counts = {local[i]: n for i, n in alone.counts.items() if i in local}
            return (
                f"model {model.name}: demand {demand:g} tokens/s is above what its pools can "
                f"deliver ({most:g} tokens/s at most); binding: {_binding(scenario, mine, counts)}"
            )
        kind = scenario.solver.survive_spot_loss
        for domain in spot_domains(scenario):
            safe = [c for c in mine if c.spot_domain(kind) != domain]
            left, counts = _most_tokens(scenario, safe, index)
            if left < fraction * demand:
                return (
                    f"model {model.name}: losing the spot capacity of {'/'.join(domain)} leaves "
                    f"at most {left:g} tokens/s, below {fraction:g} x demand {demand:g} "
                    f"(survive_spot_loss {kind}); binding: {_binding(scenario, safe, counts)}"
                )
    floor = scenario.solver.demand_tokens_per_s
    most_total = sum(tokens_by_model(milp.configs, fastest).values())
    if floor > most_total:
        return (
            f"fleet demand {floor:g} tokens/s is above what all available GPUs can deliver "
            f"({most_total:g} tokens/s at most)"
        )
    demanding = [m.name for m in scenario.models if m.demand_tokens_per_s > 0]
    if len(demanding) > 1:
        return (
            f"models {', '.join(demanding)}: each demand can be met alone, not all together; "
            f"shared capacity binds: {_binding(scenario, milp.configs, fastest)}"
        )
    return ""


def _most_tokens(
    scenario: Scenario, configs: list[ReplicaConfig], model: int
) -> tuple[float, dict[int, int]]:
    """Most tokens/s of `model` from `configs` alone, within pools and quotas."""
    if not configs:
        return 0.0, {}
    sub = PlacementMilp(scenario, configs)
    result = sub.solve(model_weights={model: 1.0}, scenario_limits=False)
    if not result.counts:
        return 0.0, {}
    return tokens_by_model(configs, result.counts).get(model, 0.0), result.counts


def _binding(scenario: Scenario, configs: list[ReplicaConfig], counts: dict[int, int]) -> str:
    """Pools and quotas the configurations use that are full in the plan `counts`."""
    used: dict[int, int] = {}
    touched: set[int] = set()
    for index, config in enumerate(configs):
        for pool_index, gpus in config.gpus_by_pool:
            touched.add(pool_index)
            used[pool_index] = used.get(pool_index, 0) + gpus * counts.get(index, 0)
    full = [
        f"pool {scenario.pools[p].id} ({used.get(p, 0)}/{scenario.pools[p].available} GPUs)"
        for p in sorted(touched)
        if used.get(p, 0) >= scenario.pools[p].available
    ]
    for quota in scenario.quotas:
        matched = [p for p in touched if quota.matches(scenario.pools[p])]
        if not matched:
            continue
        total = sum(used.get(p, 0) for p in matched)
        if total >= quota.max_gpus:
            full.append(f"quota {quota.label} ({total}/{quota.max_gpus} GPUs)")
    if not full:
        return "memory and stage limits (no pool or quota is full)"
    return ", ".join(full)
