"""Typed scenario: the model, the GPU pools and the solver options of the placement contract."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solver.documents import DocumentError, load_document

DEFAULT_TP_DEGREES: tuple[int, ...] = (1, 2, 4, 8)
DEFAULT_TP_EFFICIENCY: Mapping[int, float] = {1: 1.0, 2: 0.9, 4: 0.8, 8: 0.7}


class ScenarioError(ValueError):
    """Bad scenario input; the message names the file, the field and the row."""


@dataclass(frozen=True)
class Model:
    name: str
    num_layers: int
    layer_memory_gb: float


@dataclass(frozen=True)
class Pool:
    id: str
    gpu: str
    cloud: str
    region: str
    available: int
    max_tp: int
    price_per_gpu_hour: float
    memory_gb: float
    tokens_per_s: float
    tp_efficiency: Mapping[int, float] | None = None

    @property
    def location(self) -> tuple[str, str]:
        return (self.cloud, self.region)


@dataclass(frozen=True)
class SolverOptions:
    tp_degrees: tuple[int, ...] = DEFAULT_TP_DEGREES
    tp_efficiency: Mapping[int, float] = field(default_factory=lambda: dict(DEFAULT_TP_EFFICIENCY))
    max_stages: int = 8
    memory_utilization: float = 0.9
    homogeneous_replicas: bool = False
    demand_tokens_per_s: float = 0.0
    budget_per_hour: float | None = None
    cost_throughput_weight: float = 0.95
    target_cost_per_token: float | None = None
    max_iterations: int = 5
    time_limit_s: float | None = None
    mip_rel_gap: float | None = None


@dataclass(frozen=True)
class Scenario:
    model: Model
    pools: tuple[Pool, ...]
    solver: SolverOptions

    def pool(self, pool_id: str) -> Pool:
        for pool in self.pools:
            if pool.id == pool_id:
                return pool
        raise KeyError(pool_id)

    def efficiency(self, pool: Pool, tp: int) -> float | None:
        """TP efficiency of `pool` at degree `tp`: the pool's profile where it has one."""
        profile = (
            pool.tp_efficiency if pool.tp_efficiency is not None else self.solver.tp_efficiency
        )
        return profile.get(tp)

    def stage_tokens_per_s(self, pool: Pool, tp: int, layers: int) -> float:
        """Stage rate r = tokens_per_s * (L / n) * t * efficiency, exactly as the contract."""
        efficiency = self.efficiency(pool, tp)
        if efficiency is None:
            raise KeyError(f"no TP efficiency for degree {tp} on pool {pool.id}")
        return pool.tokens_per_s * (self.model.num_layers / layers) * tp * efficiency

    def with_options(self, **changes: Any) -> Scenario:
        """A copy with some solver options replaced."""
        options = {**self.solver.__dict__, **changes}
        return Scenario(self.model, self.pools, SolverOptions(**options))


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
        raise reader.error("", "must be a mapping with model, pools and solver")
    model = _read_model(reader, document.get("model"))
    options = _read_options(reader, document.get("solver") or {})
    pools = _read_pools(reader, document.get("pools"), options)
    return Scenario(model, pools, options)


class _Reader:
    """Field checks that raise a ScenarioError naming the file, the row and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, where: str, message: str) -> ScenarioError:
        prefix = f"{self.source}: {where}: " if where else f"{self.source}: "
        return ScenarioError(prefix + message)

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


def _read_model(reader: _Reader, raw: Any) -> Model:
    if not isinstance(raw, Mapping):
        raise reader.error("model", "is required and must be a mapping")
    return Model(
        name=str(raw.get("name", "model")),
        num_layers=reader.number(raw, "num_layers", "model", integer=True, minimum=1),
        layer_memory_gb=reader.number(raw, "layer_memory_gb", "model", positive=True),
    )


def _read_options(reader: _Reader, raw: Any) -> SolverOptions:
    where = "solver"
    if not isinstance(raw, Mapping):
        raise reader.error(where, "must be a mapping")
    known = set(SolverOptions.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise reader.error(where, f"unknown option {unknown[0]!r}")
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
    )


def _read_pools(reader: _Reader, raw: Any, options: SolverOptions) -> tuple[Pool, ...]:
    if not isinstance(raw, list) or not raw:
        raise reader.error("pools", "must be a non-empty list")
    if options.cost_throughput_weight >= 1.0:
        raise reader.error(
            "solver", f"cost_throughput_weight must be < 1, got {options.cost_throughput_weight!r}"
        )
    pools: list[Pool] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(raw):
        label = entry.get("id") if isinstance(entry, Mapping) else None
        where = f"pools[{index}]" + (f" ({label})" if label else "")
        if not isinstance(entry, Mapping):
            raise reader.error(where, "must be a mapping")
        pool_id = reader.text(entry, "id", where)
        if pool_id in seen:
            raise reader.error(where, f"id {pool_id!r} repeats pools[{seen[pool_id]}]")
        seen[pool_id] = index
        efficiency_raw = entry.get("tp_efficiency")
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
                tokens_per_s=reader.number(entry, "tokens_per_s", where, positive=True),
                tp_efficiency=None
                if efficiency_raw is None
                else reader.efficiency_map(efficiency_raw, where, "tp_efficiency"),
            )
        )
    return tuple(pools)
