"""Producer signatures on dm.events (contract, Amendment 1), checked in the decode stage.

While a keys file is configured (`DMM_INGEST__KEYS_FILE`), a message naming a known exchange must carry
`dm-key` (one of *that* exchange's key ids) and `dm-sig` (lower-case hex HMAC-SHA256 of its value bytes);
otherwise it is rejected as `unauthenticated`, ahead of every field rule. A message that is no JSON object,
names another schema or no known exchange keeps its own reason: there is no exchange to hold it to.

The pipeline decodes first and asks here only about an outcome that names a known exchange (an event, or a
rejection for a field rule), so the signature is checked once per message, against the value's bytes as
fetched. An HMAC costs ~1.8 µs a message through `hmac.digest` (OpenSSL derives the key's pads on every
call); each key's pads are derived once here instead (RFC 2104: the inner and outer SHA-256 states after the
padded key, as the standard library's own `hmac.HMAC` keeps them), and a message costs two state copies and its
bytes hashed, ~0.8 µs. Verification is compared in constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import logging
from binascii import hexlify
from collections.abc import Sequence
from hmac import compare_digest
from pathlib import Path
from typing import TYPE_CHECKING

from models import AnyEvent, exchanges
from models.keys import KEY_HEADER, SIGNATURE_HEADER, KeyRing, load_keys
from streams.decode import Reason, Rejection

if TYPE_CHECKING:
    from _hashlib import HASH

log = logging.getLogger("dmm.authenticate")

Headers = Sequence[tuple[str, bytes | None]]
# Rejections that stand whatever the signature: the message names no exchange to hold it to (contract order).
_BEFORE_SIGNATURE: frozenset[Reason] = frozenset({"malformed", "unsupported_schema", "unknown_exchange"})
_BLOCK = hashlib.sha256().block_size
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))
_SHOWN = 64  # characters of a producer's key id quoted in a detail


class Authenticator:
    """Checks the signatures of dm.events against a keys file, keys resolved per (exchange, key id) up front."""

    def __init__(self, keys: KeyRing) -> None:
        # (exchange, key id) -> its pads; typed to be asked with a header's value, which may be None
        self._pads: dict[tuple[str, bytes | None], tuple[HASH, HASH]] = {
            (key.exchange_id, key.key_id.encode()): _pads(key.secret) for key in keys.keys
        }
        self._keyed = keys.exchanges
        self._known = frozenset(exchanges())

    @classmethod
    def configured(cls, keys_file: Path | None) -> Authenticator | None:
        """The worker's authenticator for `DMM_INGEST__KEYS_FILE`, or None when it is unset (nothing is checked).
        Raises `KeysFileError` naming the line at fault."""
        if keys_file is None:
            return None
        keys = load_keys(keys_file)
        unkeyed = sorted(frozenset(exchanges()) - keys.exchanges)
        if unkeyed:
            log.warning(
                "exchanges without a producer key: every message naming them is rejected as unauthenticated",
                extra={"keys_file": str(keys_file), "exchanges": unkeyed},
            )
        return cls(keys)

    def verified(self, outcome: AnyEvent | Rejection, headers: Headers, value: bytes | None) -> AnyEvent | Rejection:
        """The decoder's outcome for a message, or its `unauthenticated` rejection if it names a known exchange
        and is not signed by one of that exchange's keys."""
        if type(outcome) is Rejection and (
            outcome.reason in _BEFORE_SIGNATURE or outcome.exchange_id not in self._known
        ):
            return outcome
        detail = self.failure(outcome.exchange_id, headers, value or b"")
        if detail is None:
            return outcome
        return Rejection("unauthenticated", detail, outcome.exchange_id, outcome.event_id)

    def failure(self, exchange_id: str, headers: Headers, value: bytes) -> str | None:
        """Why a message of `exchange_id` (a known one) is not authenticated, or None if it is. It runs for every
        message: the headers every signing producer sends (`dm-key` then `dm-sig`, nothing else) are read
        without a dict; any other shape, and every failure, is worked out by `_why`."""
        try:
            (first, key_id), (second, signature) = headers
        except ValueError:
            return self._why(exchange_id, headers, value)
        pads = self._pads.get((exchange_id, key_id)) if first == KEY_HEADER and second == SIGNATURE_HEADER else None
        if pads is not None and signature is not None:
            inner, outer = pads[0].copy(), pads[1].copy()
            inner.update(value)
            outer.update(inner.digest())
            if compare_digest(hexlify(outer.digest()), signature):
                return None
        return self._why(exchange_id, headers, value)

    def _why(self, exchange_id: str, headers: Headers, value: bytes) -> str | None:
        """`failure` for any headers, saying which check fails (None: they verify, in another order)."""
        named = dict(headers)  # a header given twice: the last one counts, as Kafka's `lastHeader`
        key_id, signature = named.get(KEY_HEADER), named.get(SIGNATURE_HEADER)
        if key_id is None or signature is None:
            missing = " and ".join(h for h, v in ((KEY_HEADER, key_id), (SIGNATURE_HEADER, signature)) if v is None)
            return (
                f"missing header {missing}: while producer keys are configured, every message of {exchange_id} "
                f"must carry {KEY_HEADER} and {SIGNATURE_HEADER} (HMAC-SHA256 of the value, lower-case hex)"
            )
        if exchange_id not in self._keyed:
            return (
                f"unknown key for exchange {exchange_id}: the monitor's keys file holds no key of {exchange_id}; "
                "the regulator must issue it one before its messages are accepted"
            )
        pads = self._pads.get((exchange_id, key_id))
        shown = key_id.decode("utf-8", "replace")[:_SHOWN]
        if pads is None:
            return (
                f"unknown key for exchange {exchange_id}: {KEY_HEADER} {shown!r} is not one of {exchange_id}'s "
                "keys; sign with a key the regulator issued to this exchange"
            )
        inner, outer = pads[0].copy(), pads[1].copy()
        inner.update(value)
        outer.update(inner.digest())
        if not compare_digest(hexlify(outer.digest()), signature):
            return (
                f"bad signature: {SIGNATURE_HEADER} does not verify under {exchange_id}'s key {shown!r}; sign the "
                "value's bytes exactly as sent (HMAC-SHA256, lower-case hex)"
            )
        return None


def _pads(secret: bytes) -> tuple[HASH, HASH]:
    """SHA-256 states after a key's inner and outer padded blocks (RFC 2104), copied for each message."""
    if len(secret) > _BLOCK:
        secret = hashlib.sha256(secret).digest()
    secret = secret.ljust(_BLOCK, b"\0")
    return hashlib.sha256(secret.translate(_INNER_PAD)), hashlib.sha256(secret.translate(_OUTER_PAD))
