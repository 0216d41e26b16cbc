"""Fleet benchmark (issues 8 and 10) on the bundled snapshot prices: prints Markdown tables.

    python -m bench.fleet_bench [--quick] [--time-limit 120] [--offer-quota 16] [--out FILE.md]

Not a test: it measures and reports (bench/README.md, "Fleet bench"). Two tables:

1. Fleet sizes: the example inventory's two models over every bundled AWS/GCP/Azure offer of a
   GPU type it lists, in both markets (one quota of `--offer-quota` GPUs per offer, shared by
   its spot and on-demand pool), then four models (two added below with sourced profiles);
   each without and with region resilience. Columns: pools, shared quotas, configurations,
   build / solve / wall seconds, status, $/h, $/token, GPUs.
2. Issue 10's comparison on the example inventory as shipped (its quotas, region resilience
   1.0), useful throughput = demand so every plan is priced for the same work: the exact
   resilient plan, the exact plan without resilience, (a) all on-demand, (b) a SpotHedge-like
   rule. Each row says the share of demand left after the worst single-region spot loss.

The fleet solver (`solver.scenario.Scenario.models`) is required to solve; without it the
bench builds every scenario, prints its size and says that nothing was solved.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tasks.inventory import inventory_from_dict
from tasks.pools import fleet_scenario
from tasks.prices import fetch_prices

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_INVENTORY = ROOT / "config" / "inventory.yaml"
BENCH_CLOUDS = ("aws", "gcp", "azure")
SECONDS_PER_HOUR = 3600.0
TARGET_SOLVE_S = 10.0  # issue 8: the two-model fleet proven optimal in under 10 s on 2 cores

# Bandwidth-bound decode estimate of config/README.md: tokens/s = K * mem_bw / weights_gb.
# mem_bw_gb_s: vendor peak from ../shared/reference/gpu-specs.csv (as in config/inventory.yaml).
DECODE_K = 7.5
MEM_BW_GB_S = {
    "T4": 320, "V100": 897, "V100-32GB": 897, "A10G": 600, "A10": 600, "L4": 300,
    "L40S": 864, "A100": 1555, "A100-80GB": 2039, "H100": 3350, "H200": 4800,
}  # fmt: skip
# The serving target of the example inventory: 16 sequences of 4096 tokens, bf16 KV cache.
KV_BATCH, KV_CONTEXT_TOKENS, BF16_BYTES = 16, 4096, 2

# Two bench-only models (bf16), architecture from their Hugging Face config.json / model card:
# - mistral-7b-v0.3: mistralai/Mistral-7B-Instruct-v0.3 config.json: num_hidden_layers 32,
#   num_attention_heads 32, num_key_value_heads 8, hidden_size 4096 (head_dim 128);
#   7.25B parameters (the model page's safetensors count).
# - qwen2.5-32b: Qwen/Qwen2.5-32B config.json: num_hidden_layers 64, num_attention_heads 40,
#   num_key_value_heads 8, hidden_size 5120 (head_dim 128); model card: 32.5B parameters.
# Throughput per GPU: the same k = 7.5 estimate as the example's models (config/README.md).
# Demands are bench choices (a small chat model and a mid-size one), not measurements.
EXTRA_MODELS: dict[str, dict[str, Any]] = {
    "mistral-7b-v0.3": {
        "num_layers": 32,
        "params_billion": 7.25,
        "n_kv_heads": 8,
        "head_dim": 128,
        "demand_tokens_per_s": 1500,
    },
    "qwen2.5-32b": {
        "num_layers": 64,
        "params_billion": 32.5,
        "n_kv_heads": 8,
        "head_dim": 128,
        "demand_tokens_per_s": 400,
    },
}


# --- inputs --------------------------------------------------------------------------------


def fleet_solver_present() -> bool:
    """Whether the solver reads fleet documents (`Scenario` has `models`)."""
    from solver import scenario

    return "models" in getattr(scenario.Scenario, "__dataclass_fields__", {})


def example_document() -> dict[str, Any]:
    """config/inventory.yaml as a mapping."""
    return yaml.safe_load(EXAMPLE_INVENTORY.read_text(encoding="utf-8"))


def with_extra_models(document: Mapping[str, Any]) -> dict[str, Any]:
    """`document` plus EXTRA_MODELS and their per-GPU profiles (same estimate as the example)."""
    result = copy.deepcopy(dict(document))
    for name, spec in EXTRA_MODELS.items():
        result["models"][name] = {
            "num_layers": spec["num_layers"],
            "params_billion": spec["params_billion"],
            "bytes_per_param": BF16_BYTES,
            "kv_cache": {
                "n_kv_heads": spec["n_kv_heads"],
                "head_dim": spec["head_dim"],
                "bytes_per_value": BF16_BYTES,
                "batch": KV_BATCH,
                "context_tokens": KV_CONTEXT_TOKENS,
            },
            "serving": {"demand_tokens_per_s": spec["demand_tokens_per_s"]},
        }
        weights_gb = spec["params_billion"] * BF16_BYTES
        for gpu, entry in result["gpus"].items():
            bandwidth = MEM_BW_GB_S[gpu]
            entry["models"][name] = {
                "tokens_per_s": round(DECODE_K * bandwidth / weights_gb),
                "source": f"estimate {DECODE_K} * {bandwidth} / {weights_gb:g}",
            }
    return result


def every_offer_quotas(
    prices: pd.DataFrame, document: Mapping[str, Any], per_offer: int
) -> list[dict[str, Any]]:
    """One quota per (cloud, region, gpu) offer of BENCH_CLOUDS for the inventory's GPUs."""
    offers = prices[prices["cloud"].isin(BENCH_CLOUDS) & prices["gpu"].isin(document["gpus"])]
    keys = offers[["cloud", "region", "gpu"]].drop_duplicates().sort_values(["cloud", "region"])
    return [
        {"cloud": c, "region": r, "gpu": g, "max_gpus": per_offer}
        for c, r, g in keys.itertuples(index=False)
    ]


