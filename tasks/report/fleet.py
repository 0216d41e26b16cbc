"""Report sections read from a fleet plan's JSON (CONTRACT.md): per model and in total, the
capacity each pool and quota has left, and the price of resilience against spot loss.

Pure functions of plan JSON dicts: a plan missing a block (a pre-fleet plan has no `models`,
`capacity` or `resilience`) gives no section rather than an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tasks.report.blocks import (
    MISSING,
    Section,
    finite_number,
    para,
    rate,
    relative_change,
    signed_pct,
    table,
    usd,
    usd_per_mtoken,
)

SECONDS_PER_HOUR = 3600.0
DOMAIN_WORDS = {"region": "region", "cloud": "cloud"}
MAX_CAPACITY_ROWS = 40  # pools in use and quotas; the rest are counted, not listed

PlanJson = Mapping[str, Any]


def _int_text(value: Any) -> str:
    number = finite_number(value)
    return MISSING if number is None else f"{int(number):,}"


def _pct(fraction: float | None) -> str:
    return MISSING if fraction is None else f"{fraction * 100:.0f}%"


def cost_per_token(plan: PlanJson | None) -> float | None:
    """The plan's $/token: its own field, else $/h over 3600 × useful (or all) tokens/s."""
    if not plan:
        return None
    stated = finite_number(plan.get("cost_per_token"))
    if stated is not None:
        return stated
    cost = finite_number(plan.get("cost_per_hour"))
    tokens = finite_number(plan.get("useful_tokens_per_s"))
    tokens = tokens if tokens is not None else finite_number(plan.get("tokens_per_s"))
    if cost is None or not tokens:
        return None
    return cost / (SECONDS_PER_HOUR * tokens)


def is_fleet_plan(plan: PlanJson | None) -> bool:
    """A plan in the fleet contract's shape (it lists its models)."""
    return bool(plan) and isinstance(plan.get("models"), list)


# -- per model and in total ------------------------------------------------------------------


def fleet_rows(plan: PlanJson) -> list[list[str]]:
    """One row per model and one for the fleet: demand, tokens/s, useful, $/h, $/Mtok, GPUs."""
    rows = []
    for model in plan.get("models") or []:
        rows.append(
            [
                str(model.get("name", MISSING)),
                rate(finite_number(model.get("demand_tokens_per_s"))),
                rate(finite_number(model.get("tokens_per_s"))),
                rate(finite_number(model.get("useful_tokens_per_s", model.get("tokens_per_s")))),
                usd(finite_number(model.get("cost_per_hour"))),
                usd_per_mtoken(cost_per_token(model)),
                _int_text(model.get("gpus")),
            ]
        )
    rows.append(
        [
            "fleet (total)",
            rate(sum(finite_number(m.get("demand_tokens_per_s")) or 0 for m in plan["models"])),
            rate(finite_number(plan.get("tokens_per_s"))),
            rate(finite_number(plan.get("useful_tokens_per_s", plan.get("tokens_per_s")))),
            usd(finite_number(plan.get("cost_per_hour"))),
            usd_per_mtoken(cost_per_token(plan)),
            _int_text(plan.get("gpus")),
        ]
    )
    return rows


def fleet_section(plan: PlanJson | None) -> Section | None:
    """Tonight's exact fleet plan per model and in total; None for a pre-fleet plan."""
    if not is_fleet_plan(plan):
        return None
    assert plan is not None
    return Section(
        "Fleet",
        (
            para(
                "Every model shares the same GPUs and quotas. Useful tokens/s are those that "
                "count in the fleet's $/token (a model's useful_tokens_per_s caps them); "
                "the fleet's $ per million tokens is its $/hour over its useful tokens."
            ),
            table(
                [
                    "model",
                    "demand (tokens/s)",
                    "tokens/s",
                    "useful tokens/s",
                    "$/hour",
                    "$ per million tokens",
                    "GPUs",
                ],
                fleet_rows(plan),
            ),
        ),
    )


