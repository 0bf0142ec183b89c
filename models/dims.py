"""A product's classification (sector, category, source, quality): what market volumes are broken down by."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dims:
    """The product's classification, looked up from its listing when the event arrived."""

    sector: str = "unknown"
    category: str = "unknown"
    source: str = "unknown"
    high_quality: bool = False
