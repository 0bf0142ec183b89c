"""Traded amount per exchange per one-minute event-time window, as the volume-spike rule sees it.

Clean traffic stays under a fixed share of the rule's minimum amount in every window, so
no window can spike; injected bursts are sized from the same windows the detector uses.
"""

from __future__ import annotations

from decimal import Decimal
from statistics import median

MINUTE_MS = 60_000
# Shares of the rule's minimum spike amount a window may reach: clean trades stop at the
# first, injected single trades (outliers, wash cycles...) at the second, so neither spikes.
CLEAN_SHARE = Decimal("0.6")
INJECTED_SHARE = Decimal("0.95")


def minute_of(ms: int) -> int:
    """The index of the one-minute window holding `ms` (windows start on whole minutes)."""
    return ms // MINUTE_MS


class MinuteLedger:
    """Running per-minute traded amounts; forgets windows older than the rule's history."""

    def __init__(self, history_windows: int) -> None:
        self._history = history_windows
        self._amounts: dict[str, dict[int, Decimal]] = {}

    def add(self, exchange_id: str, ms: int, amount: Decimal) -> None:
        windows = self._amounts.setdefault(exchange_id, {})
        minute = minute_of(ms)
        if minute not in windows:
            for old in [m for m in windows if m < minute - self._history]:
                del windows[old]
        windows[minute] = windows.get(minute, Decimal(0)) + amount

    def amount(self, exchange_id: str, ms: int) -> Decimal:
        """Amount traded so far in the window holding `ms`."""
        return self._amounts.get(exchange_id, {}).get(minute_of(ms), Decimal(0))

    def baseline(self, exchange_id: str, ms: int) -> Decimal:
        """Median of the previous closed windows (an empty window counts as 0)."""
        windows = self._amounts.get(exchange_id, {})
        minute = minute_of(ms)
        return Decimal(median(windows.get(m, Decimal(0)) for m in range(minute - self._history, minute)))