def fleet_document(
    prices: pd.DataFrame, document: Mapping[str, Any], *, survive: str, time_limit_s: float
) -> dict[str, Any]:
    """The fleet scenario of `document`, with `survive` domains and a solver time limit."""
    inventory_document = copy.deepcopy(dict(document))
    serving = dict(inventory_document.get("serving") or {})
    serving["survive_spot_loss"] = survive
    serving.setdefault("survive_fraction", 1.0)
    inventory_document["serving"] = serving
    fleet, _ = fleet_scenario(prices, inventory_from_dict(inventory_document, "bench"))
    fleet["solver"]["time_limit_s"] = time_limit_s
    return fleet


def useful_equals_demand(fleet: dict[str, Any]) -> dict[str, Any]:
    """`fleet` with each model's useful throughput capped at its demand."""
    result = copy.deepcopy(fleet)
    for model in result["models"]:
        model["useful_tokens_per_s"] = model["demand_tokens_per_s"]
    return result


# --- solving -------------------------------------------------------------------------------


def solve_document(fleet: Mapping[str, Any], strategy: str) -> tuple[dict[str, Any], float]:
    """(plan JSON, wall seconds) of `strategy` on a fleet document."""
    from solver import solve
    from solver.scenario import scenario_from_dict

    started = time.perf_counter()
    plan = solve(scenario_from_dict(dict(fleet), "bench"), strategy).to_json()
    wall_s = time.perf_counter() - started
    print(
        f"  {strategy}: {plan.get('status')} in {wall_s:.2f} s, "
        f"{plan.get('cost_per_hour')} $/h, {len(fleet['pools'])} pools",
        file=sys.stderr,
        flush=True,
    )
    return plan, wall_s


def stage_gpus(plan: Mapping[str, Any]) -> dict[str, int]:
    """GPUs used per pool id by a plan's replicas."""
    used: dict[str, int] = defaultdict(int)
    for group in plan.get("replicas", []):
        for stage in group["stages"]:
            used[stage["pool"]] += int(group["count"]) * int(stage["tp"])
    return used


def plan_cost(groups: Iterable[Mapping[str, Any]], pools: Mapping[str, Mapping[str, Any]]) -> float:
    """$/h of replica groups from their stages and the pools' prices."""
    return sum(
        int(g["count"]) * sum(pools[s["pool"]]["price_per_gpu_hour"] * s["tp"] for s in g["stages"])
        for g in groups
    )


def worst_spot_loss_share(
    groups: Sequence[Mapping[str, Any]],
    pools: Mapping[str, Mapping[str, Any]],
    demand: Mapping[str, float],
) -> float:
    """The least share of a model's demand left when one (cloud, region) loses its spot."""
    domains = {
        (pools[s["pool"]]["cloud"], pools[s["pool"]]["region"])
        for g in groups
        for s in g["stages"]
        if pools[s["pool"]]["market"] == "spot"
    }
    worst = 1.0
    for cloud, region in domains:
        for model, floor in demand.items():
            if floor <= 0:
                continue
            left = sum(
                int(g["count"]) * float(g["tokens_per_s"])
                for g in groups
                if g["model"] == model
                and not any(
                    pools[s["pool"]]["market"] == "spot"
                    and (pools[s["pool"]]["cloud"], pools[s["pool"]]["region"]) == (cloud, region)
                    for s in g["stages"]
                )
            )
            worst = min(worst, left / floor)
    return worst


