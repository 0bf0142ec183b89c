"""The keys file (contract, Amendment 1): read exactly as written, refused whole with the line at fault, the
secret never shown; the signature is the contract's (lower-case hex HMAC-SHA256 of the value bytes)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from models.keys import KeysFileError, SigningKey, load_keys

SHDEX_1 = "11" * 32
SHDEX_2 = "a2" * 40  # 40 bytes: a longer secret is fine
SZDEX_1 = "3C" * 32  # upper-case hex is hex


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_keys_file_with_two_keys_for_one_exchange_is_read_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"exchange_id,key_id,secret\r\nSHDEX,2026-12,{SHDEX_1}\r\n\r\n"
        f" SZDEX , z1 , {SZDEX_1} \r\nSHDEX,2027-01,{SHDEX_2}\r\n",
    )
    ring = load_keys(path)
    assert [(k.exchange_id, k.key_id, k.secret) for k in ring.keys] == [
        ("SHDEX", "2026-12", bytes.fromhex(SHDEX_1)),
        ("SZDEX", "z1", bytes.fromhex(SZDEX_1)),
        ("SHDEX", "2027-01", bytes.fromhex(SHDEX_2)),
    ]
    assert ring.exchanges == {"SHDEX", "SZDEX"}
    assert ring.signing_key("SHDEX") == ring.keys[0]  # producers sign with an exchange's first key
    assert ring.signing_key("GZDEX") is None and ring.signing_key(None) is None


def test_a_spreadsheets_byte_order_mark_is_no_part_of_the_header(tmp_path: Path) -> None:
    path = tmp_path / "keys.csv"
    path.write_bytes(f"\ufeffexchange_id,key_id,secret\nSHDEX,k1,{SHDEX_1}\n".encode())
    assert [k.key_id for k in load_keys(path).keys] == ["k1"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (f"SHDEX,k1,{SHDEX_1}\n", "line 1: the header must be exchange_id,key_id,secret"),
        (f"exchange_id,key_id,secret\nSHDEX,k1,{SHDEX_1}\nNOPE,n1,{SHDEX_1}\n", "line 3: exchange_id 'NOPE' is not"),
        (f"exchange_id,key_id,secret\nSHDEX,k1,{SHDEX_1[:-1]}x\n", "line 2 (SHDEX 'k1'): the secret is not hex"),
        (f"exchange_id,key_id,secret\nSHDEX,k1,{SHDEX_1[:-1]}\n", "line 2 (SHDEX 'k1'): the secret is not hex"),
        (f"exchange_id,key_id,secret\nSHDEX,k1,{'ab' * 31}\n", "the secret is 31 bytes; at least 32 are required"),
        (f"exchange_id,key_id,secret\nSHDEX,,{SHDEX_1}\n", "line 2: key_id is empty"),
        (
            f"exchange_id,key_id,secret\nSHDEX,k1,{SHDEX_1}\nSHDEX,k1,{SHDEX_2}\n",
            "line 3: key_id 'k1' of SHDEX is on line 2",
        ),
        (f"exchange_id,key_id,secret\nSHDEX,k1,{SHDEX_1},x\n", "line 2: 4 field(s)"),
        ("exchange_id,key_id,secret\n\n", "no key"),
        ("", "line 1: the header must be"),
    ],
)
def test_a_wrong_keys_file_is_refused_naming_the_line_and_never_its_secret(
    tmp_path: Path, text: str, error: str
) -> None:
    with pytest.raises(KeysFileError) as refused:
        load_keys(write(tmp_path, text))
    message = str(refused.value)
    assert error in message and str(tmp_path / "keys.csv") in message
    for secret in (SHDEX_1, SHDEX_2, SHDEX_1[:-1], "ab" * 31):
        assert secret not in message


def test_a_missing_or_binary_keys_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(KeysFileError, match="cannot read it"):
        load_keys(tmp_path / "absent.csv")
    binary = tmp_path / "keys.csv"
    binary.write_bytes(b"exchange_id,key_id,secret\n\xff\xfe")
    with pytest.raises(KeysFileError, match="not UTF-8"):
        load_keys(binary)


def test_the_signature_is_lower_case_hex_hmac_sha256_of_the_value_and_the_secret_stays_out_of_repr() -> None:
    key = SigningKey("SHDEX", "k1", bytes.fromhex(SHDEX_1))
    value = '{"exchange_id":"SHDEX","title":"数据"}'.encode()
    expected = hmac.new(bytes.fromhex(SHDEX_1), value, hashlib.sha256).hexdigest().encode()
    assert key.signature(value) == expected and expected == expected.lower()
    assert key.headers(value) == [("dm-key", b"k1"), ("dm-sig", expected)]
    assert SHDEX_1 not in repr(key) and repr(bytes.fromhex(SHDEX_1)) not in repr(key)
