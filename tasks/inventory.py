"""The team's inventory: models, GPU types with per-model throughput profiles, and quotas.

File layout (YAML, UTF-8; see `config/inventory.yaml` for a documented example):

    models:
      <model name>:
        num_layers: int >= 1
        # either the derivation fields ...
        params_billion: float > 0
        bytes_per_param: float > 0
        kv_cache: {n_kv_heads: int, head_dim: int, bytes_per_value: float,
                   batch: int, context_tokens: int}        # optional, default no reserve
        # ... or an explicit value (not both):
        layer_memory_gb: float > 0
    gpus:
      <gpu name as the price catalogs spell it>:
        memory_gb: float > 0
        models:
          <model name>: {tokens_per_s: float > 0, source: text,
                         tp_efficiency: {degree: efficiency}}   # tp_efficiency optional
    quotas:
      - {cloud: aws, region: us-east-1, gpu: V100, max_gpus: 16}   # one offer (both markets)
      - {cloud: aws, market: spot, max_gpus: 32}                   # every aws spot pool
      - {cloud: gcp, max_gpus: 32}                                 # every pool of a cloud
    serving:                                                       # optional, fleet-wide
      survive_spot_loss: none | region | cloud
      survive_fraction: float in (0, 1]
      max_spot_interruption: "<5%" | "5-10%" | "10-15%" | "15-20%" | ">20%"

A model's `serving:` holds its solver targets (`demand_tokens_per_s`, `budget_per_hour`,
`max_stages`, `homogeneous_replicas`) and `useful_tokens_per_s` (the fleet's useful-throughput
cap for that model). A quota names `cloud` and any of `region`, `gpu`, `market`; it matches
every pool whose fields equal the ones it gives. In a fleet scenario it caps the GPUs summed
over the pools it matches (`tasks.pools.fleet_scenario`); a one-model scenario caps each pool.

`layer_memory_gb = params_billion * bytes_per_param / num_layers
                   + 2 * n_kv_heads * head_dim * bytes_per_value * batch * context_tokens / 1e9`
(GB = 1e9 bytes). This module checks shape and types (errors name the file and the path,
e.g. `gpus.T4.models.llama-3.1-8b.tokens_per_s`) and bounds every number to `NUMBER_BOUNDS`
(the range is named in the error; the YAML itself is loaded by `solver.documents`: no aliases,
no repeated keys, bounded depth and size). The policy ranges of the fields the inventory suite
checks are applied by `tasks.validation.validate_inventory`, so every offending row is
reported at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solver.documents import MAX_DOCUMENT_BYTES, DocumentError, load_yaml
from tasks.prices.schema import SPOT_INTERRUPTION_BUCKETS

MARKETS: tuple[str, ...] = ("on-demand", "spot")
SPOT_LOSS_DOMAINS: tuple[str, ...] = ("none", "region", "cloud")

BYTES_PER_GB = 1e9


class InventoryError(ValueError):
    """The inventory file cannot be read; the message names the file and the path in it."""

    def __init__(self, file: str, where: str, message: str) -> None:
        self.file = file
        self.where = where
        self.reason = message
        super().__init__(f"{file}: {where}: {message}" if where else f"{file}: {message}")


@dataclass(frozen=True)
class KvCacheReserve:
    """KV cache kept per layer for `batch` sequences of `context_tokens` each."""

    n_kv_heads: int
    head_dim: int
    bytes_per_value: float
    batch: int
    context_tokens: int

    @property
    def gb_per_layer(self) -> float:
        """2 (K and V) x kv heads x head dim x bytes x batch x context, in GB."""
        values = 2 * self.n_kv_heads * self.head_dim * self.batch * self.context_tokens
        return values * self.bytes_per_value / BYTES_PER_GB


@dataclass(frozen=True)
class ModelSpec:
    """A model as the placement contract needs it, plus how its layer memory was derived."""

    name: str
    num_layers: int
    layer_memory_gb: float
    params_billion: float | None = None
    bytes_per_param: float | None = None
    kv_cache: KvCacheReserve | None = None
    serving: Mapping[str, Any] = field(default_factory=dict)  # solver options of its scenario
    useful_tokens_per_s: float | None = None  # fleet $/token counts at most this much

    @property
    def demand_tokens_per_s(self) -> float:
        """The model's throughput floor (its `serving.demand_tokens_per_s`, 0 when unset)."""
        return float(self.serving.get("demand_tokens_per_s", 0.0))

    @property
    def weights_gb(self) -> float | None:
        """Weights of the whole model in GB, when the derivation fields are given."""
        if self.params_billion is None or self.bytes_per_param is None:
            return None
        return self.params_billion * self.bytes_per_param


