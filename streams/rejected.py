"""The dm.rejected record: a rejected message as received, and why (see ARCHITECTURE.md, "Processing guarantees")."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from models.clock import rfc3339
from sinks.clickhouse import Rejected


def rejected_record(rejected: Rejected) -> bytes:
    """JSON object: the message as UTF-8 text (or base64 when it is not UTF-8), its place and the reason."""
    try:
        raw_text, encoding = rejected.raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        raw_text, encoding = base64.b64encode(rejected.raw).decode(), "base64"
    return json.dumps(
        {
            "reason": rejected.reason,
            "detail": rejected.detail,
            "topic": rejected.topic,
            "partition": rejected.partition,
            "offset": rejected.offset,
            "key": rejected.key.decode("utf-8", errors="replace") if rejected.key is not None else None,
            "raw": raw_text,
            "raw_encoding": encoding,
            "exchange_id": rejected.exchange_id or None,
            "event_id": rejected.event_id or None,
            "rejected_at": rfc3339(datetime.now(UTC)),
        },
        ensure_ascii=False,
    ).encode()
