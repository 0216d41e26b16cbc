"""The interface every price source implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pandas as pd


@runtime_checkable
class PriceSource(Protocol):
    """A named source that returns the canonical price table (see `tasks.prices.schema`)."""

    name: str

    def fetch(self) -> pd.DataFrame:
        """Fetch prices; raise a `tasks.prices.errors.PriceSourceError` subclass on failure."""
        ...
