"""Scenario reading: a YAML or JSON document to a typed `Scenario`, every field checked.

The types live in `solver.scenario_types` and are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from solver.documents import DocumentError, load_document
from solver.scenario_types import (
    DEFAULT_TP_DEGREES,
    DEFAULT_TP_EFFICIENCY,
    MARKETS,
    SPOT_LOSS_DOMAINS,
    Model,
    Pool,
    Quota,
    Scenario,
    ScenarioError,
    SolverOptions,
)

__all__ = [
    "DEFAULT_TP_DEGREES",
    "DEFAULT_TP_EFFICIENCY",
    "Model",
    "Pool",
    "Quota",
    "Scenario",
    "ScenarioError",
    "SolverOptions",
    "load_scenario",
    "scenario_from_dict",
]

TOP_LEVEL_FIELDS = ("model", "models", "pools", "quotas", "solver")
MODEL_FIELDS = ("name", "num_layers", "layer_memory_gb", "useful_tokens_per_s")
FLEET_MODEL_FIELDS = (
    "name",
    "num_layers",
    "layer_memory_gb",
    "demand_tokens_per_s",
    "useful_tokens_per_s",
)
POOL_FIELDS = (
    "id",
    "gpu",
    "cloud",
    "region",
    "available",
    "max_tp",
    "price_per_gpu_hour",
    "memory_gb",
    "tokens_per_s",
    "tp_efficiency",
    "market",
)
QUOTA_FIELDS = ("cloud", "region", "gpu", "market", "max_gpus")


# --- loading -------------------------------------------------------------------------------


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario from a YAML or JSON file."""
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    try:  # aliases, repeated keys, deep nesting and oversize refused (solver.documents)
        kind = "json" if path.suffix == ".json" else "yaml"
        document = load_document(text, source=str(path), kind=kind)
    except DocumentError as exc:
        raise ScenarioError(str(exc)) from None
    return scenario_from_dict(document, source=str(path))


def scenario_from_dict(document: Any, source: str = "<scenario>") -> Scenario:
    """Validate a parsed scenario document and apply the contract's defaults."""
    reader = _Reader(source)
    if not isinstance(document, Mapping):
        raise reader.error("", "must be a mapping with model (or models), pools and solver")
    reader.known(document, "", TOP_LEVEL_FIELDS, "field")
    options = _read_options(reader, document.get("solver") or {})
    if "model" in document and "models" in document:
        raise reader.error("", "give either model (one) or models (a list), not both")
    if "models" in document:
        models = _read_models(reader, document.get("models"))
    else:
        model = _read_model(reader, document.get("model"))
        models = (replace(model, demand_tokens_per_s=options.demand_tokens_per_s),)
    pools = _read_pools(reader, document.get("pools"), options, models)
    quotas = _read_quotas(reader, document.get("quotas"), pools)
    _check_every_model_served(reader, models, pools)
    return Scenario(models, pools, options, quotas)


