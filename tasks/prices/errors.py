"""Typed failures of price sources: each names the source, the URL (secrets redacted) and why."""

from __future__ import annotations

import re

# Query parameters whose values must never reach a log line or an error message.
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:[\w.-]*(?:key|token|sig|signature|secret|password|credential|code)"
    r"))=([^&;#]*)"
)
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")


def redact_url(url: str) -> str:
    """`url` with credentials in the user-info part and secret-looking query values hidden."""
    url = _USERINFO.sub(r"\1***@", url)
    return _SECRET_QUERY.sub(r"\1=REDACTED", url)


class PriceSourceError(Exception):
    """A price source could not produce a price table."""

    def __init__(self, source: str, url: str, reason: str) -> None:
        self.source = source
        self.url = redact_url(url)
        self.reason = reason
        super().__init__(f"{source}: {reason}" + (f" [{self.url}]" if self.url else ""))


class SourceConfigError(PriceSourceError):
    """The source was set up wrongly (unknown name, missing or unusable location)."""


class InsecureUrl(SourceConfigError):
    """A URL is not HTTPS and not on loopback, or has no host."""


class HttpStatusError(PriceSourceError):
    """The server answered with an error status (after any retries)."""

    def __init__(self, source: str, url: str, reason: str, status: int) -> None:
        self.status = status
        super().__init__(source, url, reason)


class SourceTimeout(PriceSourceError):
    """Connecting or reading took longer than the configured timeout (after any retries)."""


class SourceUnreachable(PriceSourceError):
    """The connection failed (refused, reset, DNS) after any retries."""


class ResponseTooLarge(PriceSourceError):
    """A response body exceeded the configured byte cap."""


class MalformedResponse(PriceSourceError):
    """The body is not what the source expects (bad JSON/CSV, truncated, wrong shape)."""


class PagingError(PriceSourceError):
    """Paging went wrong: too many pages, a page loop, or a next-page link to another host."""
