"""Canonical JSON and the hashes the store keys on: plan placement, price table, run inputs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

PlanJson = Mapping[str, Any] | str
"""A plan as the spec's command-line JSON object, or its JSON text."""


def canonical_json(value: Any) -> str:
    """JSON text with sorted keys and no spaces: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stable_hash(value: Any) -> str:
    """SHA-256 hex digest of the canonical JSON of a JSON-able value (e.g. run inputs)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def plan_as_dict(plan: PlanJson) -> dict[str, Any]:
    """The plan as a dict, parsing JSON text when given text."""
    parsed = json.loads(plan) if isinstance(plan, str) else dict(plan)
    if not isinstance(parsed, dict):
        raise ValueError("a plan must be a JSON object")
    return parsed


def _stage_key(stage: Mapping[str, Any]) -> dict[str, Any]:
    key = {
        "pool": str(stage["pool"]),
        "gpu": str(stage.get("gpu", "")),
        "tp": int(stage["tp"]),
        "layers": int(stage["layers"]),
    }
    if stage.get("market") is not None:  # fleet plans (CONTRACT.md); pre-fleet plans carry none
        key["market"] = str(stage["market"])
    return key


def replica_key(replica: Mapping[str, Any]) -> dict[str, Any]:
    """What one replica places: its model, where, and its stages with their market.

    `model` and `market` enter the key only when the plan gives them, so a pre-fleet plan
    (one model, no markets) keys, and hashes, exactly as it did before the fleet change.
    """
    key: dict[str, Any] = {
        "cloud": str(replica["cloud"]),
        "region": str(replica["region"]),
        "stages": [_stage_key(stage) for stage in replica["stages"]],
    }
    if replica.get("model"):
        key["model"] = str(replica["model"])
    return key


def canonical_placement(plan: PlanJson) -> list[dict[str, Any]]:
    """The plan's replica multiset, regrouped and sorted: only what places GPUs.

    A replica group is keyed by `replica_key` (model, cloud, region, ordered stages of pool,
    gpu, tp, layers, market); figures derived from prices or solve time (tokens_per_s,
    cost_per_hour) are left out.
    """
    counts: dict[str, int] = {}
    keys: dict[str, dict[str, Any]] = {}
    for replica in plan_as_dict(plan).get("replicas") or []:
        key = replica_key(replica)
        text = canonical_json(key)
        keys[text] = key
        counts[text] = counts.get(text, 0) + int(replica.get("count", 1))
    return [{**keys[text], "count": counts[text]} for text in sorted(keys) if counts[text] > 0]


def plan_hash(plan: PlanJson) -> str:
    """Hash of the canonical replica set only: identical placements hash equal."""
    return stable_hash(canonical_placement(plan))


def prices_hash(table: pd.DataFrame) -> str:
    """Hash of a price table's content, independent of row order and index."""
    return hashlib.sha256(price_table_json(table).encode()).hexdigest()


def price_table_json(table: pd.DataFrame) -> str:
    """A price table as pandas table-orient JSON, rows sorted by every column."""
    ordered = table.sort_values(list(table.columns), kind="stable", na_position="last")
    return ordered.reset_index(drop=True).to_json(orient="table", index=False, date_unit="us")