def spot_share(
    groups: Iterable[Mapping[str, Any]], pools: Mapping[str, Mapping[str, Any]]
) -> float:
    """Share of the plan's GPUs rented on spot."""
    spot = total = 0
    for g in groups:
        for s in g["stages"]:
            gpus = int(g["count"]) * int(s["tp"])
            total += gpus
            spot += gpus if pools[s["pool"]]["market"] == "spot" else 0
    return spot / total if total else 0.0


# --- the SpotHedge-like rule ---------------------------------------------------------------


class Capacity:
    """GPUs left per pool and per shared quota as the rule's pieces are placed."""

    def __init__(self, fleet: Mapping[str, Any]) -> None:
        self.pools = {p["id"]: dict(p) for p in fleet["pools"]}
        self.left = {p["id"]: int(p["available"]) for p in fleet["pools"]}
        self.quotas = [dict(q) for q in fleet.get("quotas", [])]
        self.quota_left = [int(q["max_gpus"]) for q in self.quotas]

    def _covers(self, quota: Mapping[str, Any], pool_id: str) -> bool:
        pool = self.pools[pool_id]
        return all(quota.get(k) in (None, pool[k]) for k in ("cloud", "region", "gpu", "market"))

    def fits(self, used: Mapping[str, int]) -> bool:
        """Whether `used` more GPUs per pool stay within every pool and quota."""
        if any(self.left[p] < n for p, n in used.items()):
            return False
        return all(
            sum(n for p, n in used.items() if self._covers(q, p)) <= left
            for q, left in zip(self.quotas, self.quota_left, strict=True)
        )

    def take(self, used: Mapping[str, int]) -> None:
        for pool_id, gpus in used.items():
            self.left[pool_id] -= gpus
        for i, quota in enumerate(self.quotas):
            self.quota_left[i] -= sum(n for p, n in used.items() if self._covers(quota, p))

    def document(
        self,
        models: Sequence[Mapping[str, Any]],
        keep: Callable[[Mapping[str, Any]], bool],
        solver: Mapping[str, Any],
    ) -> dict[str, Any] | None:
        """A fleet document of `models` over the kept pools with what is left; None if empty."""
        names = {m["name"] for m in models}
        pools = []
        for pool_id, pool in self.pools.items():
            rates = {m: r for m, r in pool["tokens_per_s"].items() if m in names}
            if self.left[pool_id] <= 0 or not rates or not keep(pool):
                continue
            entry = dict(pool, available=self.left[pool_id], tokens_per_s=rates)
            if "tp_efficiency" in pool:
                entry["tp_efficiency"] = {
                    m: e for m, e in pool["tp_efficiency"].items() if m in names
                }
                if not entry["tp_efficiency"]:
                    del entry["tp_efficiency"]
            pools.append(entry)
        if not pools:
            return None
        quotas = [
            dict(q, max_gpus=max(0, left))
            for q, left in zip(self.quotas, self.quota_left, strict=True)
            if any(self._covers(q, p["id"]) for p in pools)
        ]
        document: dict[str, Any] = {"models": [dict(m) for m in models], "pools": pools}
        if quotas:
            document["quotas"] = quotas
        document["solver"] = dict(solver)
        return document