@dataclass(frozen=True)
class ThroughputProfile:
    """Throughput of one GPU running the whole model (memory ignored), and where it comes from."""

    tokens_per_s: float
    source: str
    tp_efficiency: Mapping[int, float] | None = None


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_gb: float
    profiles: Mapping[str, ThroughputProfile]


@dataclass(frozen=True)
class Quota:
    """GPUs that may be rented in every pool matching the fields given (None matches any)."""

    cloud: str
    max_gpus: int
    region: str | None = None
    gpu: str | None = None
    where: str = ""
    market: str | None = None

    @property
    def per_cloud(self) -> bool:
        """True when only the cloud is named (a cap on every pool of that cloud)."""
        return self.region is None and self.gpu is None and self.market is None

    @property
    def label(self) -> str:
        """`cloud/region/gpu/market`, a field left out written `*`."""
        parts = (self.cloud, self.region, self.gpu, self.market)
        return "/".join(part or "*" for part in parts)

    def matches(self, cloud: str, region: str, gpu: str, market: str | None) -> bool:
        """Whether this quota covers a pool; `market` None (a mixed pool) matches any market."""
        return (
            self.cloud == cloud
            and self.region in (None, region)
            and self.gpu in (None, gpu)
            and (self.market is None or market is None or self.market == market)
        )


# Each fleet solve's wall-clock limit when the inventory sets none: four solves a night, the
# solver serialised, so the solve phase stays under about 10 minutes on a busy 2-core box.
DEFAULT_SOLVE_SECONDS = 120.0
MAX_SOLVE_SECONDS = 3600.0


@dataclass(frozen=True)
class FleetServing:
    """Fleet-wide serving options: spot-loss resilience and the spot interruption ceiling."""

    survive_spot_loss: str = "none"
    survive_fraction: float = 1.0
    max_spot_interruption: str | None = None
    time_limit_s: float = DEFAULT_SOLVE_SECONDS
    given: tuple[str, ...] = ()  # the keys the file sets

    @property
    def max_interruption_rank(self) -> int | None:
        """Index of `max_spot_interruption` in SPOT_INTERRUPTION_BUCKETS (None: no ceiling)."""
        if self.max_spot_interruption in SPOT_INTERRUPTION_BUCKETS:
            return SPOT_INTERRUPTION_BUCKETS.index(self.max_spot_interruption)
        return None


@dataclass(frozen=True)
class Inventory:
    models: Mapping[str, ModelSpec]
    gpus: Mapping[str, GpuSpec]
    quotas: tuple[Quota, ...]
    file: str = "<inventory>"
    serving: FleetServing = field(default_factory=FleetServing)

    def matching_quotas(
        self, cloud: str, region: str, gpu: str, market: str | None = None
    ) -> list[Quota]:
        """The quotas covering a pool (market None: a pool priced from either market)."""
        return [q for q in self.quotas if q.matches(cloud, region, gpu, market)]

    def available_gpus(
        self, cloud: str, region: str, gpu: str, market: str | None = None
    ) -> int | None:
        """GPUs that may be rented in one pool: the smallest quota covering it (an offer's quota
        capped by its cloud's); None when no quota covers it."""
        limits = [q.max_gpus for q in self.matching_quotas(cloud, region, gpu, market)]
        return min(limits) if limits else None


# --- loading -------------------------------------------------------------------------------


def load_inventory(path: str | Path) -> Inventory:
    """Read and type-check an inventory YAML file; raise InventoryError naming file and path."""
    file = str(path)
    try:
        size_bytes = Path(path).stat().st_size
        if size_bytes > MAX_DOCUMENT_BYTES:  # refuse before reading
            raise InventoryError(
                file, "", f"{size_bytes} bytes is more than the {MAX_DOCUMENT_BYTES} supported"
            )
        raw_bytes = Path(path).read_bytes()
    except OSError as exc:
        raise InventoryError(file, "", f"cannot read: {exc.strerror}") from exc
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw_bytes[: exc.start].count(b"\n") + 1
        raise InventoryError(
            file, f"line {line}", f"not UTF-8 (byte 0x{raw_bytes[exc.start]:02x})"
        ) from exc
    try:  # aliases, repeated keys, deep nesting and oversize refused (solver.documents)
        document = load_yaml(text, source=file)
    except DocumentError as exc:
        where = f"line {exc.line}" if exc.line is not None else ""
        raise InventoryError(file, where, exc.reason) from None
    return inventory_from_dict(document, file)