class _Reader:
    """Field checks that raise a ScenarioError naming the file, the row and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, where: str, message: str) -> ScenarioError:
        prefix = f"{self.source}: {where}: " if where else f"{self.source}: "
        return ScenarioError(prefix + message)

    def known(
        self, mapping: Mapping[str, Any], where: str, allowed: tuple[str, ...], kind: str
    ) -> None:
        """Refuse keys outside `allowed`, naming the first and listing the allowed ones."""
        unknown = sorted(str(key) for key in mapping if key not in allowed)
        if unknown:
            raise self.error(where, f"unknown {kind} {unknown[0]!r}; allowed: {', '.join(allowed)}")

    def choice(
        self,
        mapping: Mapping[str, Any],
        key: str,
        where: str,
        choices: tuple[str, ...],
        default: Any,
    ) -> Any:
        value = mapping.get(key)
        if value is None:
            return default
        if value not in choices:
            raise self.error(where, f"{key} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def number(
        self,
        mapping: Mapping[str, Any],
        key: str,
        where: str,
        *,
        positive: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
        integer: bool = False,
        default: Any = ...,
    ) -> Any:
        if key not in mapping or mapping[key] is None:
            if default is ...:
                raise self.error(where, f"{key} is required")
            return default
        value = _yaml_exponent_number(mapping[key])
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(where, f"{key} must be {kind}, got {value!r}")
        if not math.isfinite(value):
            raise self.error(where, f"{key} must be finite, got {value!r}")
        if integer and value != int(value):
            raise self.error(where, f"{key} must be {kind}, got {value!r}")
        if positive and value <= 0:
            raise self.error(where, f"{key} must be > 0, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(where, f"{key} must be >= {minimum:g}, got {value!r}")
        if maximum is not None and value > maximum:
            raise self.error(where, f"{key} must be <= {maximum:g}, got {value!r}")
        return int(value) if integer else float(value)

    def text(self, mapping: Mapping[str, Any], key: str, where: str) -> str:
        value = mapping.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise self.error(where, f"{key} is required")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.error(where, f"{key} must be text, got {value!r}")
        return str(value)

    def efficiency_map(self, raw: Any, where: str, key: str) -> dict[int, float]:
        if not isinstance(raw, Mapping) or not raw:
            raise self.error(where, f"{key} must be a non-empty map degree -> efficiency")
        result: dict[int, float] = {}
        for degree_raw, efficiency in raw.items():
            try:
                degree = int(degree_raw)
            except (TypeError, ValueError):
                raise self.error(
                    where, f"{key} degree must be an integer, got {degree_raw!r}"
                ) from None
            if degree < 1 or str(degree) != str(degree_raw).strip():
                raise self.error(where, f"{key} degree must be an integer >= 1, got {degree_raw!r}")
            value = self.number({"v": efficiency}, "v", where, positive=True, maximum=1.0)
            result[degree] = value
        return result


def _yaml_exponent_number(value: Any) -> Any:
    """PyYAML (YAML 1.1) reads `1e7` as text; take such exponent forms as the number meant."""
    if isinstance(value, str) and "e" in value.lower():
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _read_model(reader: _Reader, raw: Any, where: str = "model") -> Model:
    if not isinstance(raw, Mapping):
        raise reader.error(where, "is required and must be a mapping")
    fleet = where != "model"
    reader.known(raw, where, FLEET_MODEL_FIELDS if fleet else MODEL_FIELDS, "field")
    name = reader.text(raw, "name", where) if fleet else str(raw.get("name", "model"))
    return Model(
        name=name,
        num_layers=reader.number(raw, "num_layers", where, integer=True, minimum=1),
        layer_memory_gb=reader.number(raw, "layer_memory_gb", where, positive=True),
        demand_tokens_per_s=reader.number(
            raw, "demand_tokens_per_s", where, minimum=0.0, default=0.0
        ),
        useful_tokens_per_s=reader.number(
            raw, "useful_tokens_per_s", where, positive=True, default=None
        ),
    )


def _read_models(reader: _Reader, raw: Any) -> tuple[Model, ...]:
    if not isinstance(raw, list) or not raw:
        raise reader.error("models", "must be a non-empty list")
    models: list[Model] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(raw):
        label = entry.get("name") if isinstance(entry, Mapping) else None
        where = f"models[{index}]" + (f" ({label})" if label else "")
        model = _read_model(reader, entry, where)
        if model.name in seen:
            raise reader.error(where, f"name {model.name!r} repeats models[{seen[model.name]}]")
        seen[model.name] = index
        models.append(model)
    return tuple(models)


def _read_options(reader: _Reader, raw: Any) -> SolverOptions:
    where = "solver"
    if not isinstance(raw, Mapping):
        raise reader.error(where, "must be a mapping")
    reader.known(raw, where, tuple(SolverOptions.__dataclass_fields__), "option")
    degrees_raw = raw.get("tp_degrees", list(DEFAULT_TP_DEGREES))
    if not isinstance(degrees_raw, list) or not degrees_raw:
        raise reader.error(where, f"tp_degrees must be a non-empty list, got {degrees_raw!r}")
    degrees = tuple(
        sorted(
            {
                reader.number({"v": d}, "v", f"{where}.tp_degrees", integer=True, minimum=1)
                for d in degrees_raw
            }
        )
    )
    efficiency = reader.efficiency_map(
        raw.get("tp_efficiency", dict(DEFAULT_TP_EFFICIENCY)), where, "tp_efficiency"
    )
    homogeneous = raw.get("homogeneous_replicas", False)
    if not isinstance(homogeneous, bool):
        raise reader.error(
            where, f"homogeneous_replicas must be true or false, got {homogeneous!r}"
        )
    budget = reader.number(raw, "budget_per_hour", where, positive=True, default=None)
    target = reader.number(raw, "target_cost_per_token", where, positive=True, default=None)
    return SolverOptions(
        tp_degrees=degrees,
        tp_efficiency=efficiency,
        max_stages=reader.number(raw, "max_stages", where, integer=True, minimum=1, default=8),
        memory_utilization=reader.number(
            raw, "memory_utilization", where, positive=True, maximum=1.0, default=0.9
        ),
        homogeneous_replicas=homogeneous,
        demand_tokens_per_s=reader.number(
            raw, "demand_tokens_per_s", where, minimum=0.0, default=0.0
        ),
        budget_per_hour=budget,
        cost_throughput_weight=reader.number(
            raw, "cost_throughput_weight", where, minimum=0.0, default=0.95
        ),
        target_cost_per_token=target,
        max_iterations=reader.number(
            raw, "max_iterations", where, integer=True, minimum=1, default=5
        ),
        time_limit_s=reader.number(raw, "time_limit_s", where, positive=True, default=None),
        mip_rel_gap=reader.number(raw, "mip_rel_gap", where, minimum=0.0, default=None),
        survive_spot_loss=reader.choice(
            raw, "survive_spot_loss", where, SPOT_LOSS_DOMAINS, default="none"
        ),
        survive_fraction=reader.number(
            raw, "survive_fraction", where, positive=True, maximum=1.0, default=1.0
        ),
    )


def _read_pools(
    reader: _Reader, raw: Any, options: SolverOptions, models: tuple[Model, ...]
) -> tuple[Pool, ...]:
    if not isinstance(raw, list) or not raw:
        raise reader.error("pools", "must be a non-empty list")
    if options.cost_throughput_weight >= 1.0:
        raise reader.error(
            "solver", f"cost_throughput_weight must be < 1, got {options.cost_throughput_weight!r}"
        )
    names = tuple(model.name for model in models)
    pools: list[Pool] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(raw):
        label = entry.get("id") if isinstance(entry, Mapping) else None
        where = f"pools[{index}]" + (f" ({label})" if label else "")
        if not isinstance(entry, Mapping):
            raise reader.error(where, "must be a mapping")
        reader.known(entry, where, POOL_FIELDS, "field")
        pool_id = reader.text(entry, "id", where)
        if pool_id in seen:
            raise reader.error(where, f"id {pool_id!r} repeats pools[{seen[pool_id]}]")
        seen[pool_id] = index
        pools.append(
            Pool(
                id=pool_id,
                gpu=reader.text(entry, "gpu", where),
                cloud=reader.text(entry, "cloud", where),
                region=reader.text(entry, "region", where),
                available=reader.number(entry, "available", where, integer=True, minimum=0),
                max_tp=reader.number(entry, "max_tp", where, integer=True, minimum=1),
                price_per_gpu_hour=reader.number(entry, "price_per_gpu_hour", where, positive=True),
                memory_gb=reader.number(entry, "memory_gb", where, positive=True),
                tokens_per_s=_read_rates(reader, entry, where, names),
                tp_efficiency=_read_pool_efficiency(
                    reader, entry.get("tp_efficiency"), where, names
                ),
                market=reader.choice(entry, "market", where, MARKETS, default="on-demand"),
            )
        )
    return tuple(pools)


def _read_rates(
    reader: _Reader, entry: Mapping[str, Any], where: str, names: tuple[str, ...]
) -> float | dict[str, float]:
    """`tokens_per_s`: one number, or a map model name -> number over known models."""
    raw = entry.get("tokens_per_s")
    if not isinstance(raw, Mapping):
        return reader.number(entry, "tokens_per_s", where, positive=True)
    if not raw:
        raise reader.error(
            where, "tokens_per_s must be a number or a non-empty map model -> number"
        )
    rates: dict[str, float] = {}
    for name, value in raw.items():
        if str(name) not in names:
            raise reader.error(
                where, f"tokens_per_s names unknown model {name!r}; models: {', '.join(names)}"
            )
        rates[str(name)] = reader.number(
            {"v": value}, "v", f"{where}: tokens_per_s.{name}", positive=True
        )
    return rates


def _read_pool_efficiency(
    reader: _Reader, raw: Any, where: str, names: tuple[str, ...]
) -> dict[int, float] | dict[str, dict[int, float]] | None:
    """`tp_efficiency`: a map degree -> efficiency, or model name -> (degree -> efficiency)."""
    if raw is None:
        return None
    if isinstance(raw, Mapping) and raw and all(isinstance(v, Mapping) for v in raw.values()):
        by_model: dict[str, dict[int, float]] = {}
        for name, table in raw.items():
            if str(name) not in names:
                raise reader.error(
                    where, f"tp_efficiency names unknown model {name!r}; models: {', '.join(names)}"
                )
            by_model[str(name)] = reader.efficiency_map(table, where, f"tp_efficiency.{name}")
        return by_model
    return reader.efficiency_map(raw, where, "tp_efficiency")


def _read_quotas(reader: _Reader, raw: Any, pools: tuple[Pool, ...]) -> tuple[Quota, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise reader.error("quotas", "must be a list")
    quotas: list[Quota] = []
    for index, entry in enumerate(raw):
        where = f"quotas[{index}]"
        if not isinstance(entry, Mapping):
            raise reader.error(where, "must be a mapping")
        reader.known(entry, where, QUOTA_FIELDS, "field")
        fields = {
            key: (reader.text(entry, key, where) if entry.get(key) is not None else None)
            for key in ("cloud", "region", "gpu")
        }
        market = reader.choice(entry, "market", where, MARKETS, default=None)
        quota = Quota(
            cloud=fields["cloud"],
            region=fields["region"],
            gpu=fields["gpu"],
            market=market,
            max_gpus=reader.number(entry, "max_gpus", where, integer=True, minimum=0),
        )
        if not any(quota.matches(pool) for pool in pools):
            raise reader.error(
                f"{where} ({quota.label})", "matches no pool (cloud, region, gpu, market)"
            )
        quotas.append(quota)
    return tuple(quotas)


def _check_every_model_served(
    reader: _Reader, models: tuple[Model, ...], pools: tuple[Pool, ...]
) -> None:
    """A model whose rate no pool gives can never be placed: bad input, not infeasibility."""
    if len(models) == 1 and not any(isinstance(p.tokens_per_s, Mapping) for p in pools):
        return
    for index, model in enumerate(models):
        if not any(pool.rate(model.name) is not None for pool in pools):
            where = f"models[{index}] ({model.name})" if len(models) > 1 else "model"
            raise reader.error(where, "no pool gives a tokens_per_s for this model")
