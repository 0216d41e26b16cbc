"""Session-wide test settings."""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

pytest_plugins = ("tests.support.http_server",)


def pytest_collection_modifyitems(items: list) -> None:
    """The slowest tests (real Prefect servers, marked `server`) first: with `-n 2` each
    starts at once on its own worker instead of ending the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("server") is None)
