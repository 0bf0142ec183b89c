"""Command-line choices of a run: anomalies to inject (`KIND=N`, the `all` scenario) and
high-quality value shares per exchange (`EXCHANGE=SHARE`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from dmm.simulator.anomalies import KINDS

# Two of each kind: both wash-cycle shapes (A->B->A, A->B->C->A) and both outlier sides.
SCENARIO_ALL: Final[dict[str, int]] = {kind: 2 for kind in KINDS}


def parse_injections(specs: Iterable[str], scenario: str | None = None) -> dict[str, int]:
    """Counts per kind from `scenario` ("all" or none) overridden by `KIND=N` specs."""
    if scenario not in (None, "all"):
        raise ValueError(f"unknown scenario {scenario!r}; the only scenario is 'all'")
    counts = dict(SCENARIO_ALL) if scenario == "all" else {}
    for spec in specs:
        kind, sep, number = spec.partition("=")
        if not sep or kind not in KINDS or not number.isdigit():
            raise ValueError(f"expected KIND=N with KIND one of {', '.join(KINDS)}; got {spec!r}")
        counts[kind] = int(number)
    return {kind: count for kind, count in counts.items() if count > 0}


def parse_shares(specs: Iterable[str]) -> dict[str, float]:
    """`EXCHANGE=SHARE` specs as a mapping (checked by SimulationConfig); `none` alone gives no targets."""
    specs = list(specs)
    if specs == ["none"]:
        return {}
    shares: dict[str, float] = {}
    for spec in specs:
        code, sep, number = spec.partition("=")
        try:
            if not sep:
                raise ValueError(spec)
            shares[code] = float(number)
        except ValueError:
            raise ValueError(f"expected EXCHANGE=SHARE, e.g. SHDEX=0.6, or 'none'; got {spec!r}") from None
    return shares
