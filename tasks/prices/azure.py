"""`azure-retail`: the Azure Retail Prices REST API (no auth) → canonical price table.

One paged query per region:
`GET <base>?$filter=serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and
armRegionName eq '<region>'`, following `NextPageLink` until it is null/absent.

- `NextPageLink` on the documented origin (`https://prices.azure.com/api/retail/prices`) is moved
  onto the configured base; a link to another host raises `PagingError`. Page count is capped and
  a repeated link or page raises `PagingError`.
- An empty-string `NextPageLink` (seen once in 2023) after a non-empty page is treated as "more
  may follow": the current URL is re-requested with `$skip` advanced by the page's item count,
  until a page comes back empty. The page cap and loop check bound this too.
- Kept meters: `type == "Consumption"`, `unitOfMeasure == "1 Hour"`, USD, `unitPrice > 0`, Linux
  only (`productName` without " Windows", " Win", " Cloud Services"), not " Low Priority".
  `skuName` ending " Spot" is the spot price; the other meter is on-demand. Both pair on
  (`armSkuName`, `armRegionName`); when a SKU has several meters of one kind the latest
  `effectiveStartDate` wins. Prices are per VM-hour and per region (`zone` = "").
- Only SKUs in `AZURE_GPU_SKUS` become rows (GPU name in catalog spelling, whole GPUs per VM);
  fractional-GPU SKUs (NVadsA10_v5 below NV36, NCads_A10_v4) and retired series (NC/NV v1/v2/v3
  K80/P100/M60) are left out. Other meters are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pandas as pd

from solver.documents import DocumentError, load_json
from tasks.prices.errors import MalformedResponse
from tasks.prices.http import (
    HttpClient,
    HttpSettings,
    PageGuard,
    Progress,
    check_url,
    log_progress,
    rebase_link,
)
from tasks.prices.table import empty_price_table, to_price_table, utc_now

AZURE_RETAIL_URL = "https://prices.azure.com/api/retail/prices"
DEFAULT_AZURE_REGIONS: tuple[str, ...] = (
    "eastus",
    "eastus2",
    "centralus",
    "northcentralus",
    "southcentralus",
    "westus",
    "westus2",
    "westus3",
)
_NOT_LINUX = (" Windows", " Win", " Cloud Services")

# armSkuName → (GPU name as the catalogs spell it, GPUs per VM). Sources: Azure VM size docs
# (NCasT4_v3, NCv3, NDv2, NC A100 v4, ND A100 v4, NC H100 v5, NCCads H100 v5, ND H100/H200 v5,
# NVadsA10 v5).
AZURE_GPU_SKUS: dict[str, tuple[str, int]] = {
    "Standard_NC4as_T4_v3": ("T4", 1),
    "Standard_NC8as_T4_v3": ("T4", 1),
    "Standard_NC16as_T4_v3": ("T4", 1),
    "Standard_NC64as_T4_v3": ("T4", 4),
    "Standard_NC6s_v3": ("V100", 1),
    "Standard_NC12s_v3": ("V100", 2),
    "Standard_NC24s_v3": ("V100", 4),
    "Standard_NC24rs_v3": ("V100", 4),
    "Standard_ND40rs_v2": ("V100-32GB", 8),
    "Standard_NC24ads_A100_v4": ("A100-80GB", 1),
    "Standard_NC48ads_A100_v4": ("A100-80GB", 2),
    "Standard_NC96ads_A100_v4": ("A100-80GB", 4),
    "Standard_ND96asr_v4": ("A100", 8),
    "Standard_ND96amsr_A100_v4": ("A100-80GB", 8),
    "Standard_NC40ads_H100_v5": ("H100", 1),
    "Standard_NC80adis_H100_v5": ("H100", 2),
    "Standard_NCC40ads_H100_v5": ("H100", 1),
    "Standard_ND96isr_H100_v5": ("H100", 8),
    "Standard_ND96isr_H200_v5": ("H200", 8),
    "Standard_NV36ads_A10_v5": ("A10", 1),
    "Standard_NV36adms_A10_v5": ("A10", 1),
    "Standard_NV72ads_A10_v5": ("A10", 2),
}


def azure_filter(region: str) -> str:
    """OData `$filter` for one region's consumption VM meters (all OSes; Linux is kept later)."""
    if not region.replace("-", "").isalnum():
        raise ValueError(f"bad Azure region name: {region!r}")
    return (
        "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' "
        f"and armRegionName eq '{region}'"
    )


def azure_query_url(base_url: str, region: str) -> str:
    """First-page URL for `region` (OData `$filter`, spaces as %20)."""
    query = urlencode({"$filter": azure_filter(region)}, quote_via=quote, safe="$'")
    return f"{base_url}?{query}"


def _advance_skip(url: str, item_count: int) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    skip = next((int(value) for key, value in query if key == "$skip" and value.isdigit()), 0)
    query = [(key, value) for key, value in query if key != "$skip"]
    query.append(("$skip", str(skip + item_count)))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote, safe="$'")))