def spothedge_rule(fleet: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Replica groups of a SpotHedge-like rule, and notes on what it could not place.

    Per model (in inventory order, each taking capacity from what the previous left): spot in
    the two (cloud, region)s where meeting half the demand on spot alone costs least (min-cost
    solves on what is left), each region sized for D/2 plus one more replica of its cheapest
    kind (the over-provisioning); then on-demand for the rest, all models in one min-cost solve:
    enough that losing either spot region still leaves the full demand, O_m = D_m - min_r T_r.
    """
    capacity = Capacity(fleet)
    solver = {"time_limit_s": fleet["solver"].get("time_limit_s", 120.0)}
    groups: list[dict[str, Any]] = []
    notes: list[str] = []
    on_demand_need: dict[str, float] = {}
    models = {m["name"]: m for m in fleet["models"]}
    for name, model in models.items():
        demand = float(model["demand_tokens_per_s"])
        half = dict(model, demand_tokens_per_s=demand / 2, useful_tokens_per_s=demand / 2)
        regions = sorted(
            {
                (p["cloud"], p["region"])
                for p in fleet["pools"]
                if p["market"] == "spot" and name in p["tokens_per_s"]
            }
        )
        priced: list[tuple[float, tuple[str, str], dict[str, Any]]] = []
        for region in regions:
            document = capacity.document(
                [half],
                lambda p, r=region: p["market"] == "spot" and (p["cloud"], p["region"]) == r,
                solver,
            )
            if document is None:
                continue
            plan, _ = solve_document(document, "min-cost")
            if plan["status"] in ("optimal", "time_limit", "feasible") and plan.get("replicas"):
                priced.append((float(plan["cost_per_hour"]), region, plan))
        priced.sort(key=lambda item: item[0])
        surviving: list[float] = []
        for _, region, plan in priced[:2]:
            used = stage_gpus(plan)
            if not capacity.fits(used):  # the first region took what this one would need
                document = capacity.document(
                    [half],
                    lambda p, r=region: p["market"] == "spot" and (p["cloud"], p["region"]) == r,
                    solver,
                )
                plan = solve_document(document, "min-cost")[0] if document else {"replicas": []}
                used = stage_gpus(plan)
                if not plan.get("replicas") or not capacity.fits(used):
                    notes.append(f"{name}: no room left for D/2 on spot in {'/'.join(region)}")
                    continue
            capacity.take(used)
            region_groups = [dict(g) for g in plan["replicas"]]
            cheapest = min(
                region_groups,
                key=lambda g: (
                    plan_cost([dict(g, count=1)], capacity.pools) / float(g["tokens_per_s"])
                ),
            )
            extra = stage_gpus({"replicas": [dict(cheapest, count=1)]})
            if capacity.fits(extra):
                capacity.take(extra)
                cheapest["count"] = int(cheapest["count"]) + 1
            else:
                notes.append(f"{name}: no room for the extra spot replica in {'/'.join(region)}")
            groups += region_groups
            surviving.append(sum(int(g["count"]) * float(g["tokens_per_s"]) for g in region_groups))
        if len(surviving) < 2:
            notes.append(f"{name}: spot in {len(surviving)} region(s) only")
        # losing one spot region leaves the other region's spot and the on-demand replicas
        left_after_loss = min(surviving) if len(surviving) == 2 else 0.0
        on_demand_need[name] = max(0.0, demand - left_after_loss)
    need = [
        dict(models[m], demand_tokens_per_s=d, useful_tokens_per_s=d)
        for m, d in on_demand_need.items()
        if d > 0
    ]
    if need:
        document = capacity.document(need, lambda p: p["market"] == "on-demand", solver)
        plan = solve_document(document, "min-cost")[0] if document else {"status": "no pools"}
        if plan.get("replicas"):
            capacity.take(stage_gpus(plan))
            groups += [dict(g) for g in plan["replicas"]]
        else:
            notes.append(f"on-demand for the rest: {plan.get('status')}")
    return groups, notes


# --- tables --------------------------------------------------------------------------------


def _money(value: Any) -> str:
    return f"{float(value):,.2f}" if isinstance(value, int | float) else "-"


def _seconds(value: Any) -> str:
    return f"{float(value):.2f}" if isinstance(value, int | float) else "-"


def size_rows(prices: pd.DataFrame, args: argparse.Namespace, solving: bool) -> list[list[str]]:
    """Table 1: the fleet sizes."""
    base = example_document()
    fleets = [("2 models", base)] + ([] if args.quick else [("4 models", with_extra_models(base))])
    rows = []
    for label, document in fleets:
        document = dict(document, quotas=every_offer_quotas(prices, document, args.offer_quota))
        for survive in ("none", "region"):
            fleet = fleet_document(prices, document, survive=survive, time_limit_s=args.time_limit)
            row = [
                label,
                survive,
                str(len(fleet["pools"])),
                str(len(fleet.get("quotas", []))),
            ]
            if not solving:
                rows.append(row + ["-"] * 7 + ["not solved: no fleet solver"])
                continue
            print(f"fleet bench: {label}, survive {survive} ...", file=sys.stderr, flush=True)
            plan, wall_s = solve_document(fleet, "exact")
            cost_per_token = plan.get("cost_per_token")
            rows.append(
                [
                    *row,
                    str(plan.get("configurations", "-")),
                    _seconds(plan.get("build_seconds")),
                    _seconds(plan.get("solve_seconds")),
                    _seconds(wall_s),
                    _money(plan.get("cost_per_hour")),
                    f"{float(cost_per_token) * 1e6:.3f}"
                    if isinstance(cost_per_token, int | float)
                    else "-",
                    str(plan.get("gpus", "-")),
                    str(plan.get("status")),
                ]
            )
    return rows


def comparison_rows(
    prices: pd.DataFrame, args: argparse.Namespace
) -> tuple[list[list[str]], list[str]]:
    """Table 2: exact resilient vs exact unconstrained vs all on-demand vs SpotHedge-like."""
    document = example_document()
    resilient = useful_equals_demand(
        fleet_document(prices, document, survive="region", time_limit_s=args.time_limit)
    )
    free = copy.deepcopy(resilient)
    free["solver"]["survive_spot_loss"] = "none"
    on_demand = copy.deepcopy(free)
    on_demand["pools"] = [p for p in free["pools"] if p["market"] == "on-demand"]
    on_demand["quotas"] = [
        q
        for q in free.get("quotas", [])
        if sum(
            all(q.get(k) in (None, p[k]) for k in ("cloud", "region", "gpu", "market"))
            for p in on_demand["pools"]
        )
        > 0
    ]
    pools = {p["id"]: p for p in resilient["pools"]}
    demand = {m["name"]: float(m["demand_tokens_per_s"]) for m in resilient["models"]}
    rows: list[list[str]] = []
    reference: float | None = None
    for label, fleet in (
        ("exact, survives any region's spot loss", resilient),
        ("exact, no resilience", free),
        ("(a) all on-demand (exact)", on_demand),
    ):
        print(f"fleet bench: {label} ...", file=sys.stderr, flush=True)
        plan, wall_s = solve_document(fleet, "exact")
        groups = plan.get("replicas", [])
        cost = float(plan["cost_per_hour"]) if groups else None
        if label.startswith("exact, survives"):
            reference = cost
        rows.append(
            _comparison_row(
                label, plan.get("status"), cost, reference, groups, pools, demand, wall_s
            )
        )
    print("fleet bench: (b) SpotHedge-like rule ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    groups, notes = spothedge_rule(free)
    wall_s = time.perf_counter() - started
    cost = plan_cost(groups, pools) if groups else None
    rows.append(
        _comparison_row(
            "(b) SpotHedge-like rule", "rule", cost, reference, groups, pools, demand, wall_s
        )
    )
    return rows, notes


def _comparison_row(
    label: str,
    status: Any,
    cost: float | None,
    reference: float | None,
    groups: Sequence[Mapping[str, Any]],
    pools: Mapping[str, Mapping[str, Any]],
    demand: Mapping[str, float],
    wall_s: float,
) -> list[str]:
    versus = f"{(cost / reference - 1) * 100:+.1f} %" if cost and reference else "-"
    left = worst_spot_loss_share(groups, pools, demand) if groups else 0.0
    return [
        label,
        str(status),
        _money(cost),
        versus,
        f"{spot_share(groups, pools) * 100:.0f} %" if groups else "-",
        f"{left * 100:.0f} %",
        _seconds(wall_s),
    ]


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main(argv: Sequence[str] | None = None) -> int:
    """Build (and, with the fleet solver, solve) the bench fleets; print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two-model rows only")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per solve")
    parser.add_argument("--offer-quota", type=int, default=16, help="GPUs per offer (table 1)")
    parser.add_argument("--out", metavar="FILE", help="also write the tables to FILE")
    args = parser.parse_args(argv)
    prices = fetch_prices("snapshot")
    solving = fleet_solver_present()
    load_before = os.getloadavg()[0]
    parts = [
        "## Fleet sizes (exact; every bundled AWS/GCP/Azure offer, both markets)",
        "",
        markdown(
            [
                "fleet",
                "survive",
                "pools",
                "quotas",
                "configurations",
                "build s",
                "solve s",
                "wall s",
                "$/h",
                "$/Mtok",
                "GPUs",
                "status",
            ],
            size_rows(prices, args, solving),
        ),
        "",
        f"Target (issue 8): the two-model fleet proven optimal in under {TARGET_SOLVE_S:g} s.",
    ]
    if solving:
        rows, notes = comparison_rows(prices, args)
        parts += [
            "",
            "## Price of resilience (example inventory, useful = demand)",
            "",
            markdown(
                [
                    "plan",
                    "status",
                    "$/h",
                    "vs exact resilient",
                    "spot GPUs",
                    "demand left, worst region's spot lost",
                    "wall s",
                ],
                rows,
            ),
        ]
        parts += [f"- {note}" for note in notes]
    else:
        parts += ["", "The fleet solver is not present: scenarios built, nothing solved."]
    parts += [
        "",
        f"{os.cpu_count()} CPUs; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (other work on the machine slows every timing).",
    ]
    text = "\n".join(parts) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
