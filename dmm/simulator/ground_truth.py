"""Labelled incidents: what was injected, where, and which events prove it.

A detector is scored against this file: each line is one incident that exactly one alert
of `kind` should report, naming the same evidence events and event-time span.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from dmm.simulator.wire import rfc3339


@dataclass(frozen=True, slots=True)
class Incident:
    kind: str
    exchange_id: str
    product_id: str | None
    event_ids: tuple[str, ...]
    window_start: str
    window_end: str
    note: str

    @classmethod
    def spanning(
        cls, kind: str, exchange_id: str, product_id: str | None, evidence: list[tuple[str, int]], note: str
    ) -> Incident:
        """An incident whose window is the event-time span of its (event_id, ms) evidence."""
        times = [ms for _, ms in evidence]
        return cls(
            kind=kind,
            exchange_id=exchange_id,
            product_id=product_id,
            event_ids=tuple(event_id for event_id, _ in evidence),
            window_start=rfc3339(min(times)),
            window_end=rfc3339(max(times)),
            note=note,
        )

    def to_json(self) -> str:
        record = asdict(self)
        record["event_ids"] = list(self.event_ids)
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def write_truth(incidents: Iterable[Incident], path: Path) -> int:
    """Write one JSON object per line; returns how many incidents were written."""
    lines = [incident.to_json() + "\n" for incident in incidents]
    path.write_text("".join(lines), encoding="utf-8")
    return len(lines)


def read_truth(path: Path) -> list[Incident]:
    """Load a ground-truth file written by `write_truth`."""
    incidents = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        record["event_ids"] = tuple(record["event_ids"])
        incidents.append(Incident(**record))
    return incidents
