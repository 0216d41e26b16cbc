"""SkyPilot catalog `vms.csv` rows → canonical price table; and the `skypilot-catalog` source.

Shared by the bundled `snapshot` and the live `skypilot-catalog` source (`<base>/<cloud>/vms.csv`).

Mapping choices (see also `tasks/data/prices/skypilot-catalog/PROVENANCE.md`):

- Only GPU rows: rows without `AcceleratorName` are dropped, except GCP host VM rows used below.
- `Price`/`SpotPrice` are USD per whole instance-hour. Empty or <= 0 → NaN ("no data"; Vast
  writes `0.00` for "no spot data"). A row with neither price is dropped; a row with only one
  price is kept.
- `zone` = `AvailabilityZone` where the file has it (AWS AZ ids, GCP zones), else "".
- `gpus_per_instance` = `AcceleratorCount`; fractional counts (AWS g6f, Azure NVadsA10 slices) are
  dropped because the table counts whole GPUs. Known catalog errors are corrected from
  `GPU_COUNT_CORRECTIONS`: Azure ND96isr_H100_v5 lists 12 GPUs (the SKU has 8); Azure
  NV4as/NV8as/NV16as_v4 list 1 MI25 but are 1/8, 1/4, 1/2 of one, so they are dropped.
- GPU names keep the catalog spelling (`A100-80GB`, `V100-32GB`, `A10G`, ...), including the few
  non-NVIDIA or retired parts (AMD Radeon, K80, M60): they do not break anything downstream.
- GCP accelerator rows price the GPUs only. The instance price is host VM + GPUs, joined on
  (region, zone) with the host machine type from `GCP_GPU_HOSTS`, and the instance is named after
  the host (`a2-highgpu-1g`). Spot = host spot + GPU spot (NaN if either is missing). GPU rows
  whose host has no price row are **dropped**, not kept at a GPU-only price: a GPU-only price
  understates the instance and would make the planner favour it. In the bundled extract that drops
  T4/V100 (n1 hosts: any n1 shape may carry them, so there is no one host to price), L4 (g2),
  H100 x4/x8 (a3-highgpu-4g/8g) and H200 (a3-ultragpu-8g); a full live GCP catalog has the
  g2/a3 host rows and prices those.
- Key clashes (same cloud/region/zone/instance type twice, e.g. Vast buckets) keep the row with the
  lowest on-demand price, then the lowest spot price.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from tasks.prices.errors import MalformedResponse
from tasks.prices.http import HttpClient, HttpSettings, Progress, log_progress
from tasks.prices.table import to_price_table, utc_now

SKYPILOT_CATALOG_URL = (
    "https://raw.githubusercontent.com/skypilot-org/skypilot-catalog/master/catalogs/v8"
)
DEFAULT_CATALOG_CLOUDS: tuple[str, ...] = ("aws", "gcp", "azure", "lambda", "nebius", "vast")
REQUIRED_CATALOG_COLUMNS = (
    "InstanceType",
    "AcceleratorName",
    "AcceleratorCount",
    "Price",
    "SpotPrice",
    "Region",
)

# GCP (GPU name, GPUs per VM) → host machine type that carries exactly those GPUs.
GCP_GPU_HOSTS: dict[tuple[str, int], str] = {
    **{("A100", n): f"a2-highgpu-{n}g" for n in (1, 2, 4, 8)},
    ("A100", 16): "a2-megagpu-16g",
    **{("A100-80GB", n): f"a2-ultragpu-{n}g" for n in (1, 2, 4, 8)},
    **{("H100", n): f"a3-highgpu-{n}g" for n in (1, 2, 4, 8)},
    ("H200", 8): "a3-ultragpu-8g",
    ("L4", 1): "g2-standard-4",
    ("L4", 2): "g2-standard-24",
    ("L4", 4): "g2-standard-48",
    ("L4", 8): "g2-standard-96",
}

# (cloud, instance type) → GPUs per instance where the catalog's AcceleratorCount is wrong;
# None = a GPU slice listed as a whole GPU (Azure NVv4 shares one MI25), dropped.
GPU_COUNT_CORRECTIONS: dict[tuple[str, str], int | None] = {
    ("azure", "Standard_ND96isr_H100_v5"): 8,
    ("azure", "Standard_NV4as_v4"): None,
    ("azure", "Standard_NV8as_v4"): None,
    ("azure", "Standard_NV16as_v4"): None,
}


def parse_catalog_csv(
    text: str, *, source: str, url: str, require_final_newline: bool = False
) -> pd.DataFrame:
    """Catalog CSV text → string columns; a short row or missing column is `MalformedResponse`."""
    if require_final_newline and text and not text.endswith("\n"):
        raise MalformedResponse(source, url, "CSV does not end with a newline (truncated?)")
    try:
        rows = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error as exc:
        raise MalformedResponse(source, url, f"CSV parse error: {exc}") from None
    rows = [row for row in rows if row]
    if not rows:
        raise MalformedResponse(source, url, "empty CSV")
    header = [name.strip() for name in rows[0]]
    missing = [name for name in REQUIRED_CATALOG_COLUMNS if name not in header]
    if missing:
        raise MalformedResponse(source, url, f"CSV lacks columns {', '.join(missing)}")
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise MalformedResponse(
                source,
                url,
                f"CSV row {line_number} has {len(row)} fields, expected {len(header)} (truncated?)",
            )
    if len(rows) == 1:
        raise MalformedResponse(source, url, "CSV has a header but no rows")
    return pd.DataFrame(rows[1:], columns=header, dtype="str")


def _price(values: pd.Series) -> pd.Series:
    """Catalog price text → float USD/h; empty, unparsable-as-empty or <= 0 → NaN."""
    text = values.fillna("").astype("str").str.strip()
    prices = pd.to_numeric(text.where(text != "", None), errors="raise").astype("float64")
    return prices.where(prices > 0)


def _column(rows: pd.DataFrame, name: str) -> pd.Series:
    if name in rows.columns:
        return rows[name].fillna("").astype("str").str.strip()
    return pd.Series("", index=rows.index, dtype="str")


def _gpu_rows(rows: pd.DataFrame, cloud: str) -> tuple[pd.DataFrame, list[str]]:
    """GPU rows of a non-GCP catalog as canonical columns (without source/fetched_at)."""
    notes: list[str] = []
    gpu = _column(rows, "AcceleratorName")
    instance_type = _column(rows, "InstanceType")
    rows = rows[(gpu != "") & (instance_type != "")]
    counts = pd.to_numeric(_column(rows, "AcceleratorCount"), errors="coerce")
    instance_type = _column(rows, "InstanceType")
    for position, name in enumerate(instance_type):
        if (cloud, name) in GPU_COUNT_CORRECTIONS:
            corrected = GPU_COUNT_CORRECTIONS[(cloud, name)]
            counts.iloc[position] = float("nan") if corrected is None else corrected
    counts = counts.astype("float64")
    whole = counts.notna() & (counts >= 1) & (counts % 1 == 0)
    if (~whole).any():
        notes.append(f"dropped {int((~whole).sum())} rows with fractional or missing GPU counts")
    rows, counts = rows[whole], counts[whole]
    return (
        pd.DataFrame(
            {
                "cloud": cloud,
                "region": _column(rows, "Region"),
                "zone": _column(rows, "AvailabilityZone"),
                "instance_type": _column(rows, "InstanceType"),
                "gpu": _column(rows, "AcceleratorName"),
                "gpus_per_instance": counts.astype("int64"),
                "price_per_hour": _price(rows["Price"]),
                "spot_price_per_hour": _price(rows["SpotPrice"]),
            }
        ),
        notes,
    )


def _gcp_rows(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """GCP GPU rows joined with their host VM rows: instance price = host + GPUs."""
    gpu = _column(rows, "AcceleratorName")
    instance_type = _column(rows, "InstanceType")
    accelerators = rows[(gpu != "") & (instance_type == "")]
    hosts = rows[instance_type != ""]
    counts = pd.to_numeric(_column(accelerators, "AcceleratorCount"), errors="coerce")
    names = _column(accelerators, "AcceleratorName")
    host_type = [
        GCP_GPU_HOSTS.get((name, int(count))) if pd.notna(count) and count % 1 == 0 else None
        for name, count in zip(names, counts, strict=True)
    ]
    gpu_side = pd.DataFrame(
        {
            "region": _column(accelerators, "Region"),
            "zone": _column(accelerators, "AvailabilityZone"),
            "instance_type": pd.Series(host_type, index=accelerators.index, dtype="str"),
            "gpu": names,
            "gpus_per_instance": counts,
            "gpu_price": _price(accelerators["Price"]),
            "gpu_spot": _price(accelerators["SpotPrice"]),
        }
    )
    host_side = pd.DataFrame(
        {
            "region": _column(hosts, "Region"),
            "zone": _column(hosts, "AvailabilityZone"),
            "instance_type": _column(hosts, "InstanceType"),
            "host_price": _price(hosts["Price"]),
            "host_spot": _price(hosts["SpotPrice"]),
        }
    ).drop_duplicates(["region", "zone", "instance_type"])
    joined = gpu_side.merge(host_side, on=["region", "zone", "instance_type"], how="inner")
    notes: list[str] = []
    unpriced = len(gpu_side) - len(joined)
    if unpriced:
        dropped = gpu_side.loc[
            ~gpu_side.set_index(["region", "zone", "instance_type"]).index.isin(
                joined.set_index(["region", "zone", "instance_type"]).index
            )
        ]
        by_gpu = dropped.groupby("gpu").size().to_dict()
        notes.append(
            f"dropped {unpriced} GPU rows without a host VM price "
            f"({', '.join(f'{name} {n}' for name, n in sorted(by_gpu.items()))})"
        )
    table = pd.DataFrame(
        {
            "cloud": "gcp",
            "region": joined["region"],
            "zone": joined["zone"],
            "instance_type": joined["instance_type"],
            "gpu": joined["gpu"],
            "gpus_per_instance": joined["gpus_per_instance"].astype("int64"),
            "price_per_hour": joined["host_price"] + joined["gpu_price"],
            "spot_price_per_hour": joined["host_spot"] + joined["gpu_spot"],
        }
    )
    return table, notes


def catalog_to_table(
    cloud: str, rows: pd.DataFrame, *, source: str, fetched_at: datetime
) -> tuple[pd.DataFrame, list[str]]:
    """Canonical price rows of one cloud's catalog rows, and notes on what was dropped.

    Raises ValueError on unparsable prices or counts.
    """
    if cloud == "gcp":
        table, notes = _gcp_rows(rows)
    else:
        table, notes = _gpu_rows(rows, cloud)
    no_price = table["price_per_hour"].isna() & table["spot_price_per_hour"].isna()
    if no_price.any():
        notes.append(f"dropped {int(no_price.sum())} rows with neither price")
        table = table[~no_price]
    key = ["cloud", "region", "zone", "instance_type"]
    before = len(table)
    table = table.sort_values(
        ["price_per_hour", "spot_price_per_hour"], na_position="last", kind="stable"
    ).drop_duplicates(key, keep="first")
    if len(table) < before:
        notes.append(f"merged {before - len(table)} rows repeating a key (kept the cheapest)")
    table = table.assign(source=source, fetched_at=pd.Timestamp(fetched_at))
    return to_price_table(table), notes


class SkyPilotCatalogSource:
    """Live SkyPilot catalog CSVs over HTTP: `<base_url>/<cloud>/vms.csv` per cloud."""

    name = "skypilot-catalog"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        clouds: Sequence[str] = DEFAULT_CATALOG_CLOUDS,
        settings: HttpSettings | None = None,
        progress: Progress = log_progress,
        client: HttpClient | None = None,
    ) -> None:
        self.base_url = (base_url or SKYPILOT_CATALOG_URL).rstrip("/")
        self.clouds = tuple(clouds)
        self._progress = progress
        self._client = client or HttpClient(self.name, settings, progress=progress)

    def fetch(self) -> pd.DataFrame:
        fetched_at = utc_now()
        tables = []
        for index, cloud in enumerate(self.clouds, start=1):
            url = f"{self.base_url}/{cloud}/vms.csv"
            self._progress(f"{self.name}: [{index}/{len(self.clouds)}] GET {cloud}/vms.csv")
            text = self._client.get_text(url, accept="text/csv")
            rows = parse_catalog_csv(text, source=self.name, url=url, require_final_newline=True)
            try:
                table, notes = catalog_to_table(
                    cloud, rows, source=self.name, fetched_at=fetched_at
                )
            except ValueError as exc:
                raise MalformedResponse(self.name, url, f"bad catalog values: {exc}") from None
            for note in notes:
                self._progress(f"{self.name}: {cloud}: {note}")
            self._progress(f"{self.name}: {cloud}: {len(table)} price rows")
            tables.append(table)
        return to_price_table(pd.concat(tables, ignore_index=True))
