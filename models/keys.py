"""Producer keys (contract, Amendment 1): the keys file the regulator issues, and the signature it asks for.

The file is CSV with the header `exchange_id,key_id,secret`: one row per key, the secret in hex, at least
32 bytes. An exchange may hold several keys at once: that is how keys rotate (add the new `key_id`, move the
producers to it, then remove the old row). A message is signed with two Kafka record headers, `dm-key` (the
key's id) and `dm-sig` (the lower-case hex HMAC-SHA256 of the value bytes exactly as sent).

The monitor reads the file to verify (`streams.authenticate`), the producer SDK and `dmm replay` to sign. A file
that is wrong in any row is refused whole, with the line at fault: a worker that skipped a bad row would reject
that exchange's every event as `unauthenticated`, which is the silence this file is there to prevent.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
from binascii import hexlify
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from models.registry import exchanges

KEY_HEADER = "dm-key"
SIGNATURE_HEADER = "dm-sig"
COLUMNS = ("exchange_id", "key_id", "secret")
MIN_SECRET_BYTES = 32

Headers = list[tuple[str, bytes]]


def signature(secret: bytes, value: bytes) -> bytes:
    """A `dm-sig` header (an exchange's event, or the operators' rule change): lower-case hex HMAC-SHA256 of the
    message value under `secret`."""
    return hexlify(hmac.digest(secret, value, hashlib.sha256))


class KeysFileError(ValueError):
    """The keys file cannot be used as it is; the message names the file and the line."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One of an exchange's keys. The secret is left out of `repr`, so it never reaches a log or a traceback."""

    exchange_id: str
    key_id: str
    secret: bytes = field(repr=False)

    def signature(self, value: bytes) -> bytes:
        """The `dm-sig` header of a message value under this key."""
        return signature(self.secret, value)

    def headers(self, value: bytes) -> Headers:
        """The two record headers that sign `value` with this key."""
        return [(KEY_HEADER, self.key_id.encode()), (SIGNATURE_HEADER, self.signature(value))]


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Every key of a keys file, in file order."""

    keys: tuple[SigningKey, ...]

    def signing_key(self, exchange_id: object) -> SigningKey | None:
        """The key a producer signs an exchange's messages with: its first in the file (None: it has none)."""
        return next((key for key in self.keys if key.exchange_id == exchange_id), None)

    @property
    def exchanges(self) -> frozenset[str]:
        """The exchanges holding at least one key."""
        return frozenset(key.exchange_id for key in self.keys)


def load_keys(path: Path) -> KeyRing:
    """Read and check a keys file; raise `KeysFileError` naming the line at fault (never its secret)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM, as spreadsheets save CSV, is no part of the header
    except OSError as exc:
        raise KeysFileError(f"keys file {path}: cannot read it ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise KeysFileError(f"keys file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse_keys(text.splitlines(), str(path))


def parse_keys(lines: Iterable[str], source: str) -> KeyRing:
    """`load_keys` on lines already read; `source` names them in errors."""
    rows = csv.reader(lines)
    header = [name.strip() for name in next(rows, [])]
    if tuple(header) != COLUMNS:
        # What the line holds is not shown: without its header, a file's first line is a key, secret and all.
        raise KeysFileError(f"{source}, line 1: the header must be {','.join(COLUMNS)} (is it missing?)")
    known = exchanges()
    keys: list[SigningKey] = []
    first_line: dict[tuple[str, str], int] = {}
    for row in rows:
        line = rows.line_num
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        where = f"{source}, line {line}"
        if len(row) != len(COLUMNS):
            raise KeysFileError(f"{where}: {len(row)} field(s); a row is {','.join(COLUMNS)}")
        exchange_id, key_id, secret_hex = (cell.strip() for cell in row)
        if exchange_id not in known:
            raise KeysFileError(f"{where}: exchange_id {exchange_id!r} is not a code of exchanges.csv")
        if not key_id:
            raise KeysFileError(f"{where}: key_id is empty; give each of {exchange_id}'s keys an id")
        earlier = first_line.setdefault((exchange_id, key_id), line)
        if earlier != line:
            raise KeysFileError(f"{where}: key_id {key_id!r} of {exchange_id} is on line {earlier} already")
        keys.append(SigningKey(exchange_id, key_id, _secret(secret_hex, f"{where} ({exchange_id} {key_id!r})")))
    if not keys:
        raise KeysFileError(f"{source}: no key; add a row {','.join(COLUMNS)} for each exchange")
    return KeyRing(tuple(keys))


def _secret(text: str, where: str) -> bytes:
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise KeysFileError(f"{where}: the secret is not hex (two hex digits a byte, nothing else)") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise KeysFileError(
            f"{where}: the secret is {len(secret)} bytes; at least {MIN_SECRET_BYTES} are required "
            f"({2 * MIN_SECRET_BYTES} hex digits, e.g. from `openssl rand -hex {MIN_SECRET_BYTES}`)"
        )
    return secret
