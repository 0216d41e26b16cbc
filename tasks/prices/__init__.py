"""Price sources behind one interface; each returns the canonical table of `tasks.prices.schema`.

    from tasks.prices import fetch_prices
    table = fetch_prices("snapshot")                         # bundled, offline (default)
    table = fetch_prices("azure-retail", "http://127.0.0.1:8080/api/retail/prices")

`location` is the `--from` override: a base URL for the live sources, a path for `file`.
Extra keyword options go to the source's constructor (`settings=HttpSettings(...)`,
`progress=print`, `regions=[...]`, `clouds=[...]`, `fetched_at=datetime(...)`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from tasks.prices.aws_spot import AwsSpotSource
from tasks.prices.azure import AzureRetailSource
from tasks.prices.base import PriceSource
from tasks.prices.errors import (
    HttpStatusError,
    InsecureUrl,
    MalformedResponse,
    PagingError,
    PriceSourceError,
    ResponseTooLarge,
    SourceConfigError,
    SourceTimeout,
    SourceUnreachable,
)
from tasks.prices.file import FileSource
from tasks.prices.http import HttpSettings
from tasks.prices.schema import PRICE_COLUMNS, PRICE_KEY
from tasks.prices.skypilot import SkyPilotCatalogSource
from tasks.prices.snapshot import SnapshotSource

DEFAULT_SOURCE = "snapshot"


def _snapshot(location: str | None, **options: Any) -> PriceSource:
    if location:
        raise SourceConfigError("snapshot", location, "the bundled snapshot takes no --from")
    return SnapshotSource(**options)


_FACTORIES: dict[str, Callable[..., PriceSource]] = {
    "snapshot": _snapshot,
    "skypilot-catalog": SkyPilotCatalogSource,
    "azure-retail": AzureRetailSource,
    "aws-spot": AwsSpotSource,
    "file": FileSource,
}
SOURCE_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def get_source(name: str, location: str | None = None, **options: Any) -> PriceSource:
    """The price source called `name`, pointed at `location` (base URL or path) if given."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise SourceConfigError(
            name, location or "", f"unknown price source; choose one of {', '.join(SOURCE_NAMES)}"
        )
    return factory(location, **options)


def fetch_prices(
    name: str = DEFAULT_SOURCE, location: str | None = None, **options: Any
) -> pd.DataFrame:
    """Fetch the canonical price table from source `name`; raises `PriceSourceError` subclasses."""
    return get_source(name, location, **options).fetch()


__all__ = [
    "DEFAULT_SOURCE",
    "PRICE_COLUMNS",
    "PRICE_KEY",
    "SOURCE_NAMES",
    "AwsSpotSource",
    "AzureRetailSource",
    "FileSource",
    "HttpSettings",
    "HttpStatusError",
    "InsecureUrl",
    "MalformedResponse",
    "PagingError",
    "PriceSource",
    "PriceSourceError",
    "ResponseTooLarge",
    "SkyPilotCatalogSource",
    "SnapshotSource",
    "SourceConfigError",
    "SourceTimeout",
    "SourceUnreachable",
    "fetch_prices",
    "get_source",
]
