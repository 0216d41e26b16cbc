"""The canonical price table: the one column set every price source returns.

| column | type | meaning |
|---|---|---|
| `source` | str | source (`snapshot`, `skypilot-catalog`, `azure-retail`, `aws-spot`, `file`) |
| `cloud` | str | provider, lower case (`aws`, `gcp`, `azure`, ...) |
| `region` | str | provider region (`us-east-1`, `eastus`, ...) |
| `zone` | str | availability zone, or "" when the source prices per region |
| `instance_type` | str | provider instance name; for GCP the host VM joined with its GPUs |
| `gpu` | str | GPU type name as the catalogs spell it (`A100-80GB`, `H100`, `T4`, ...) |
| `gpus_per_instance` | int | GPUs in one instance (node) |
| `price_per_hour` | float | on-demand USD per instance-hour (whole instance); NaN = not offered |
| `spot_price_per_hour` | float | spot USD per instance-hour (whole instance); NaN when unknown |
| `fetched_at` | datetime64[us, UTC] | when the source produced the price |
| `spot_interruption` | str or None | AWS spot advisor interruption bucket (below) |

Key: (`source`, `cloud`, `region`, `zone`, `instance_type`).

`spot_interruption`: the spot interruption-frequency bucket of the instance type in the region
over the trailing month, as the AWS spot advisor labels it (`SPOT_INTERRUPTION_BUCKETS`: `<5%`,
`5-10%`, `10-15%`, `15-20%`, `>20%`); None = not published. It is nullable and optional in
price CSVs: a file without the column (every file written before it existed) reads as all
None. Only AWS publishes such a feed (the spot advisor, `tasks/prices/aws_spot.py`); other
clouds publish none, so their rows stay None.
"""

from __future__ import annotations

PRICE_COLUMNS: tuple[str, ...] = (
    "source",
    "cloud",
    "region",
    "zone",
    "instance_type",
    "gpu",
    "gpus_per_instance",
    "price_per_hour",
    "spot_price_per_hour",
    "fetched_at",
    "spot_interruption",
)
OPTIONAL_PRICE_COLUMNS: tuple[str, ...] = ("spot_interruption",)  # absent in a file = all None
# The AWS spot advisor's interruption-frequency buckets (its `ranges[].label`), least first.
SPOT_INTERRUPTION_BUCKETS: tuple[str, ...] = ("<5%", "5-10%", "10-15%", "15-20%", ">20%")
PRICE_KEY: tuple[str, ...] = ("source", "cloud", "region", "zone", "instance_type")