# -- capacity ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """One pool or quota of the plan's capacity block: GPUs used of GPUs allowed."""

    kind: str  # "pool" or "quota"
    name: str
    market: str
    used_gpus: int
    limit_gpus: int | None  # None: the pool's availability is not capped

    @property
    def binding(self) -> bool:
        return self.limit_gpus is not None and self.used_gpus >= self.limit_gpus

    def describe(self) -> str:
        """e.g. `quota nebius/*/*/* (16 of 16 GPUs)`."""
        return f"{self.kind} {self.name} ({self.used_gpus} of {_int_text(self.limit_gpus)} GPUs)"


def limits(plan: PlanJson | None) -> list[Limit]:
    """Every pool and quota of the plan's capacity block, in its order."""
    capacity = (plan or {}).get("capacity") or {}
    found = []
    for pool in capacity.get("pools") or []:
        found.append(
            Limit(
                "pool",
                str(pool.get("pool")),
                str(pool.get("market") or ""),
                int(finite_number(pool.get("used_gpus")) or 0),
                _optional_int(pool.get("available_gpus")),
            )
        )
    for quota in capacity.get("quotas") or []:
        found.append(
            Limit(
                "quota",
                str(quota.get("label")),
                str(quota.get("market") or "*"),
                int(finite_number(quota.get("used_gpus")) or 0),
                _optional_int(quota.get("max_gpus")),
            )
        )
    return found


def _optional_int(value: Any) -> int | None:
    number = finite_number(value)
    return None if number is None else int(number)


def binding_limits(plan: PlanJson | None) -> list[Limit]:
    """The pools and quotas the plan uses to the last GPU: what keeps it from being cheaper."""
    return [limit for limit in limits(plan) if limit.binding]


def capacity_section(plan: PlanJson | None) -> Section | None:
    """Each pool in use and each quota: used / available, the binding ones named first."""
    found = limits(plan)
    if not found:
        return None
    shown = [limit for limit in found if limit.kind == "quota" or limit.used_gpus > 0]
    shown.sort(key=lambda limit: (not limit.binding, limit.kind != "quota", limit.name))
    rows = [
        [
            limit.kind,
            limit.name,
            limit.market or MISSING,
            str(limit.used_gpus),
            _int_text(limit.limit_gpus) if limit.limit_gpus is not None else "no cap",
            "binding" if limit.binding else "",
        ]
        for limit in shown[:MAX_CAPACITY_ROWS]
    ]
    binding = [limit.describe() for limit in found if limit.binding]
    idle = sum(1 for limit in found if limit.kind == "pool" and limit.used_gpus == 0)
    notes = [
        "Binding (used to the last GPU): " + "; ".join(binding) + "."
        if binding
        else "Nothing binds: every pool and quota has GPUs to spare.",
        f" {idle} pool(s) the plan does not use are not listed." if idle else "",
    ]
    if len(shown) > MAX_CAPACITY_ROWS:
        notes.append(f" {len(shown) - MAX_CAPACITY_ROWS} more row(s) left out.")
    return Section(
        "Capacity",
        (
            para(*notes),
            table(["kind", "pool or quota", "market", "GPUs used", "GPUs available", ""], rows),
        ),
    )


def binding_line(plan: PlanJson | None) -> str | None:
    """One line for Slack naming the binding pools and quotas, None when nothing binds."""
    binding = binding_limits(plan)
    if not binding:
        return None
    return "Binding: " + "; ".join(limit.describe() for limit in binding)


# -- the price of resilience -----------------------------------------------------------------


