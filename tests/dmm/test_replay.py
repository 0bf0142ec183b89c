"""`dmm replay`: each line byte for byte, contract keys where a line parses, nothing dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmm import producer
from dmm.broker import free_port
from dmm.cli import app
from dmm.producer import EventProducer
from dmm.replay import line_key, replay_file
from models.keys import load_keys
from settings import KafkaSettings, get_settings
from streams.authenticate import Authenticator
from streams.decode import decode
from tests.support.readback import read_topic

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

TRADE = (EXAMPLES / "trade.json").read_bytes().strip()
HEARTBEAT = (EXAMPLES / "heartbeat.json").read_bytes().strip()
LINES: list[tuple[bytes, bytes | None]] = [
    (TRADE, b"DP310000-2026-000123"),
    (b"{garbage", None),
    (b"", None),
    (HEARTBEAT, b"SHDEX"),
    (b'{"type":"usage","product_id":"\xe6\x95\xb0\xe6\x8d\xae-1"}\r', "数据-1".encode()),
    (b'{"type":"trade","product_id":42}', None),
    (b'["trade"]', None),
    (b"\xff\xfe not utf-8", None),
    (b'{"type":"heartbeat","exchange_id":"SZDE"}', b"SZDE"),  # last line, no trailing newline
]


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in LINES))
    return path


@pytest.fixture
def cli_env(kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[KafkaSettings]:
    """Point the CLI's settings at this test's topics."""
    monkeypatch.setenv("DMM_KAFKA__TOPIC_PREFIX", kafka.topic_prefix)
    get_settings.cache_clear()
    yield kafka
    get_settings.cache_clear()


def test_heartbeat_example_is_keyed_by_exchange() -> None:
    assert line_key(HEARTBEAT) == b"SHDEX"


@pytest.mark.integration
def test_replay_file_publishes_every_line_byte_for_byte(kafka: KafkaSettings, jsonl: Path) -> None:
    progress: list[int] = []
    with EventProducer(kafka) as producer:
        assert replay_file(jsonl, producer, progress.append) == len(LINES)
    assert sum(progress) == jsonl.stat().st_size

    stored = read_topic(kafka, kafka.events_topic)
    assert [(r.value, r.key) for r in stored] == LINES


@pytest.mark.integration
def test_replay_command(cli_env: KafkaSettings, jsonl: Path) -> None:
    result = CliRunner().invoke(app, ["replay", str(jsonl), "--bootstrap", cli_env.bootstrap])
    assert result.exit_code == 0, result.output
    assert f"sent {len(LINES)} message(s)" in result.output
    assert [(r.value, r.key) for r in read_topic(cli_env, cli_env.events_topic)] == LINES


def test_replay_command_fails_clearly_without_a_broker(jsonl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(producer._DEFAULTS, "bootstrap_timeout_ms", 1_000)  # give up on the absent broker sooner
    result = CliRunner().invoke(app, ["replay", str(jsonl), "--bootstrap", f"127.0.0.1:{free_port()}"])
    assert result.exit_code == 1
    assert "dmm up" in result.output


KEYS = "exchange_id,key_id,secret\nSZDEX,SZDEX-1,{szdex}\nSHDEX,SHDEX-1,{first}\nSHDEX,SHDEX-2,{second}\n".format(
    szdex="5a" * 32, first="11" * 32, second="22" * 32
)


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.csv"
    path.write_text(KEYS)
    return path


@pytest.mark.integration
def test_replay_with_keys_signs_each_line_with_its_exchange_s_first_key(
    cli_env: KafkaSettings, jsonl: Path, keys_file: Path
) -> None:
    """The trade and the heartbeat name SHDEX: its first key signs them; lines that are no JSON object or name
    no exchange with a key go unsigned, byte for byte as without keys."""
    result = CliRunner().invoke(app, ["replay", str(jsonl), "--bootstrap", cli_env.bootstrap, "--keys", str(keys_file)])
    assert result.exit_code == 0, result.output
    assert f"sent {len(LINES)} message(s)" in result.output and "signed with the keys of" in result.output
    stored = read_topic(cli_env, cli_env.events_topic)
    assert [(r.value, r.key) for r in stored] == LINES
    shdex = load_keys(keys_file).signing_key("SHDEX")
    assert shdex is not None and shdex.key_id == "SHDEX-1"
    signed = {TRADE, HEARTBEAT}
    assert [r.headers for r in stored] == [tuple(shdex.headers(r.value)) if r.value in signed else () for r in stored]
    authenticator = Authenticator(load_keys(keys_file))
    outcomes = [authenticator.verified(decode(r.value), r.headers, r.value) for r in stored if r.value in signed]
    assert [type(outcome).__name__ for outcome in outcomes] == ["Trade", "Heartbeat"]


@pytest.mark.integration
def test_replay_refuses_an_unusable_keys_file_before_sending(
    cli_env: KafkaSettings, jsonl: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("exchange_id,key_id,secret\nSHDEX,SHDEX-1,abcd\n")
    result = CliRunner().invoke(app, ["replay", str(jsonl), "--bootstrap", cli_env.bootstrap, "--keys", str(bad)])
    assert result.exit_code == 2
    assert "line 2 (SHDEX 'SHDEX-1'): the secret is 2 bytes" in " ".join(result.output.split())
    assert read_topic(cli_env, cli_env.events_topic) == []
