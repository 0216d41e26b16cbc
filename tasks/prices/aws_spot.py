"""`aws-spot`: the public (undocumented, keyless) AWS spot price feed → canonical price table.

`GET https://website.spot.ec2.aws.a2z.com/spot.json` (plain JSON) or `.../spot.js` (the same body
wrapped as JSONP `callback(...);`). The wrapper is recognised by shape (an identifier, `(`, the
JSON, `)`, optional `;`), not by fixed character counts; either body works from either URL.

- One linux price per region (`zone` = ""), USD per instance-hour; `"N/A*"` → missing. Windows
  (`mswin`) prices are ignored.
- The feed has no on-demand prices, so `price_per_hour` is NaN in every row; rows without a spot
  price are dropped (they would carry no price at all).
- Old region aliases map to region codes (`AWS_REGION_ALIASES`).
- Only instance types in `AWS_GPU_INSTANCES` become rows (GPU name in catalog spelling and GPUs
  per instance, from the EC2 accelerated-computing docs); AMD (g4ad) and Graviton (g5g) are left
  out. `fetched_at` is the time of the fetch (the payload has no timestamp).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from solver.documents import load_json
from tasks.prices.errors import MalformedResponse
from tasks.prices.http import HttpClient, HttpSettings, Progress, check_url, log_progress
from tasks.prices.table import empty_price_table, to_price_table, utc_now

AWS_SPOT_URL = "https://website.spot.ec2.aws.a2z.com/spot.json"

AWS_REGION_ALIASES: dict[str, str] = {
    "us-east": "us-east-1",
    "us-west": "us-west-1",
    "eu-ireland": "eu-west-1",
    "apac-sin": "ap-southeast-1",
    "apac-syd": "ap-southeast-2",
    "apac-tokyo": "ap-northeast-1",
}


def _sizes(family: str, gpu: str, counts: dict[str, int]) -> dict[str, tuple[str, int]]:
    return {f"{family}.{size}": (gpu, count) for size, count in counts.items()}


_G_SIZES = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
            "12xlarge": 4, "24xlarge": 4, "48xlarge": 8}  # fmt: skip
_G4DN_SIZES = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
               "12xlarge": 4, "metal": 8}  # fmt: skip

# Instance type → (GPU name as the catalogs spell it, GPUs per instance).
AWS_GPU_INSTANCES: dict[str, tuple[str, int]] = {
    **_sizes("p3", "V100", {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8}),
    "p3dn.24xlarge": ("V100-32GB", 8),
    "p4d.24xlarge": ("A100", 8),
    "p4de.24xlarge": ("A100-80GB", 8),
    "p5.4xlarge": ("H100", 1),
    "p5.48xlarge": ("H100", 8),
    "p5e.48xlarge": ("H200", 8),
    "p5en.48xlarge": ("H200", 8),
    **_sizes("g4dn", "T4", _G4DN_SIZES),
    **_sizes("g5", "A10G", _G_SIZES),
    **_sizes("g6", "L4", _G_SIZES),
    **_sizes("g6e", "L40S", _G_SIZES),
}

_JSONP = re.compile(r"^\s*[A-Za-z_$][\w$.]*\s*\((?P<body>.*)\)\s*;?\s*$", re.DOTALL)


def unwrap_jsonp(text: str) -> str:
    """The JSON inside `callback(...);`, or `text` unchanged when it is plain JSON."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith(("{", "[")):
        return stripped
    match = _JSONP.match(stripped)
    if match is None:
        raise ValueError("neither JSON nor a JSONP callback(...) wrapper")
    return match.group("body")


def _spot_price(text: Any) -> float:
    value = str(text).strip()
    if value.upper().startswith("N/A") or value == "":
        return float("nan")
    return float(value)


def feed_to_table(payload: Any, *, source: str, fetched_at: Any) -> pd.DataFrame:
    """Canonical rows of the parsed feed (known GPU types only); ValueError on a bad shape."""
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict):
        raise ValueError("no config object")
    regions = payload["config"].get("regions")
    if not isinstance(regions, list):
        raise ValueError("config.regions is not a list")
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for region_entry in regions:
        region = AWS_REGION_ALIASES.get(region_entry["region"], region_entry["region"])
        for group in region_entry["instanceTypes"]:
            for size in group["sizes"]:
                instance_type = size["size"]
                if instance_type not in AWS_GPU_INSTANCES:
                    continue
                linux = [c for c in size["valueColumns"] if c.get("name") == "linux"]
                spot = _spot_price(linux[0]["prices"].get("USD", "")) if linux else float("nan")
                if pd.isna(spot):
                    continue
                gpu, count = AWS_GPU_INSTANCES[instance_type]
                previous = rows.get((region, instance_type))
                if previous is not None and previous["spot_price_per_hour"] <= spot:
                    continue  # an alias and its code both listed: keep the lower price
                rows[(region, instance_type)] = {
                    "source": source,
                    "cloud": "aws",
                    "region": region,
                    "zone": "",
                    "instance_type": instance_type,
                    "gpu": gpu,
                    "gpus_per_instance": count,
                    "price_per_hour": float("nan"),
                    "spot_price_per_hour": spot,
                    "fetched_at": fetched_at,
                }
    if not rows:
        return empty_price_table()
    return to_price_table(pd.DataFrame(list(rows.values())))


def feed_url(location: str) -> str:
    """`location` if it names a `.json`/`.js` file, else `<location>/spot.json` (a mirror base)."""
    if urlsplit(location).path.endswith((".json", ".js")):
        return location
    return location.rstrip("/") + "/spot.json"


class AwsSpotSource:
    """The public spot price feed behind aws.amazon.com/ec2/spot/pricing."""

    name = "aws-spot"

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: HttpSettings | None = None,
        progress: Progress = log_progress,
        client: HttpClient | None = None,
    ) -> None:
        self.url = feed_url(url) if url else AWS_SPOT_URL
        check_url(self.name, self.url)
        self._progress = progress
        self._client = client or HttpClient(self.name, settings, progress=progress)

    def fetch(self) -> pd.DataFrame:
        fetched_at = utc_now()
        self._progress(f"{self.name}: GET spot feed")
        text = self._client.get_text(self.url, accept="application/json, text/javascript")
        try:
            payload = load_json(
                unwrap_jsonp(text),
                source="body",
                max_bytes=self._client.settings.max_response_bytes,
            )
        except ValueError as exc:  # DocumentError is a ValueError
            raise MalformedResponse(self.name, self.url, f"invalid JSON/JSONP: {exc}") from None
        try:
            table = feed_to_table(payload, source=self.name, fetched_at=fetched_at)
        except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
            raise MalformedResponse(
                self.name, self.url, f"unexpected feed shape: {exc!r}"
            ) from None
        self._progress(f"{self.name}: {len(table)} GPU spot prices")
        return table
