"""Signed producers (contract, Amendment 1) through the real stack: a worker holding a keys file, messages on the
real broker with good, missing, foreign, garbage and wrong signatures, rows read back from the real store.

The attacks are those of issue 25: anyone who can write to the broker forging an exchange's events (its
heartbeats, so that its silence raises no alert) or squatting one of its event ids before it sends the event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from dmm.query import query_rows, wait_until_drained
from dmm.stack import EmbeddedStack
from models.keys import KeyRing, SigningKey, load_keys
from settings import IngestSettings
from streams.kafka_client import client_options
from tests.support.stack import stack_settings

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parents[1] / "fixtures"
START = datetime.fromisoformat("2026-11-21T10:00:00+08:00")
SECRETS = {"SHDEX-old": "1f" * 32, "SHDEX-new": "2e" * 48, "SZDEX-1": "3d" * 32}
Headers = list[tuple[str, bytes]]


def event(name: str, seconds: float, **changes: Any) -> bytes:
    """A fixture event, `seconds` after START."""
    at = (START + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
    document = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return json.dumps({**document, "occurred_at": at, **changes}, ensure_ascii=False).encode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, KeyRing]:
    path = tmp_path_factory.mktemp("keys") / "producer-keys.csv"
    rows = [f"{name.split('-')[0]},{name},{secret}" for name, secret in SECRETS.items()]
    path.write_text("exchange_id,key_id,secret\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path, load_keys(path)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, keys: tuple[Path, KeyRing]) -> Iterator[EmbeddedStack]:
    workdir = tmp_path_factory.mktemp("stack")
    settings = stack_settings(workdir).model_copy(update={"ingest": IngestSettings(keys_file=keys[0])})
    with EmbeddedStack(settings, workdir) as running:
        yield running


def key(ring: KeyRing, key_id: str) -> SigningKey:
    return next(k for k in ring.keys if k.key_id == key_id)


@pytest.fixture(scope="module")
def sent(stack: EmbeddedStack, keys: tuple[Path, KeyRing]) -> dict[str, bytes]:
    """Every message, in order, on the stack's broker; returns each one's value by a name."""
    ring = keys[1]
    old, new, szdex = key(ring, "SHDEX-old"), key(ring, "SHDEX-new"), key(ring, "SZDEX-1")
    messages: list[tuple[str, bytes, Headers]] = []

    def send(name: str, value: bytes, headers: Headers) -> None:
        messages.append((name, value, headers))

    # Both exchanges send, signed: SZDEX is seen, then only its forged heartbeats follow.
    trade = event("trade", 0)
    send("signed trade", trade, old.headers(trade))
    beat = event("heartbeat", 1, exchange_id="SZDEX", event_id="SZDEX-H-1", seq=1)
    send("SZDEX heartbeat", beat, szdex.headers(beat))
    # Rotation: SHDEX's second key is accepted beside its first.
    for n, signer in ((1, old), (2, new)):
        usage = event("usage", 2 + n, event_id=f"SHDEX-U-ROTATED-{n}")
        send(f"usage signed with {signer.key_id}", usage, signer.headers(usage))
    # Attacks on SHDEX: usage (read as columns) and trades (validated one by one).
    missing = event("usage", 10, event_id="SHDEX-U-MISSING")
    send("missing", missing, [])
    foreign = event("trade", 11, event_id="SHDEX-T-FOREIGN", trade_id="T-FOREIGN")
    send("foreign", foreign, szdex.headers(foreign))  # a valid signature, but SZDEX's key
    garbage = event("usage", 12, event_id="SHDEX-U-GARBAGE")
    send("garbage", garbage, [("dm-key", b"SHDEX-old"), ("dm-sig", b"\x00garbage")])
    tampered = event("trade", 13, event_id="SHDEX-T-WRONG", trade_id="T-WRONG")
    wrong = tampered.replace(b'"buyer_id": "', b'"buyer_id": "X')  # signed, then changed on the way
    send("wrong", wrong, old.headers(tampered))
    # A squatter takes an id first; the exchange's own event with that id is then stored, not a duplicate.
    squatted = event("trade", 14, event_id="SHDEX-T-SQUAT", trade_id="T-SQUAT")
    send("squatter", squatted.replace(b'"quantity": 2', b'"quantity": 1').replace(b'"24000.00"', b'"12000.00"'), [])
    send("squatted id, signed", squatted, old.headers(squatted))
    # A field rule is not judged before the signature; once signed, it is.
    invalid = event("trade", 15, event_id="SHDEX-T-INVALID", quantity=0)
    send("invalid, unsigned", invalid, [])
    invalid_signed = event("trade", 15, event_id="SHDEX-T-INVALID-2", quantity=0)
    send("invalid, signed", invalid_signed, old.headers(invalid_signed))
    # No known exchange to hold them to: their own reasons.
    send("unknown exchange", event("trade", 16, exchange_id="NOPE", event_id="NOPE-T-1"), [])
    send("malformed", b'{"exchange_id": "SHDEX"', [])
    # SZDEX goes silent; forged heartbeats try to hide it, while SHDEX sends on, signed, for five minutes.
    for n, second in enumerate(range(30, 330, 30)):
        forged = event("heartbeat", second, exchange_id="SZDEX", event_id=f"SZDEX-H-FORGED-{n}", seq=2 + n)
        send(f"forged heartbeat {n}", forged, old.headers(forged) if n % 2 else [])
        usage = event("usage", second + 1, event_id=f"SHDEX-U-ON-{n}")
        send(f"SHDEX usage {n}", usage, new.headers(usage))

    producer = KafkaProducer(**client_options(stack.settings.kafka), acks="all")
    try:
        for _, value, headers in messages:
            producer.send(stack.settings.kafka.events_topic, value=value, key=b"P", headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close()
    wait_until_drained(stack.settings, timeout=300)
    return {name: value for name, value, _ in messages}


def rejected(stack: EmbeddedStack) -> dict[str, dict[str, Any]]:
    rows = query_rows(stack.settings, "SELECT event_id, reason, detail, raw FROM datamarket.rejected_events FINAL")
    return {row["event_id"] or row["raw"]: row for row in rows}


def stored_ids(stack: EmbeddedStack) -> set[str]:
    tables = ("trades", "usage", "heartbeats")
    sql = " UNION ALL ".join(f"SELECT event_id FROM datamarket.{table} FINAL" for table in tables)
    return {row["event_id"] for row in query_rows(stack.settings, sql)}


def test_forged_and_unsigned_messages_of_a_known_exchange_are_rejected_unauthenticated_raw_kept(
    stack: EmbeddedStack, sent: dict[str, bytes]
) -> None:
    rows = rejected(stack)
    expected = {
        "SHDEX-U-MISSING": ("missing", "missing header dm-key and dm-sig"),
        "SHDEX-T-FOREIGN": ("foreign", "unknown key for exchange SHDEX: dm-key 'SZDEX-1'"),
        "SHDEX-U-GARBAGE": ("garbage", "bad signature: dm-sig does not verify under SHDEX's key 'SHDEX-old'"),
        "SHDEX-T-WRONG": ("wrong", "bad signature: dm-sig does not verify under SHDEX's key 'SHDEX-old'"),
        "SHDEX-T-SQUAT": ("squatter", "missing header"),
        "SHDEX-T-INVALID": ("invalid, unsigned", "missing header"),
    }
    for event_id, (name, detail) in expected.items():
        row = rows[event_id]
        assert (row["reason"], row["raw"].encode()) == ("unauthenticated", sent[name]), event_id
        assert row["detail"].startswith(detail), row["detail"]
    for n in range(10):
        forged = rows[f"SZDEX-H-FORGED-{n}"]
        assert forged["reason"] == "unauthenticated"
        assert ("unknown key for exchange SZDEX" if n % 2 else "missing header") in forged["detail"]
    for row in rows.values():
        assert not any(secret in row["detail"].lower() for secret in SECRETS.values())


def test_signed_messages_are_stored_with_either_key_of_their_exchange(
    stack: EmbeddedStack, sent: dict[str, bytes]
) -> None:
    stored = stored_ids(stack)
    assert {"SHDEX-T-20261121-004211", "SZDEX-H-1", "SHDEX-U-ROTATED-1", "SHDEX-U-ROTATED-2"} <= stored
    assert {f"SHDEX-U-ON-{n}" for n in range(10)} <= stored
    assert not {i for i in stored if "FORGED" in i or i in ("SHDEX-U-MISSING", "SHDEX-T-FOREIGN", "SHDEX-T-WRONG")}
    # The squatter took nothing: the exchange's own event is stored under the id, as sent.
    squat = query_rows(stack.settings, "SELECT quantity FROM datamarket.trades FINAL WHERE event_id = 'SHDEX-T-SQUAT'")
    assert [int(row["quantity"]) for row in squat] == [2]
    duplicates = query_rows(stack.settings, "SELECT event_id FROM datamarket.duplicate_events")
    assert "SHDEX-T-SQUAT" not in {row["event_id"] for row in duplicates}


def test_field_rules_apply_once_signed_and_messages_naming_no_known_exchange_keep_their_reasons(
    stack: EmbeddedStack, sent: dict[str, bytes]
) -> None:
    rows = rejected(stack)
    assert rows["SHDEX-T-INVALID-2"]["reason"] == "invalid"
    assert rows["NOPE-T-1"]["reason"] == "unknown_exchange"
    assert rows[sent["malformed"].decode()]["reason"] == "malformed"


def test_forged_heartbeats_do_not_hide_a_silent_exchange(stack: EmbeddedStack, sent: dict[str, bytes]) -> None:
    alerts = query_rows(stack.settings, "SELECT exchange_id FROM datamarket.alerts WHERE kind = 'exchange_silent'")
    assert [row["exchange_id"] for row in alerts] == ["SZDEX"]