def spot_share(plan: PlanJson | None) -> float | None:
    """Share of the plan's GPUs rented on spot: the resilience block's, else from the stages."""
    if not plan:
        return None
    stated = finite_number((plan.get("resilience") or {}).get("spot_share"))
    if stated is not None:
        return stated
    spot = total = 0
    for replica in plan.get("replicas") or []:
        count = int(finite_number(replica.get("count")) or 1)
        for stage in replica.get("stages") or []:
            gpus = count * int(finite_number(stage.get("tp")) or 0)
            total += gpus
            if stage.get("market") == "spot":
                spot += gpus
    return spot / total if total else None


def _domain_of(pool: str, kind: str) -> str:
    parts = pool.split("/")
    return "/".join(parts[:2] if kind == "region" else parts[:1])


def tokens_left(plan: PlanJson, domain: str, kind: str) -> dict[str, float]:
    """Per model: tokens/s of the plan's replicas with no spot stage in `domain`."""
    left: dict[str, float] = {}
    for replica in plan.get("replicas") or []:
        model = str(replica.get("model", ""))
        left.setdefault(model, 0.0)
        exposed = any(
            stage.get("market") == "spot" and _domain_of(str(stage.get("pool")), kind) == domain
            for stage in replica.get("stages") or []
        )
        if not exposed:
            count = finite_number(replica.get("count")) or 1
            left[model] += count * (finite_number(replica.get("tokens_per_s")) or 0.0)
    return left


@dataclass(frozen=True)
class Resilience:
    """The exact fleet plan with and without the spot-loss constraint, side by side."""

    resilient: PlanJson
    unconstrained: PlanJson | None

    @property
    def block(self) -> Mapping[str, Any]:
        return self.resilient.get("resilience") or {}

    @property
    def kind(self) -> str:
        return str(self.block.get("domain_kind", "none"))

    @property
    def cost_per_hour_difference(self) -> float | None:
        with_c = finite_number(self.resilient.get("cost_per_hour"))
        without_c = finite_number((self.unconstrained or {}).get("cost_per_hour"))
        return None if with_c is None or without_c is None else with_c - without_c

    @property
    def cost_per_token_change(self) -> float | None:
        return relative_change(cost_per_token(self.unconstrained), cost_per_token(self.resilient))

    def worst_left_fraction(self) -> float | None:
        """The least tokens/s left over demand, over every domain and model (1.0 = all)."""
        fractions = [
            left / demand
            for _domain, model, demand, _required, left, _without in self.domain_rows()
            if demand and left is not None
        ]
        return min(fractions) if fractions else None

    def domain_rows(
        self,
    ) -> list[tuple[str, str, float, float | None, float | None, float | None]]:
        """(domain, model, demand, required, left with, left without the constraint)."""
        rows = []
        for domain in self.block.get("domains") or []:
            name = str(domain.get("domain"))
            without = tokens_left(self.unconstrained, name, self.kind) if self.unconstrained else {}
            for model in domain.get("models") or []:
                model_name = str(model.get("name"))
                rows.append(
                    (
                        name,
                        model_name,
                        finite_number(model.get("demand_tokens_per_s")) or 0.0,
                        finite_number(model.get("required_tokens_per_s")),
                        finite_number(model.get("tokens_per_s_left")),
                        without.get(model_name, 0.0) if self.unconstrained else None,
                    )
                )
        return rows


def _figures_row(name: str, plan: PlanJson | None) -> list[str]:
    plan = plan or {}
    return [
        name,
        str(plan.get("status", MISSING)),
        usd(finite_number(plan.get("cost_per_hour"))),
        usd_per_mtoken(cost_per_token(plan)),
        _int_text(plan.get("gpus")),
        _pct(spot_share(plan)),
    ]


def _share_of_demand(left: float | None, demand: float) -> str:
    if left is None:
        return MISSING
    return f"{rate(left)} ({left / demand:.0%})" if demand else rate(left)