def inventory_from_dict(document: Any, file: str = "<inventory>") -> Inventory:
    """Type-check a parsed inventory document."""
    reader = _Reader(file)
    if not isinstance(document, Mapping):
        raise InventoryError(file, "", "must be a mapping with models, gpus and quotas")
    reader.only_keys(document, "", {"models", "gpus", "quotas", "serving"})
    models_raw = reader.mapping(document, "models", "")
    models = {
        str(name): _read_model(reader, str(name), raw, f"models.{name}")
        for name, raw in models_raw.items()
    }
    gpus_raw = reader.mapping(document, "gpus", "")
    gpus = {
        str(name): _read_gpu(reader, str(name), raw, f"gpus.{name}", models)
        for name, raw in gpus_raw.items()
    }
    quotas_raw = document.get("quotas")
    if not isinstance(quotas_raw, list):
        raise InventoryError(file, "quotas", "is required and must be a list")
    quotas = tuple(_read_quota(reader, raw, f"quotas[{i}]") for i, raw in enumerate(quotas_raw))
    serving = _read_fleet_serving(reader, document.get("serving", {}), "serving")
    return Inventory(models=models, gpus=gpus, quotas=quotas, file=file, serving=serving)


@dataclass(frozen=True)
class Bound:
    """A closed range [low, high], or (low, high] when `low_open`."""

    low: float
    high: float
    low_open: bool = False

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def describe(self) -> str:
        low, high = _number_text(self.low), _number_text(self.high)
        return f"> {low} and <= {high}" if self.low_open else f"between {low} and {high}"


