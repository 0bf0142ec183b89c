"""Traded amount per exchange per one-minute event-time window, as the volume-spike rule sees it.

The rule fires on a window that reaches both its minimum amount and its ratio x the median of
the previous windows, so a window below the larger of the two never fires. Clean traffic stays
under a fixed share of that threshold in every window, so no window can spike (a busy exchange
may trade more than the minimum once its median is high); injected bursts are sized from the
same windows the detector uses.
"""

from __future__ import annotations

from decimal import Decimal
from statistics import median

from settings import RuleSettings

MINUTE_MS = 60_000
# Shares of a window's spike threshold it may reach: clean trades stop at the first, injected
# single trades (outliers, wash cycles...) at the second, so neither spikes.
CLEAN_SHARE = Decimal("0.6")
INJECTED_SHARE = Decimal("0.95")


def minute_of(ms: int) -> int:
    """The index of the one-minute window holding `ms` (windows start on whole minutes)."""
    return ms // MINUTE_MS


class MinuteLedger:
    """Running per-minute traded amounts; forgets windows older than the rule's history."""

    def __init__(self, rules: RuleSettings) -> None:
        self._history = rules.volume_spike_history_windows
        self._ratio = rules.volume_spike_ratio
        self._min_amount = rules.volume_spike_min_amount
        self._amounts: dict[str, dict[int, Decimal]] = {}
        # (minute, baseline) per exchange: the previous windows no longer change once the minute has begun.
        self._baselines: dict[str, tuple[int, Decimal]] = {}

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
        """Median of the previous windows (an empty window, or one before the run, counts as 0: never above the
        detector's median, which only counts windows since it first saw the exchange)."""
        minute = minute_of(ms)
        cached = self._baselines.get(exchange_id)
        if cached is not None and cached[0] == minute:
            return cached[1]
        windows = self._amounts.get(exchange_id, {})
        baseline = Decimal(median(windows.get(m, Decimal(0)) for m in range(minute - self._history, minute)))
        self._baselines[exchange_id] = (minute, baseline)
        return baseline

    def threshold(self, exchange_id: str, ms: int) -> Decimal:
        """The least amount the window holding `ms` would spike at: the rule's minimum or its ratio x the median."""
        return max(self._min_amount, self._ratio * self.baseline(exchange_id, ms))

    def room(self, exchange_id: str, ms: int, share: Decimal) -> Decimal:
        """How much more the window holding `ms` may trade while staying under `share` of its threshold."""
        return share * self.threshold(exchange_id, ms) - self.amount(exchange_id, ms)
