"""What the HTTP routes (API and console) need of the running worker, and nothing more.

Kept narrow so the web layer never reaches into the pipeline, and so `streams.app`
(which mounts the routes) and the routes do not import each other.
"""

from __future__ import annotations

from typing import Any, Protocol

from settings import RuleSettings
from sinks.clickhouse import Store


class WorkerView(Protocol):
    @property
    def store(self) -> Store: ...

    def status(self) -> dict[str, Any]: ...

    def rules(self) -> RuleSettings: ...

    def alert_resolved(self, dedup_key: str) -> None: ...
