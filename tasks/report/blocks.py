"""A tiny document model the Markdown and HTML renderers share, and the number formats."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, TypeGuard


@dataclass(frozen=True)
class Bold:
    text: str


@dataclass(frozen=True)
class Code:
    text: str


Inline = str | Bold | Code


@dataclass(frozen=True)
class Paragraph:
    parts: tuple[Inline, ...]


@dataclass(frozen=True)
class Bullets:
    items: tuple[Paragraph, ...]
    ordered: bool = False  # numbered steps


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class Image:
    """A PNG of the report's `images`, by file name."""

    filename: str
    alt: str


Block = Paragraph | Bullets | Table | Image


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...] = field(default_factory=tuple)


def para(*parts: Inline) -> Paragraph:
    return Paragraph(tuple(parts))


def table(headers: list[str], rows: list[list[str]], caption: str = "") -> Table:
    return Table(tuple(headers), tuple(tuple(row) for row in rows), caption)


# -- number formats (None and non-finite values print as an em dash) ---------------------

MISSING = "—"


def _ok(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def usd(value: float | None) -> str:
    """Dollars to the cent; four significant digits below one cent."""
    if value is None or not math.isfinite(value):
        return MISSING
    return f"${value:,.2f}" if abs(value) >= 0.01 or value == 0 else f"${value:.4g}"


def usd_precise(value: float | None) -> str:
    """Dollars to four significant digits (prices, $ per million tokens), cents above $100."""
    if value is None or not math.isfinite(value):
        return MISSING
    if abs(value) >= 100 or value == 0:
        return f"${value:,.2f}"
    decimals = max(2, 3 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    whole, fraction = text.split(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"  # 0.7000 → 0.70, 0.08333 stays


def usd_per_token(value: float | None) -> str:
    return f"${value:.4g}" if _ok(value) else MISSING


def usd_per_mtoken(cost_per_token: float | None) -> str:
    """$/token shown per million tokens."""
    if cost_per_token is None or not math.isfinite(cost_per_token):
        return MISSING
    return usd_precise(cost_per_token * 1e6)


def rate(tokens_per_s: float | None) -> str:
    return f"{tokens_per_s:,.0f}" if _ok(tokens_per_s) else MISSING


def signed_pct(fraction: float | None) -> str:
    """A relative change as a signed percentage: 0.031 → +3.1%."""
    return f"{fraction * 100:+.1f}%" if _ok(fraction) else MISSING


def signed_int(value: int) -> str:
    return f"{value:+d}" if value else "0"


def relative_change(before: float | None, after: float | None) -> float | None:
    if not _ok(before) or not _ok(after) or not before:
        return None
    return after / before - 1.0


def finite_number(value: Any) -> float | None:
    """`value` as a finite float, or None when it is missing, not a number, NaN or infinite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
