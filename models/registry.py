"""The contract's registries of exchanges and sectors, loaded from its CSVs (package data)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib.resources import files


@dataclass(frozen=True, slots=True)
class Exchange:
    code: str
    name_zh: str
    name_en: str
    province: str
    city: str


@dataclass(frozen=True, slots=True)
class Sector:
    code: str
    name_zh: str
    name_en: str


def _rows(name: str) -> list[dict[str, str]]:
    text = files("models").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@cache
def exchanges() -> dict[str, Exchange]:
    return {row["code"]: Exchange(**row) for row in _rows("exchanges.csv")}


@cache
def sectors() -> dict[str, Sector]:
    return {row["code"]: Sector(**row) for row in _rows("sectors.csv")}