def resilience_section(
    resilient: PlanJson | None, unconstrained: PlanJson | None
) -> Section | None:
    """What surviving a domain's spot loss costs, and what each loss would leave per model."""
    if not resilient or not resilient.get("resilience"):
        return None
    view = Resilience(resilient, unconstrained)
    kind = DOMAIN_WORDS.get(view.kind, view.kind)
    fraction = finite_number(view.block.get("fraction"))
    difference = view.cost_per_hour_difference
    blocks: list[Any] = [
        para(
            f"Tonight's plan keeps at least {_pct(fraction)} of each model's demand when any "
            f"one {kind}'s spot capacity vanishes at once (survive_spot_loss: {view.kind}). "
            "The same exact optimisation without that constraint gives the cheapest plan "
            "that ignores the risk; the difference is what the insurance costs."
        ),
        table(
            ["plan", "status", "$/hour", "$ per million tokens", "GPUs", "spot share (GPUs)"],
            [
                _figures_row("with the constraint (tonight)", resilient),
                _figures_row("without the constraint", unconstrained),
                [
                    "difference",
                    "",
                    (f"+{usd(difference)}" if difference >= 0 else f"-{usd(-difference)}")
                    if difference is not None
                    else MISSING,
                    signed_pct(view.cost_per_token_change),
                    "",
                    "",
                ],
            ],
            "The price of resilience",
        ),
    ]
    rows = [
        [
            domain,
            model,
            rate(demand),
            rate(required),
            _share_of_demand(left, demand),
            _share_of_demand(without, demand) if unconstrained is not None else MISSING,
        ]
        for domain, model, demand, required, left, without in view.domain_rows()
    ]
    if rows:
        blocks.append(
            table(
                [
                    f"{kind} whose spot capacity is lost",
                    "model",
                    "demand (tokens/s)",
                    "required (tokens/s)",
                    "left (tonight's plan)",
                    "left (without the constraint)",
                ],
                rows,
                "What is left of each model's throughput",
            )
        )
    else:
        blocks.append(para(f"The plan holds no spot pool: no {kind} loss touches it."))
    return Section("Price of resilience", tuple(blocks))


def resilience_line(resilient: PlanJson | None, unconstrained: PlanJson | None) -> str | None:
    """One line for Slack: the insurance's cost, the spot share and the worst loss."""
    if not resilient or not resilient.get("resilience"):
        return None
    view = Resilience(resilient, unconstrained)
    kind = DOMAIN_WORDS.get(view.kind, view.kind)
    difference = view.cost_per_hour_difference
    if difference is None:
        cost = "the plan without it could not be priced"
    else:
        sign = "+" if difference >= 0 else "-"
        cost = (
            f"{sign}{usd(abs(difference))}/h ({signed_pct(view.cost_per_token_change)} $/token): "
            f"{usd(finite_number(resilient.get('cost_per_hour')))}/h against "
            f"{usd(finite_number((unconstrained or {}).get('cost_per_hour')))}/h without it"
        )
    worst = view.worst_left_fraction()
    worst_text = (
        f"; the worst {kind} loss leaves {worst:.0%} of a model's demand"
        if worst is not None
        else ""
    )
    return (
        f"Surviving the loss of any {kind}'s spot capacity costs {cost}; "
        f"spot share {_pct(spot_share(resilient))} of GPUs{worst_text}"
    )


def fleet_sections(exact: PlanJson | None, unconstrained: PlanJson | None = None) -> list[Section]:
    """The fleet, capacity and resilience sections the plan's JSON supports, in that order."""
    found = [
        fleet_section(exact),
        capacity_section(exact),
        resilience_section(exact, unconstrained),
    ]
    return [section for section in found if section is not None]


def fleet_slack_lines(
    exact: PlanJson | None, unconstrained: PlanJson | None = None
) -> Sequence[str]:
    """Plain lines (escaped by the caller) for the Slack message."""
    lines = []
    binding = binding_line(exact)
    if binding:
        lines.append(binding)
    resilience = resilience_line(exact, unconstrained)
    if resilience:
        lines.append(resilience)
    return lines
