"""The placement model: scenarios, replica configurations, the MILP, strategies and plans.

Pure: no Prefect, no network, no database. `from solver import load_scenario, solve`.
"""

from solver.plan import Plan, ReplicaGroup, Stage, plan_violations
from solver.scenario import Scenario, ScenarioError, load_scenario, scenario_from_dict
from solver.strategies import STRATEGIES, StrategyError, solve

__all__ = [
    "STRATEGIES",
    "Plan",
    "ReplicaGroup",
    "Scenario",
    "ScenarioError",
    "Stage",
    "StrategyError",
    "load_scenario",
    "plan_violations",
    "scenario_from_dict",
    "solve",
]