def _number_text(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


# Every number of the file, bounded where it enters. Fields the inventory suite also checks
# (num_layers, layer_memory_gb, memory_gb, tokens_per_s, tp_efficiency, max_gpus,
# useful_tokens_per_s, survive_fraction) get a wider
# range here that keeps the arithmetic finite; the suite then applies the policy range and
# reports every offending row at once.
NUMBER_BOUNDS: dict[str, Bound] = {
    "num_layers": Bound(0, 100_000),
    "layer_memory_gb": Bound(-1e6, 1e6),
    "params_billion": Bound(0, 100_000, low_open=True),
    "bytes_per_param": Bound(0, 64, low_open=True),
    "n_kv_heads": Bound(1, 4096),
    "head_dim": Bound(1, 65_536),
    "bytes_per_value": Bound(0, 64, low_open=True),
    "batch": Bound(1, 1_000_000),
    "context_tokens": Bound(1, 100_000_000),
    "memory_gb": Bound(-1e6, 1e6),
    "tokens_per_s": Bound(-1e9, 1e9),
    "tp_efficiency": Bound(-1e3, 1e3),
    "max_gpus": Bound(-1e9, 1e9),
    "demand_tokens_per_s": Bound(0, 1e9, low_open=True),
    "useful_tokens_per_s": Bound(-1e9, 1e9),
    "survive_fraction": Bound(-1e3, 1e3),
    "budget_per_hour": Bound(0, 1e9, low_open=True),
    "max_stages": Bound(1, 1024),
}


def _short(value: Any) -> str:
    """`repr(value)`, cut to a readable length (a 4,000-digit integer is not)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:12]}…({len(text)} characters)"


class _Reader:
    """Typed field access that raises InventoryError naming the file and the path."""

    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, where: str, message: str) -> InventoryError:
        return InventoryError(self.file, where, message)

    def only_keys(self, raw: Mapping[str, Any], where: str, allowed: set[str]) -> None:
        unknown = sorted(str(key) for key in raw if key not in allowed)
        if unknown:
            path = f"{where}.{unknown[0]}" if where else unknown[0]
            raise self.error(path, f"unknown field (allowed: {', '.join(sorted(allowed))})")

    def mapping(self, raw: Mapping[str, Any], key: str, where: str) -> Mapping[Any, Any]:
        value = raw.get(key)
        path = f"{where}.{key}" if where else key
        if not isinstance(value, Mapping):
            raise self.error(path, "is required and must be a mapping")
        return value

    def number(self, raw: Mapping[str, Any], key: str, where: str, *, integer: bool) -> Any:
        path = f"{where}.{key}"
        if key not in raw or raw[key] is None:
            raise self.error(path, "is required")
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = "an integer" if integer else "a number"
            raise self.error(path, f"must be {kind}, got {_short(value)}")
        if integer and not isinstance(value, int):
            raise self.error(path, f"must be an integer, got {_short(value)}")
        if not integer and not math.isfinite(value):
            raise self.error(path, f"must be a finite number, got {_short(value)}")
        bound = NUMBER_BOUNDS.get(key if isinstance(key, str) else "tp_efficiency")
        if bound is not None and not bound.holds(value):
            raise self.error(path, f"must be {bound.describe()}, got {_short(value)}")
        return int(value) if integer else float(value)

    def text(self, raw: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> Any:
        path = f"{where}.{key}"
        value = raw.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(path, f"must be non-empty text, got {value!r}")
        return value.strip()


def _read_model(reader: _Reader, name: str, raw: Any, where: str) -> ModelSpec:
    if not isinstance(raw, Mapping):
        raise reader.error(where, "must be a mapping")
    derivation = {"params_billion", "bytes_per_param", "kv_cache"}
    reader.only_keys(raw, where, {"num_layers", "layer_memory_gb", "serving"} | derivation)
    num_layers = reader.number(raw, "num_layers", where, integer=True)
    serving = _read_serving(reader, raw.get("serving", {}), f"{where}.serving")
    useful = serving.pop("useful_tokens_per_s", None)
    derived = derivation & set(raw)
    if "layer_memory_gb" in raw:
        if derived:
            raise reader.error(
                f"{where}.layer_memory_gb",
                f"give either layer_memory_gb or {sorted(derived)[0]} and its fields, not both",
            )
        return ModelSpec(
            name,
            num_layers,
            reader.number(raw, "layer_memory_gb", where, integer=False),
            serving=serving,
            useful_tokens_per_s=useful,
        )
    params_billion = reader.number(raw, "params_billion", where, integer=False)
    bytes_per_param = reader.number(raw, "bytes_per_param", where, integer=False)
    kv_cache = (
        _read_kv_cache(reader, raw["kv_cache"], f"{where}.kv_cache") if "kv_cache" in raw else None
    )
    weights_gb_per_layer = params_billion * bytes_per_param / num_layers if num_layers else math.nan
    layer_memory_gb = weights_gb_per_layer + (kv_cache.gb_per_layer if kv_cache else 0.0)
    return ModelSpec(
        name,
        num_layers,
        layer_memory_gb,
        params_billion,
        bytes_per_param,
        kv_cache,
        serving,
        useful,
    )


SERVING_OPTIONS = {
    "demand_tokens_per_s",
    "budget_per_hour",
    "max_stages",
    "homogeneous_replicas",
    "useful_tokens_per_s",
}
FLEET_SERVING_OPTIONS = {
    "survive_spot_loss",
    "survive_fraction",
    "max_spot_interruption",
    "time_limit_s",
}


def _read_serving(reader: _Reader, raw: Any, where: str) -> dict[str, Any]:
    """The model's serving targets (solver options of its scenario) and useful_tokens_per_s."""
    if not isinstance(raw, Mapping):
        raise reader.error(where, "must be a mapping")
    reader.only_keys(raw, where, SERVING_OPTIONS)
    serving: dict[str, Any] = {}
    for key in ("demand_tokens_per_s", "budget_per_hour", "useful_tokens_per_s"):
        if key in raw:
            serving[key] = reader.number(raw, key, where, integer=False)
    if "max_stages" in raw:
        serving["max_stages"] = reader.number(raw, "max_stages", where, integer=True)
    if "homogeneous_replicas" in raw:
        if not isinstance(raw["homogeneous_replicas"], bool):
            raise reader.error(f"{where}.homogeneous_replicas", "must be true or false")
        serving["homogeneous_replicas"] = raw["homogeneous_replicas"]
    return serving


def _read_fleet_serving(reader: _Reader, raw: Any, where: str) -> FleetServing:
    """The fleet-wide `serving:` section; value ranges and names are checked by the GX suite."""
    if not isinstance(raw, Mapping):
        raise reader.error(where, "must be a mapping")
    reader.only_keys(raw, where, FLEET_SERVING_OPTIONS)
    options: dict[str, Any] = {}
    for key in ("survive_spot_loss", "max_spot_interruption"):
        if key in raw:
            options[key] = reader.text(raw, key, where)
    if "survive_fraction" in raw:
        options["survive_fraction"] = reader.number(raw, "survive_fraction", where, integer=False)
    if "time_limit_s" in raw:
        seconds = reader.number(raw, "time_limit_s", where, integer=False)
        if not 1.0 <= seconds <= MAX_SOLVE_SECONDS:
            raise reader.error(
                f"{where}.time_limit_s",
                f"must be between 1 and {MAX_SOLVE_SECONDS:g} s, got {seconds:g}",
            )
        options["time_limit_s"] = seconds
    return FleetServing(**options, given=tuple(sorted(options)))


def _read_kv_cache(reader: _Reader, raw: Any, where: str) -> KvCacheReserve:
    if not isinstance(raw, Mapping):
        raise reader.error(where, "must be a mapping")
    fields = {"n_kv_heads", "head_dim", "bytes_per_value", "batch", "context_tokens"}
    reader.only_keys(raw, where, fields)
    return KvCacheReserve(
        n_kv_heads=reader.number(raw, "n_kv_heads", where, integer=True),
        head_dim=reader.number(raw, "head_dim", where, integer=True),
        bytes_per_value=reader.number(raw, "bytes_per_value", where, integer=False),
        batch=reader.number(raw, "batch", where, integer=True),
        context_tokens=reader.number(raw, "context_tokens", where, integer=True),
    )


def _read_gpu(
    reader: _Reader, name: str, raw: Any, where: str, models: Mapping[str, ModelSpec]
) -> GpuSpec:
    if not isinstance(raw, Mapping):
        raise reader.error(where, "must be a mapping")
    reader.only_keys(raw, where, {"memory_gb", "models"})
    memory_gb = reader.number(raw, "memory_gb", where, integer=False)
    profiles_raw = raw.get("models", {})
    if not isinstance(profiles_raw, Mapping):
        raise reader.error(f"{where}.models", "must be a mapping model name -> profile")
    profiles: dict[str, ThroughputProfile] = {}
    for model_name, profile_raw in profiles_raw.items():
        path = f"{where}.models.{model_name}"
        if str(model_name) not in models:
            raise reader.error(path, f"model {model_name!r} is not defined under models")
        profiles[str(model_name)] = _read_profile(reader, profile_raw, path)
    return GpuSpec(name=name, memory_gb=memory_gb, profiles=profiles)


def _read_profile(reader: _Reader, raw: Any, where: str) -> ThroughputProfile:
    if not isinstance(raw, Mapping):
        raise reader.error(where, "must be a mapping with tokens_per_s and source")
    reader.only_keys(raw, where, {"tokens_per_s", "source", "tp_efficiency"})
    efficiency: dict[int, float] | None = None
    if raw.get("tp_efficiency") is not None:
        efficiency_raw = raw["tp_efficiency"]
        if not isinstance(efficiency_raw, Mapping) or not efficiency_raw:
            raise reader.error(f"{where}.tp_efficiency", "must be a map degree -> efficiency")
        efficiency = {}
        for degree in efficiency_raw:
            if isinstance(degree, bool) or not isinstance(degree, int):
                raise reader.error(
                    f"{where}.tp_efficiency", f"degree must be an integer, got {degree!r}"
                )
            efficiency[degree] = reader.number(
                efficiency_raw, degree, f"{where}.tp_efficiency", integer=False
            )
    return ThroughputProfile(
        tokens_per_s=reader.number(raw, "tokens_per_s", where, integer=False),
        source=reader.text(raw, "source", where),
        tp_efficiency=efficiency,
    )


def _read_quota(reader: _Reader, raw: Any, where: str) -> Quota:
    if not isinstance(raw, Mapping):
        raise reader.error(where, "must be a mapping")
    reader.only_keys(raw, where, {"cloud", "region", "gpu", "market", "max_gpus"})
    return Quota(
        cloud=reader.text(raw, "cloud", where),
        region=reader.text(raw, "region", where, required=False),
        gpu=reader.text(raw, "gpu", where, required=False),
        max_gpus=reader.number(raw, "max_gpus", where, integer=True),
        where=where,
        market=reader.text(raw, "market", where, required=False),
    )
