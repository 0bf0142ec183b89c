"""Producer authentication (`streams.authenticate`): the contract's outcome for each kind of message, and an HMAC
that is the standard one for every length of secret and value."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from models import Trade
from models.keys import KeyRing, SigningKey, load_keys
from streams.authenticate import Authenticator
from streams.decode import Rejection, decode

FIXTURES = Path(__file__).parents[1] / "fixtures"
SHDEX = SigningKey("SHDEX", "k1", bytes(range(32)))
SHDEX_NEXT = SigningKey("SHDEX", "k2", bytes(range(100, 164)))
SZDEX = SigningKey("SZDEX", "k1", bytes(range(200, 240)))  # the same key id as SHDEX's first: another key
RING = KeyRing((SHDEX, SHDEX_NEXT, SZDEX))


def trade(**changes: Any) -> bytes:
    return json.dumps({**json.loads((FIXTURES / "trade.json").read_bytes()), **changes}, ensure_ascii=False).encode()


def judged(value: bytes, headers: list[tuple[str, bytes | None]]) -> Any:
    return Authenticator(RING).verified(decode(value), headers, value)


@pytest.mark.parametrize("length", [32, 63, 64, 65, 200])
def test_the_precomputed_hmac_is_the_standard_library_s_for_every_secret_and_value_length(length: int) -> None:
    """Secrets shorter than SHA-256's block are padded, longer ones hashed first (RFC 2104)."""
    secret = hashlib.sha512(str(length).encode()).digest() * 4
    key = SigningKey("SHDEX", "k", secret[:length])
    authenticator = Authenticator(KeyRing((key,)))
    for value in (b"", b"x", bytes(range(256)) * 5, trade().replace(b"SHDEX-T", b"S" * 900)):
        signature = hmac.new(key.secret, value, hashlib.sha256).hexdigest().encode()
        assert authenticator.failure("SHDEX", [("dm-key", b"k"), ("dm-sig", signature)], value) is None
        flipped = value[:-1] + bytes([value[-1] ^ 1]) if value else b"\0"
        assert authenticator.failure("SHDEX", [("dm-key", b"k"), ("dm-sig", signature)], flipped) is not None


def test_a_signed_event_of_either_key_of_its_exchange_is_accepted_as_decoded() -> None:
    value = trade()
    for key in (SHDEX, SHDEX_NEXT):  # rotation: both keys of the exchange verify
        outcome = judged(value, key.headers(value))
        assert isinstance(outcome, Trade) and outcome == decode(value)


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ([], "missing header dm-key and dm-sig"),
        ([("dm-key", b"k1")], "missing header dm-sig"),
        ([("dm-key", None), ("dm-sig", SHDEX.signature(trade()))], "missing header dm-key"),
        (SZDEX.headers(trade()), "bad signature"),  # SZDEX's k1 is not SHDEX's k1
        ([("dm-key", b"z9"), ("dm-sig", SHDEX.signature(trade()))], "unknown key for exchange SHDEX: dm-key 'z9'"),
        ([("dm-key", b"k1"), ("dm-sig", b"not hex at all")], "bad signature"),
        ([("dm-key", b"k1"), ("dm-sig", SHDEX.signature(trade()).upper())], "bad signature"),  # lower-case hex
        ([("dm-key", b"k1"), ("dm-sig", SHDEX.signature(trade(price="1.00")))], "bad signature"),
        ([("dm-key", b"k1"), ("dm-sig", SHDEX_NEXT.signature(trade()))], "bad signature"),
    ],
)
def test_an_unsigned_or_badly_signed_event_is_unauthenticated_and_says_why(
    headers: list[tuple[str, bytes | None]], detail: str
) -> None:
    outcome = judged(trade(), headers)
    assert isinstance(outcome, Rejection)
    assert (outcome.reason, outcome.exchange_id, outcome.event_id) == (
        "unauthenticated",
        "SHDEX",
        decode(trade()).event_id,
    )
    assert detail in outcome.detail
    for key in RING.keys:
        assert key.secret.hex() not in outcome.detail.lower()


def test_another_exchange_s_key_is_unknown_for_this_exchange() -> None:
    value = trade(exchange_id="SZDEX")
    outcome = judged(value, SHDEX_NEXT.headers(value))  # SHDEX's k2: SZDEX has no k2
    assert isinstance(outcome, Rejection) and outcome.reason == "unauthenticated"
    assert "unknown key for exchange SZDEX: dm-key 'k2'" in outcome.detail
    assert isinstance(judged(value, SZDEX.headers(value)), Trade)


def test_an_exchange_without_a_key_in_the_file_cannot_be_authenticated() -> None:
    value = trade(exchange_id="GZDEX")
    outcome = judged(value, SHDEX.headers(value))
    assert isinstance(outcome, Rejection) and outcome.reason == "unauthenticated"
    assert "holds no key of GZDEX" in outcome.detail


def test_a_field_rule_is_not_judged_before_the_signature_and_counts_once_signed() -> None:
    for value, reason in ((trade(quantity=0), "invalid"), (trade(amount="1.00"), "amount_mismatch")):
        unsigned = judged(value, [])
        assert isinstance(unsigned, Rejection) and unsigned.reason == "unauthenticated"
        signed = judged(value, SHDEX.headers(value))
        assert isinstance(signed, Rejection) and signed.reason == reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "malformed"),
        (b'["SHDEX"]', "malformed"),
        (trade(schema="dm.v2"), "unsupported_schema"),
        (trade(exchange_id="NOPE"), "unknown_exchange"),
        (trade(exchange_id="NOPE", quantity=0), "invalid"),  # names no known exchange: its own reason, as before
        (trade(exchange_id=None), "invalid"),
    ],
)
def test_a_message_naming_no_known_exchange_keeps_its_own_reason(value: bytes, reason: str) -> None:
    outcome = judged(value, [])
    assert isinstance(outcome, Rejection) and outcome.reason == reason
    assert outcome == decode(value)


def test_the_published_signed_record_verifies_with_the_published_keys_file() -> None:
    """docs/examples: the contract's example record and keys file, signed by someone else's tool (openssl)."""
    examples = Path(__file__).parents[2] / "docs" / "examples"
    record = json.loads((examples / "signed-trade.json").read_text(encoding="utf-8"))
    value = record["value"].encode()
    headers: list[tuple[str, bytes | None]] = [(name, text.encode()) for name, text in record["headers"].items()]
    authenticator = Authenticator(load_keys(examples / "keys.example.csv"))
    assert isinstance(authenticator.verified(decode(value), headers, value), Trade)
    assert isinstance(authenticator.verified(decode(value + b" "), headers, value + b" "), Rejection)


def test_headers_in_another_order_or_with_others_beside_them_verify_the_same() -> None:
    value = trade()
    key_header, signature = SHDEX.headers(value)
    for headers in (
        [signature, key_header],
        [("trace", b"1"), key_header, signature],
        [("dm-key", b"z9"), key_header, signature],  # a header given twice: the last one counts
    ):
        assert isinstance(judged(value, headers), Trade), headers
    twice = judged(value, [key_header, signature, ("dm-key", b"z9")])
    assert isinstance(twice, Rejection) and "dm-key 'z9'" in twice.detail
