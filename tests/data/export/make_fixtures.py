"""Regenerate the export test plans (shape per CONTRACT.md's plan JSON; figures per the spec).

Throughputs from config/inventory.yaml (tokens/s of one GPU running the whole model), the
default TP efficiency map {1: 1.0, 2: 0.9, 4: 0.8, 8: 0.7}; prices are round snapshot-like
figures. Run: python tests/data/export/make_fixtures.py
"""

from __future__ import annotations

import json
from pathlib import Path

LAYERS = {"llama-3.1-8b": 32, "llama-3.1-70b": 80}
TOKENS = {
    ("llama-3.1-8b", "A10G"): 280,
    ("llama-3.1-8b", "L4"): 140,
    ("llama-3.1-8b", "T4"): 149,
    ("llama-3.1-70b", "A100-80GB"): 108,
    ("llama-3.1-70b", "L4"): 16,
    ("llama-3.1-70b", "H100"): 178,
}
PRICE = {  # $/GPU-hour: (on-demand, spot)
    "A10G": (1.006, 0.45),
    "L4": (0.805, 0.36),
    "T4": (0.526, 0.21),
    "A100-80GB": (5.12, 2.05),
    "H100": (12.29, 4.9),
}
EFF = {1: 1.0, 2: 0.9, 4: 0.8, 8: 0.7}


def stage(cloud: str, region: str, gpu: str, market: str, tp: int, layers: int) -> dict:
    pool = f"{cloud}/{region}/{gpu}" + ("/spot" if market == "spot" else "")
    return {"pool": pool, "gpu": gpu, "market": market, "tp": tp, "layers": layers}


def replica(model: str, cloud: str, region: str, count: int, stages: list[dict]) -> dict:
    rates = [
        TOKENS[(model, s["gpu"])] * LAYERS[model] / s["layers"] * s["tp"] * EFF[s["tp"]]
        for s in stages
    ]
    cost = sum(s["tp"] * PRICE[s["gpu"]][s["market"] == "spot"] for s in stages)
    return {
        "count": count,
        "model": model,
        "cloud": cloud,
        "region": region,
        "tokens_per_s": round(min(rates), 3),
        "cost_per_hour": round(cost, 4),
        "stages": stages,
    }


def plan(replicas: list[dict], demand: dict[str, float], **extra: object) -> dict:
    models = []
    for name in dict.fromkeys(r["model"] for r in replicas):
        mine = [r for r in replicas if r["model"] == name]
        t = sum(r["count"] * r["tokens_per_s"] for r in mine)
        c = sum(r["count"] * r["cost_per_hour"] for r in mine)
        models.append(
            {
                "name": name,
                "demand_tokens_per_s": demand[name],
                "tokens_per_s": round(t, 3),
                "useful_tokens_per_s": round(t, 3),
                "cost_per_hour": round(c, 4),
                "cost_per_token": c / (3600 * t),
                "gpus": sum(r["count"] * sum(s["tp"] for s in r["stages"]) for r in mine),
                "replicas": mine,
            }
        )
    t = sum(m["tokens_per_s"] for m in models)
    c = sum(m["cost_per_hour"] for m in models)
    return {
        "strategy": "exact",
        "status": "optimal",
        "message": "",
        "tokens_per_s": round(t, 3),
        "useful_tokens_per_s": round(t, 3),
        "cost_per_hour": round(c, 4),
        "cost_per_token": c / (3600 * t),
        "gpus": sum(m["gpus"] for m in models),
        "replicas": replicas,
        "models": models,
        **extra,
    }


