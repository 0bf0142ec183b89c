"""`dmm replay`: each line byte for byte, contract keys where a line parses, nothing dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmm.broker import free_port
from dmm.cli import app
from dmm.producer import EventProducer
from dmm.replay import line_key, replay_file
from settings import KafkaSettings, get_settings
from tests.dmm.readback import read_topic

EXAMPLES = Path("/work/shared/contract/examples")

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


def test_replay_file_publishes_every_line_byte_for_byte(kafka: KafkaSettings, jsonl: Path) -> None:
    progress: list[int] = []
    with EventProducer(kafka) as producer:
        assert replay_file(jsonl, producer, progress.append) == len(LINES)
    assert sum(progress) == jsonl.stat().st_size

    stored = read_topic(kafka, kafka.events_topic)
    assert [(r.value, r.key) for r in stored] == LINES


def test_replay_command(cli_env: KafkaSettings, jsonl: Path) -> None:
    result = CliRunner().invoke(app, ["replay", str(jsonl), "--bootstrap", cli_env.bootstrap])
    assert result.exit_code == 0, result.output
    assert f"sent {len(LINES)} message(s)" in result.output
    assert [(r.value, r.key) for r in read_topic(cli_env, cli_env.events_topic)] == LINES


def test_replay_command_fails_clearly_without_a_broker(jsonl: Path) -> None:
    result = CliRunner().invoke(app, ["replay", str(jsonl), "--bootstrap", f"127.0.0.1:{free_port()}"])
    assert result.exit_code == 1
    assert "dmm up" in result.output
