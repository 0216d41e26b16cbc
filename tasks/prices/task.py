"""Prefect task around `fetch_prices` for flows; separate so the CLI need not import Prefect."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task

from tasks.prices import DEFAULT_SOURCE, fetch_prices


@task(name="fetch-prices", retries=0)  # the HTTP layer already retries; a re-run repeats them all
def fetch_prices_task(
    name: str = DEFAULT_SOURCE, location: str | None = None, **options: Any
) -> pd.DataFrame:
    """Fetch the canonical price table from source `name` (see `tasks.prices.fetch_prices`)."""
    return fetch_prices(name, location, **options)
