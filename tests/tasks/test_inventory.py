"""Typed inventory loading: shipped example, derivations, quotas, and errors naming the path."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tasks.inventory import (
    DEFAULT_SOLVE_SECONDS,
    InventoryError,
    inventory_from_dict,
    load_inventory,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "inventory.yaml"
SMALL = ROOT / "tests" / "data" / "inventory" / "small.yaml"
BAD = ROOT / "tests" / "data" / "bad"

# mem_bw_gb_s per GPU as in ../shared/reference/gpu-specs.csv (vendor peak; SXM rows for
# A100/H100/H200, the V100-16GB row for V100). Copied here so the test runs without /work/shared.
MEM_BW_GB_S = {
    "T4": 320, "V100": 897, "V100-32GB": 897, "A10G": 600, "A10": 600, "L4": 300,
    "L40S": 864, "A100": 1555, "A100-80GB": 2039, "H100": 3350, "H200": 4800,
}  # fmt: skip
MEMORY_GB = {
    "T4": 16, "V100": 16, "V100-32GB": 32, "A10G": 24, "A10": 24, "L4": 24,
    "L40S": 48, "A100": 40, "A100-80GB": 80, "H100": 80, "H200": 141,
}  # fmt: skip
K_DECODE = 7.5  # calibrated on LambdaLabsML/vllm-benchmark, see config/README.md


def test_example_inventory_loads_with_derived_layer_memory() -> None:
    inventory = load_inventory(EXAMPLE)
    small, large = inventory.models["llama-3.1-8b"], inventory.models["llama-3.1-70b"]
    kv = 2 * 8 * 128 * 2 * 16 * 4096 / 1e9
    assert small.num_layers == 32 and large.num_layers == 80
    assert small.layer_memory_gb == pytest.approx(8.03 * 2 / 32 + kv)
    assert large.layer_memory_gb == pytest.approx(70.6 * 2 / 80 + kv)
    assert small.layer_memory_gb == pytest.approx(0.7703, abs=1e-4)


def test_example_profiles_follow_the_documented_formula() -> None:
    """Every shipped tokens_per_s equals round(k * mem_bw / weights_gb), as config/README says."""
    inventory = load_inventory(EXAMPLE)
    assert set(inventory.gpus) == set(MEM_BW_GB_S)
    for gpu in inventory.gpus.values():
        assert gpu.memory_gb == MEMORY_GB[gpu.name]
        assert set(gpu.profiles) == set(inventory.models), gpu.name
        for name, profile in gpu.profiles.items():
            weights_gb = inventory.models[name].weights_gb
            assert weights_gb is not None
            expected = round(K_DECODE * MEM_BW_GB_S[gpu.name] / weights_gb)
            assert profile.tokens_per_s == expected, (gpu.name, name)
            assert "estimate" in profile.source
            if profile.tp_efficiency:
                assert profile.tp_efficiency[1] == 1.0
                assert all(0 < e <= 1 for e in profile.tp_efficiency.values())


def test_explicit_layer_memory_and_kv_reserve() -> None:
    inventory = load_inventory(SMALL)
    assert inventory.models["tiny"].layer_memory_gb == 0.5
    derived = inventory.models["derived"]
    assert derived.kv_cache is not None
    assert derived.kv_cache.gb_per_layer == pytest.approx(2 * 8 * 128 * 2 * 1 * 1000 / 1e9)
    assert derived.layer_memory_gb == pytest.approx(0.5 + derived.kv_cache.gb_per_layer)
    assert inventory.gpus["T4"].profiles["tiny"].tp_efficiency == {1: 1.0, 2: 0.8, 4: 0.6}


def test_quota_resolution_offer_cloud_cap_and_missing() -> None:
    inventory = load_inventory(SMALL)
    assert inventory.available_gpus("aws", "us-east-1", "V100") == 10  # 12 capped by aws 10
    assert inventory.available_gpus("aws", "us-east-1", "T4") == 8
    assert inventory.available_gpus("aws", "us-west-2", "T4") == 10  # cloud-only grant
    assert inventory.available_gpus("gcp", "us-central1", "A100") == 0
    assert inventory.available_gpus("gcp", "us-east1", "A100") is None
    assert inventory.available_gpus("lambda", "us-east-1", "H100") is None


@pytest.mark.parametrize(
    ("file", "where", "message"),
    [
        ("inventory-fractional-quota.yaml", "quotas[1].max_gpus", "must be an integer"),
        ("inventory-nan-throughput.yaml", "gpus.T4.models.m.tokens_per_s", "finite"),
        ("inventory-missing-field.yaml", "gpus.T4.memory_gb", "is required"),
        ("inventory-missing-section.yaml", "quotas", "must be a list"),
        ("inventory-duplicate-gpu.yaml", "line 10", "duplicate key 'V100'"),
        ("inventory-unknown-model.yaml", "gpus.T4.models.m2", "not defined under models"),
        ("inventory-string-memory.yaml", "gpus.T4.memory_gb", "must be a number"),
        ("inventory-non-utf8.yaml", "line 13", "not UTF-8"),
        ("inventory-empty.yaml", "", "must be a mapping"),
    ],
)
def test_loader_errors_name_file_and_path(file: str, where: str, message: str) -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory(BAD / file)
    assert caught.value.where == where
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(BAD / file))


@pytest.mark.parametrize(
    ("document", "where", "message"),
    [
        (
            {"models": {"m": {"num_layers": 2, "layer_memory_gb": 1.0, "params_billion": 1.0}}},
            "models.m.layer_memory_gb",
            "not both",
        ),
        ({"models": {"m": {"num_layers": True}}}, "models.m.num_layers", "integer"),
        (
            {"models": {"m": {"num_layers": 2, "layers_memory": 1}}},
            "models.m.layers_memory",
            "unknown",
        ),
        (
            {"models": {}, "gpus": {}, "quotas": [{"cloud": "aws", "zone": "a", "max_gpus": 1}]},
            "quotas[0].zone",
            "unknown field (allowed: cloud, gpu, market, max_gpus, region)",
        ),
        ({"serving": {"survive_spot_los": "region"}}, "serving.survive_spot_los", "unknown"),
        ({"serving": {"survive_fraction": "all"}}, "serving.survive_fraction", "a number"),
        ({"serving": {"survive_spot_loss": 1}}, "serving.survive_spot_loss", "non-empty text"),
        ({"serving": {"time_limit_s": 0.5}}, "serving.time_limit_s", "between 1 and 3600 s"),
        ({"serving": {"time_limit_s": 1e308}}, "serving.time_limit_s", "between 1 and 3600 s"),
        (
            {"models": {"m": {"num_layers": 2, "serving": {"useful_tokens_per_s": "x"}}}},
            "models.m.serving.useful_tokens_per_s",
            "a number",
        ),
        (
            {
                "models": {"m": {"num_layers": 2, "layer_memory_gb": 1.0}},
                "gpus": {"T4": {"memory_gb": 16, "models": {"m": {"tokens_per_s": 5}}}},
                "quotas": [],
            },
            "gpus.T4.models.m.source",
            "non-empty text",
        ),
    ],
)
def test_shape_errors(document: dict, where: str, message: str) -> None:
    base = {"models": {}, "gpus": {}, "quotas": []}
    with pytest.raises(InventoryError) as caught:
        inventory_from_dict(base | document, "inv.yaml")
    assert caught.value.where == where
    assert message in caught.value.reason


def test_weights_gb_absent_for_explicit_model() -> None:
    inventory = load_inventory(SMALL)
    assert inventory.models["tiny"].weights_gb is None
    assert math.isclose(inventory.models["derived"].weights_gb or 0.0, 16.0)


def test_example_turns_on_region_resilience() -> None:
    serving = load_inventory(EXAMPLE).serving
    assert (serving.survive_spot_loss, serving.survive_fraction) == ("region", 1.0)
    assert serving.max_spot_interruption == "10-15%" and serving.max_interruption_rank == 2
    assert set(serving.given) == {
        "survive_spot_loss",
        "survive_fraction",
        "max_spot_interruption",
        "time_limit_s",
    }
    assert serving.time_limit_s == 120.0


def test_fleet_serving_defaults_when_left_out() -> None:
    serving = load_inventory(SMALL).serving
    assert (serving.survive_spot_loss, serving.survive_fraction, serving.given) == ("none", 1.0, ())
    assert serving.max_interruption_rank is None
    assert serving.time_limit_s == DEFAULT_SOLVE_SECONDS  # every fleet solve is still bounded


def test_useful_throughput_is_kept_out_of_the_solver_options() -> None:
    document = {
        "models": {
            "m": {
                "num_layers": 2,
                "layer_memory_gb": 1.0,
                "serving": {"demand_tokens_per_s": 50, "useful_tokens_per_s": 80},
            }
        },
        "gpus": {},
        "quotas": [],
    }
    model = inventory_from_dict(document).models["m"]
    assert model.useful_tokens_per_s == 80.0 and model.demand_tokens_per_s == 50.0
    assert dict(model.serving) == {"demand_tokens_per_s": 50.0}


def test_quotas_by_market_region_and_gpu() -> None:
    quotas = [
        {"cloud": "aws", "region": "us-east-1", "gpu": "V100", "max_gpus": 12},
        {"cloud": "aws", "market": "spot", "max_gpus": 6},
        {"cloud": "aws", "gpu": "T4", "max_gpus": 3},
    ]
    inventory = inventory_from_dict({"models": {}, "gpus": {}, "quotas": quotas})
    assert inventory.available_gpus("aws", "us-east-1", "V100", "on-demand") == 12
    assert inventory.available_gpus("aws", "us-east-1", "V100", "spot") == 6
    assert inventory.available_gpus("aws", "eu-west-1", "T4", "on-demand") == 3
    assert inventory.available_gpus("aws", "eu-west-1", "V100", "on-demand") is None
    assert inventory.available_gpus("aws", "eu-west-1", "V100", "spot") == 6
    assert inventory.available_gpus("aws", "us-east-1", "V100") == 6  # either market
    assert [q.label for q in inventory.quotas] == [
        "aws/us-east-1/V100/*",
        "aws/*/*/spot",
        "aws/*/T4/*",
    ]
