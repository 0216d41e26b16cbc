"""Plan model names -> the Hugging Face model ids vLLM loads."""

from __future__ import annotations

from collections.abc import Mapping

# The inventory's models (config/inventory.yaml) are the Llama 3.1 instruct checkpoints; the
# inventory has no `hf_model` field, so the table lives here. Extend it, or pass overrides.
HF_MODELS: dict[str, str] = {
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.1-70b": "meta-llama/Llama-3.1-70B-Instruct",
}


def hf_model_for(model: str, overrides: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """The Hugging Face id for a plan model, and whether one was known (else the name itself)."""
    table = {**HF_MODELS, **(overrides or {})}
    return (table[model], True) if model in table else (model, False)