def _is_linux_meter(item: dict[str, Any]) -> bool:
    product = str(item.get("productName", ""))
    return not any(marker in product for marker in _NOT_LINUX)


def items_to_table(
    items: Sequence[dict[str, Any]], *, source: str, fetched_at: Any
) -> pd.DataFrame:
    """Map Retail Prices items to canonical rows (GPU SKUs only); raise ValueError on bad values."""
    chosen: dict[tuple[str, str, bool], tuple[str, float]] = {}
    for item in items:
        sku = str(item.get("armSkuName", ""))
        if sku not in AZURE_GPU_SKUS:
            continue
        sku_name = str(item.get("skuName", ""))
        if (
            item.get("type") != "Consumption"
            or item.get("unitOfMeasure") != "1 Hour"
            or item.get("currencyCode", "USD") != "USD"
            or not _is_linux_meter(item)
            or sku_name.endswith(" Low Priority")
        ):
            continue
        price = float(item["unitPrice"])
        if price <= 0:
            continue
        is_spot = sku_name.endswith(" Spot")
        key = (sku, str(item["armRegionName"]), is_spot)
        started = str(item.get("effectiveStartDate", ""))
        if key not in chosen or started >= chosen[key][0]:
            chosen[key] = (started, price)
    pairs: dict[tuple[str, str], dict[str, float]] = {}
    for (sku, region, is_spot), (_, price) in chosen.items():
        pairs.setdefault((sku, region), {})["spot" if is_spot else "on_demand"] = price
    if not pairs:
        return empty_price_table()
    rows = [
        {
            "source": source,
            "cloud": "azure",
            "region": region,
            "zone": "",
            "instance_type": sku,
            "gpu": AZURE_GPU_SKUS[sku][0],
            "gpus_per_instance": AZURE_GPU_SKUS[sku][1],
            "price_per_hour": prices.get("on_demand", float("nan")),
            "spot_price_per_hour": prices.get("spot", float("nan")),
            "fetched_at": fetched_at,
        }
        for (sku, region), prices in pairs.items()
    ]
    return to_price_table(pd.DataFrame(rows))


class AzureRetailSource:
    """Azure Retail Prices API, one paged query per region."""

    name = "azure-retail"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        regions: Sequence[str] = DEFAULT_AZURE_REGIONS,
        settings: HttpSettings | None = None,
        progress: Progress = log_progress,
        client: HttpClient | None = None,
    ) -> None:
        self.base_url = (base_url or AZURE_RETAIL_URL).rstrip("/")
        check_url(self.name, self.base_url)
        self.regions = tuple(regions)
        self.settings = settings or HttpSettings()
        self._progress = progress
        self._client = client or HttpClient(self.name, self.settings, progress=progress)

    def fetch(self) -> pd.DataFrame:
        fetched_at = utc_now()
        items: list[dict[str, Any]] = []
        for region in self.regions:
            for page in self.pages(region):
                items.extend(page)
        try:
            return items_to_table(items, source=self.name, fetched_at=fetched_at)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedResponse(self.name, self.base_url, f"bad price item: {exc!r}") from None

    def pages(self, region: str) -> Iterator[list[dict[str, Any]]]:
        """The `Items` of each page for `region`, following `NextPageLink` within the origin."""
        guard = PageGuard(self.name, self.settings.max_pages)
        url: str | None = azure_query_url(self.base_url, region)
        while url is not None:
            guard.before(url)
            body = self._client.get_bytes(url, accept="application/json")
            guard.after(url, body)
            page = self._parse_page(url, body)
            items = page["Items"]
            self._progress(f"{self.name}: {region} page {guard.pages}: {len(items)} items")
            yield items
            url = self._next_url(url, page.get("NextPageLink"), len(items))

    def _parse_page(self, url: str, body: bytes) -> dict[str, Any]:
        try:
            page = load_json(body, source="page", max_bytes=self.settings.max_response_bytes)
        except DocumentError as exc:
            raise MalformedResponse(self.name, url, f"invalid JSON: {exc}") from None
        if not isinstance(page, dict) or not isinstance(page.get("Items"), list):
            raise MalformedResponse(self.name, url, "JSON page has no Items list")
        if not all(isinstance(item, dict) for item in page["Items"]):
            raise MalformedResponse(self.name, url, "Items holds non-objects")
        link = page.get("NextPageLink")
        if link is not None and not isinstance(link, str):
            raise MalformedResponse(self.name, url, "NextPageLink is not a string")
        return page

    def _next_url(self, url: str, link: str | None, item_count: int) -> str | None:
        if link is None:
            return None
        if link == "":
            return _advance_skip(url, item_count) if item_count else None
        return rebase_link(
            self.name,
            link,
            current_url=url,
            documented_base=AZURE_RETAIL_URL,
            configured_base=self.base_url,
        )
