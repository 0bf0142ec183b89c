"""Stored text on the operator's terminal is shown, never obeyed: an alert whose id and note carry terminal
escapes, a bidirectional override and rich markup, listed by `dmm alerts list` (table and JSON) and by
`dmm sql`, from a real embedded store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmm.cli import app
from dmm.cli.terminal import markup_safe, printable
from settings import get_settings
from sinks.clickhouse.store import ChdbStore

pytestmark = pytest.mark.integration

HOSTILE_KEY = "k\x1b[2J\x1b]0;owned\x07[bold red]FAKE[/]\u202eevil\x9b31m"
HOSTILE_NOTE = "note\r\n\x1b[1A\x1b[2Kall clear"


@pytest.fixture
def hostile_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "chdb"
    store = ChdbStore(path)
    store.apply_schema()
    store.command(
        "INSERT INTO datamarket.alerts (schema, alert_id, kind, severity, exchange_id, parties, event_ids, score, "
        "detected_at, dedup_key, message, message_zh) VALUES ('dm.v1', 'a1', 'price_outlier', 'warning', 'SHDEX', "
        "[], [], 1.5, now64(3), {key:String}, {message:String}, '价格')",
        {"key": HOSTILE_KEY, "message": "price " + HOSTILE_KEY},
    )
    store.command(
        "INSERT INTO datamarket.alert_actions (dedup_key, action, actor, note, at) "
        "VALUES ({key:String}, 'ack', {actor:String}, {note:String}, now64(3))",
        {"key": HOSTILE_KEY, "actor": "ops" + HOSTILE_KEY, "note": HOSTILE_NOTE},
    )
    store.close()
    monkeypatch.setenv("DMM_CLICKHOUSE__CHDB_PATH", str(path))
    monkeypatch.setenv("DMM_WEB_PORT", "1")  # no worker: the CLI opens the store itself
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def obeyable(text: str) -> list[str]:
    """The characters a terminal would act on, or show out of order."""
    return [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0 or c == "\u202e"]


def test_alerts_list_shows_an_id_with_escapes_without_obeying_them(hostile_store: Path) -> None:
    result = CliRunner().invoke(app, ["alerts", "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert obeyable(result.output) == []
    shown = result.output.replace("\n", "").replace("│", "").replace(" ", "")
    assert "\\u001b[2J" in shown and "[boldred]FAKE[/]" in shown and "\\u202eevil" in shown  # visible, as text


def test_alerts_list_json_stays_json_and_inert(hostile_store: Path) -> None:
    result = CliRunner().invoke(app, ["alerts", "list", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert obeyable(result.output) == []
    (record,) = [json.loads(line) for line in result.output.splitlines()]
    assert record["dedup_key"] == HOSTILE_KEY and record["note"] == HOSTILE_NOTE  # the same text, escaped


@pytest.mark.parametrize("fmt", ["PrettyCompactMonoBlock", "TSV", "JSONEachRow"])
def test_dmm_sql_output_is_inert(hostile_store: Path, fmt: str) -> None:
    result = CliRunner().invoke(app, ["sql", "SELECT dedup_key, message FROM alerts", "--format", fmt])
    assert result.exit_code == 0, result.output
    assert obeyable(result.output) == []
    assert "FAKE" in result.output


def test_the_escaping_keeps_layout_where_asked_and_escapes_markup() -> None:
    assert printable("a\tb\nc\x1b", keep_lines=True) == "a\tb\nc\\u001b"
    assert printable("a\tb\nc") == "a\\u0009b\\u000ac"
    assert markup_safe("[bold]x\x1b") == "\\[bold]x\\u001b"
