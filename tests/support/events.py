"""The contract's example events (tests/fixtures), changed as a test needs, as the bytes a producer sends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parents[1] / "fixtures"
TOPIC = "dm.events"


def fixture(name: str, **changes: Any) -> bytes:
    """The example `name` event (trade, listing, usage, heartbeat) with `changes` applied."""
    event = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    event.update(changes)
    return json.dumps(event, ensure_ascii=False).encode()
