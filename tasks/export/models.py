"""Plan model names -> what vLLM serves: the Hugging Face id and the planned KV-cache limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The inventory's models (config/inventory.yaml) are the Llama 3.1 instruct checkpoints; the
# inventory has no `hf_model` field, so the table lives here. Extend it, or pass overrides.
HF_MODELS: dict[str, str] = {
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.1-70b": "meta-llama/Llama-3.1-70B-Instruct",
}


@dataclass(frozen=True)
class ServingLimits:
    """The KV cache the planner reserved per layer: `max_num_seqs` sequences of
    `max_model_len` tokens (the inventory's `kv_cache.batch` and `context_tokens`)."""

    max_model_len: int
    max_num_seqs: int


@dataclass(frozen=True)
class ModelServer:
    """What one model's vLLM servers load and how much context they hold."""

    hf_model: str
    hf_model_known: bool
    limits: ServingLimits | None


def hf_model_for(model: str, overrides: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """The Hugging Face id for a plan model, and whether one was known (else the name itself)."""
    table = {**HF_MODELS, **(overrides or {})}
    return (table[model], True) if model in table else (model, False)


def serving_limits(models: Mapping[str, Any]) -> dict[str, ServingLimits]:
    """Limits per model from the inventory's `ModelSpec`s that carry a KV-cache reserve."""
    limits = {}
    for name, spec in models.items():
        kv = getattr(spec, "kv_cache", None)
        if kv is not None:
            limits[name] = ServingLimits(int(kv.context_tokens), int(kv.batch))
    return limits