AWS = ("aws", "us-east-1")
FIXTURES = {
    # one model, on-demand, single-GPU replicas (what a one-model scenario gives)
    "single-model.json": plan(
        [
            replica("llama-3.1-8b", *AWS, 10, [stage(*AWS, "A10G", "on-demand", 1, 32)]),
            replica("llama-3.1-8b", *AWS, 2, [stage(*AWS, "L4", "on-demand", 1, 32)]),
        ],
        {"llama-3.1-8b": 3000},
    ),
    # two models, spot and on-demand, a multi-node 70B replica, resilience on
    "fleet-spot.json": plan(
        [
            replica("llama-3.1-8b", *AWS, 6, [stage(*AWS, "A10G", "spot", 1, 32)]),
            replica(
                "llama-3.1-8b",
                "gcp",
                "us-central1",
                5,
                [stage("gcp", "us-central1", "L4", "on-demand", 1, 32)],
            ),
            replica(
                "llama-3.1-70b",
                *AWS,
                2,
                [stage(*AWS, "A100-80GB", "spot", 4, 40), stage(*AWS, "A100-80GB", "spot", 4, 40)],
            ),
            replica(
                "llama-3.1-70b",
                "gcp",
                "us-central1",
                1,
                [
                    stage("gcp", "us-central1", "A100-80GB", "on-demand", 2, 40),
                    stage("gcp", "us-central1", "A100-80GB", "on-demand", 2, 40),
                ],
            ),
        ],
        {"llama-3.1-8b": 3000, "llama-3.1-70b": 600},
        resilience={
            "domain": "region",
            "fraction": 0.5,
            "domains": [
                {
                    "cloud": "aws",
                    "region": "us-east-1",
                    "models": [
                        {
                            "name": "llama-3.1-8b",
                            "required_tokens_per_s": 1500,
                            "tokens_per_s_left": 630.0,
                        },
                        {
                            "name": "llama-3.1-70b",
                            "required_tokens_per_s": 300,
                            "tokens_per_s_left": 194.4,
                        },
                    ],
                }
            ],
        },
    ),
    # replicas whose stages sit on different pools: GPU types, markets and TP degrees differ
    "mixed-pool.json": plan(
        [
            replica(
                "llama-3.1-70b",
                *AWS,
                2,
                [
                    stage(*AWS, "A100-80GB", "on-demand", 4, 40),
                    stage(*AWS, "L4", "on-demand", 4, 40),
                ],
            ),
            replica(
                "llama-3.1-70b",
                *AWS,
                1,
                [
                    stage(*AWS, "A100-80GB", "spot", 2, 40),
                    stage(*AWS, "A100-80GB", "on-demand", 2, 40),
                ],
            ),
            replica(
                "llama-3.1-70b",
                *AWS,
                1,
                [
                    stage(*AWS, "A100-80GB", "on-demand", 2, 38),
                    stage(*AWS, "L4", "on-demand", 4, 42),
                ],
            ),
            replica("llama-3.1-8b", *AWS, 3, [stage(*AWS, "A10G", "on-demand", 1, 32)]),
        ],
        {"llama-3.1-8b": 600, "llama-3.1-70b": 600},
    ),
    # uneven layer splits on one pool: VLLM_PP_LAYER_PARTITION
    "uneven-split.json": plan(
        [
            replica(
                "llama-3.1-70b",
                "aws",
                "us-west-2",
                2,
                [
                    stage("aws", "us-west-2", "H100", "on-demand", 1, 44),
                    stage("aws", "us-west-2", "H100", "on-demand", 1, 36),
                ],
            ),
            replica(
                "llama-3.1-8b",
                *AWS,
                4,
                [stage(*AWS, "T4", "spot", 1, 17), stage(*AWS, "T4", "spot", 1, 15)],
            ),
            replica(
                "llama-3.1-70b",
                *AWS,
                1,
                [
                    stage(*AWS, "L4", "on-demand", 4, 27),
                    stage(*AWS, "L4", "on-demand", 4, 27),
                    stage(*AWS, "L4", "on-demand", 4, 26),
                ],
            ),
        ],
        {"llama-3.1-8b": 1000, "llama-3.1-70b": 400},
    ),
}

if __name__ == "__main__":
    here = Path(__file__).parent
    for name, document in FIXTURES.items():
        (here / name).write_text(json.dumps(document, indent=2) + "\n")
        print("wrote", here / name)
