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

Interruption data: the public spot advisor file
`GET https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json` (no prices;
`ranges[{index, label}]` and `spot_advisor.<region>.Linux.<instance type>.r`, an index into
`ranges`: how often AWS reclaimed that type in that region over the trailing month) gives each
row's `spot_interruption` label (`<5%` ... `>20%`). It is fetched after the price feed with the
same client (timeouts, size cap, deadline, https or loopback only); with `--from`, from the
same place (`<base>/spot-advisor-data.json`, or the file next to the given `.json`/`.js`). When
the advisor cannot be reached (an HTTP error, a timeout, too large), the prices are kept with
`spot_interruption` empty and the progress log says why; an advisor that answers with something
that is not the advisor's JSON is a `MalformedResponse`. Other clouds publish no such data.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import pandas as pd

from solver.documents import load_json
from tasks.prices.errors import (
    HttpStatusError,
    MalformedResponse,
    ResponseTooLarge,
    SourceTimeout,
    SourceUnreachable,
)
from tasks.prices.http import HttpClient, HttpSettings, Progress, check_url, log_progress
from tasks.prices.table import empty_price_table, to_price_table, utc_now

AWS_SPOT_URL = "https://website.spot.ec2.aws.a2z.com/spot.json"
SPOT_ADVISOR_URL = "https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json"
SPOT_ADVISOR_FILE = "spot-advisor-data.json"

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


def advisor_buckets(payload: Any) -> dict[tuple[str, str], str]:
    """(region, instance type) -> interruption bucket label of the parsed spot advisor file
    (Linux, GPU instance types only); ValueError on a bad shape."""
    if not isinstance(payload, dict):
        raise ValueError("not a JSON object")
    ranges = payload.get("ranges")
    advisor = payload.get("spot_advisor")
    if not isinstance(ranges, list) or not isinstance(advisor, dict):
        raise ValueError("no ranges list or spot_advisor object")
    labels: dict[int, str] = {}
    for entry in ranges:
        index, label = entry.get("index"), entry.get("label")
        if isinstance(index, bool) or not isinstance(index, int) or not isinstance(label, str):
            raise ValueError(f"range entry without an integer index and a label: {entry!r:.80}")
        labels[index] = label.strip()
    buckets: dict[tuple[str, str], str] = {}
    for region_name, systems in advisor.items():
        region = AWS_REGION_ALIASES.get(region_name, region_name)
        linux = systems.get("Linux", {}) if isinstance(systems, dict) else None
        if not isinstance(linux, dict):
            raise ValueError(f"spot_advisor.{region_name}.Linux is not an object")
        for instance_type, figures in linux.items():
            if instance_type not in AWS_GPU_INSTANCES:
                continue
            rank = figures.get("r") if isinstance(figures, dict) else None
            if isinstance(rank, bool) or rank not in labels:
                raise ValueError(
                    f"spot_advisor.{region_name}.Linux.{instance_type}.r is not a range index"
                )
            buckets[(region, instance_type)] = labels[rank]
    return buckets


def feed_to_table(
    payload: Any,
    *,
    source: str,
    fetched_at: Any,
    buckets: dict[tuple[str, str], str] | None = None,
) -> pd.DataFrame:
    """Canonical rows of the parsed feed (known GPU types only), with the advisor's bucket per
    (region, instance type) when `buckets` has one; ValueError on a bad shape."""
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
                    "spot_interruption": (buckets or {}).get((region, instance_type)),
                }
    if not rows:
        return empty_price_table()
    return to_price_table(pd.DataFrame(list(rows.values())))


def feed_url(location: str) -> str:
    """`location` if it names a `.json`/`.js` file, else `<location>/spot.json` (a mirror base)."""
    if urlsplit(location).path.endswith((".json", ".js")):
        return location
    return location.rstrip("/") + "/spot.json"


def advisor_url_for(location: str) -> str:
    """The spot advisor file beside the price feed `location` points at (a file or a base)."""
    if urlsplit(location).path.endswith((".json", ".js")):
        return urljoin(location, SPOT_ADVISOR_FILE)
    return location.rstrip("/") + "/" + SPOT_ADVISOR_FILE


class AwsSpotSource:
    """The public spot price feed behind aws.amazon.com/ec2/spot/pricing."""

    name = "aws-spot"

    def __init__(
        self,
        url: str | None = None,
        *,
        advisor_url: str | None = None,
        settings: HttpSettings | None = None,
        progress: Progress = log_progress,
        client: HttpClient | None = None,
    ) -> None:
        self.url = feed_url(url) if url else AWS_SPOT_URL
        check_url(self.name, self.url)
        self.advisor_url = advisor_url or (advisor_url_for(url) if url else SPOT_ADVISOR_URL)
        check_url(self.name, self.advisor_url)
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
        buckets = self._advisor_buckets()
        try:
            table = feed_to_table(payload, source=self.name, fetched_at=fetched_at, buckets=buckets)
        except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
            raise MalformedResponse(
                self.name, self.url, f"unexpected feed shape: {exc!r}"
            ) from None
        known = int(table["spot_interruption"].notna().sum())
        self._progress(
            f"{self.name}: {len(table)} GPU spot prices, {known} with an interruption bucket"
        )
        return table

    def _advisor_buckets(self) -> dict[tuple[str, str], str]:
        """The advisor's buckets; empty (and said) when it cannot be reached."""
        self._progress(f"{self.name}: GET spot advisor")
        try:
            text = self._client.get_text(self.advisor_url, accept="application/json")
        except (HttpStatusError, SourceTimeout, SourceUnreachable, ResponseTooLarge) as exc:
            self._progress(
                f"{self.name}: spot advisor unavailable ({exc}); spot_interruption left empty"
            )
            return {}
        try:
            payload = load_json(
                text, source="body", max_bytes=self._client.settings.max_response_bytes
            )
            return advisor_buckets(payload)
        except (ValueError, AttributeError, TypeError) as exc:
            raise MalformedResponse(
                self.name, self.advisor_url, f"not the spot advisor's JSON: {exc}"
            ) from None
