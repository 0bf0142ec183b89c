"""`dmm validate`: per line, what the worker would say (its decoder's reasons), duplicates, lateness, exit code."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dmm.cli import app
from dmm.cli.validate import Verdict, judge
from streams.decode import Rejection, decode

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
NAMES = ("listing", "trade", "usage", "heartbeat")  # in event-time order (09:30 listing first)


def _example(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_bytes())


def _line(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def _run(tmp_path: Path, lines: list[bytes], *args: str) -> tuple[int, str]:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = CliRunner().invoke(app, ["validate", str(path), *args])
    return result.exit_code, result.output


def test_the_contract_examples_are_all_accepted(tmp_path: Path) -> None:
    lines = [(EXAMPLES / f"{name}.json").read_bytes().strip() for name in NAMES]
    code, output = _run(tmp_path, lines, "--json")
    assert code == 0, output
    verdicts = [json.loads(row) for row in output.splitlines()]
    assert [(v["line"], v["outcome"], v["type"], v["exchange_id"]) for v in verdicts] == [
        (n, "accepted", name, "SHDEX") for n, name in enumerate(NAMES, start=1)
    ]
    assert [v["event_id"] for v in verdicts] == [_example(name)["event_id"] for name in NAMES]

    code, output = _run(tmp_path, lines)
    assert code == 0
    assert "4 line(s)" in output and "No line would be rejected" in output


def _bad_lines() -> list[tuple[bytes, str]]:
    trade = _example("trade")
    return [
        (b"{garbage", "malformed"),
        (b"", "malformed"),
        (b'["trade"]', "malformed"),
        (b"\xff\xfe not utf-8", "malformed"),
        (_line({**trade, "schema": "dm.v2"}), "unsupported_schema"),
        (_line({k: v for k, v in trade.items() if k != "buyer_id"}), "invalid"),
        (_line({**trade, "occurred_at": "2026-11-21T10:02:13"}), "invalid"),
        (_line({**trade, "event_id": "X-1", "exchange_id": "NOPE"}), "unknown_exchange"),
        (_line({**trade, "event_id": "X-2", "amount": "1.00"}), "amount_mismatch"),
    ]


def test_bad_lines_get_the_workers_own_reason_and_detail(tmp_path: Path) -> None:
    bad = _bad_lines()
    code, output = _run(tmp_path, [line for line, _ in bad], "--json")
    assert code == 1
    verdicts = [json.loads(row) for row in output.splitlines()]
    assert [(v["line"], v["outcome"], v["reason"]) for v in verdicts] == [
        (n, "rejected", reason) for n, (_, reason) in enumerate(bad, start=1)
    ]
    for (line, _), verdict in zip(bad, verdicts, strict=True):
        worker = decode(line)
        assert isinstance(worker, Rejection)
        assert (verdict["detail"], verdict["exchange_id"], verdict["event_id"]) == (
            worker.detail,
            worker.exchange_id,
            worker.event_id,
        )
    assert "buyer_id" in verdicts[5]["detail"]
    assert verdicts[7]["exchange_id"] == "NOPE"


def test_table_summarises_by_reason_and_lists_the_lines(tmp_path: Path) -> None:
    good = (EXAMPLES / "trade.json").read_bytes().strip()
    bad = _bad_lines()
    code, output = _run(tmp_path, [good, *(line for line, _ in bad), good])
    assert code == 1
    assert f"{len(bad) + 2} line(s)" in output
    for reason, n in (("malformed", 4), ("unsupported_schema", 1), ("invalid", 2), ("amount_mismatch", 1)):
        assert f"rejected: {reason}" in output
        assert any(f"rejected: {reason}" in row and row.rstrip(" │").endswith(str(n)) for row in output.splitlines())
    assert "same event as line 1" in output
    assert f"{len(bad)} line(s) would be rejected" in output


def test_a_resent_event_is_a_duplicate_of_its_first_line_and_does_not_fail(tmp_path: Path) -> None:
    trade = (EXAMPLES / "trade.json").read_bytes().strip()
    changed = _line({**_example("trade"), "quantity": 3, "amount": "36000.00"})  # same identity, new content
    usage = (EXAMPLES / "usage.json").read_bytes().strip()
    code, output = _run(tmp_path, [trade, usage, trade, changed], "--json")
    assert code == 0
    verdicts = [json.loads(row) for row in output.splitlines()]
    assert [(v["outcome"], v["duplicate_of"]) for v in verdicts] == [
        ("accepted", 0),
        ("accepted", 0),
        ("duplicate", 1),
        ("duplicate", 1),
    ]


def _at(document: dict, occurred_at: str, event_id: str | None = None) -> bytes:
    return _line({**document, "occurred_at": occurred_at, "event_id": event_id or document["event_id"]})


def test_lateness_and_the_duplicate_horizon_follow_event_time() -> None:
    beat = _example("heartbeat")
    lines = [
        _at(beat, "2026-11-21T10:00:00+08:00", "H-1"),
        _at(beat, "2026-11-21T10:10:00+08:00", "H-2"),  # watermark 10:10
        _at(beat, "2026-11-21T10:04:59+08:00", "H-3"),  # 5 min 1 s behind: late
        _at(beat, "2026-11-21T10:05:00+08:00", "H-4"),  # exactly the lateness: on time
        _at(beat, "2026-11-21T10:00:00+08:00", "H-1"),  # H-1 is 10 min behind, within a 1 h horizon
        _at(beat, "2026-11-21T11:30:00+08:00", "H-5"),  # watermark 11:30: H-1 (10:00) beyond the horizon
        _at(beat, "2026-11-21T10:00:00+08:00", "H-1"),  # forgotten, so accepted again (and late)
    ]
    verdicts = list(judge(lines, dedup_horizon_s=3600, allowed_lateness_s=300))
    assert [(v.event_id, v.outcome, v.late) for v in verdicts] == [
        ("H-1", "accepted", False),
        ("H-2", "accepted", False),
        ("H-3", "accepted", True),
        ("H-4", "accepted", False),
        ("H-1", "duplicate", False),
        ("H-5", "accepted", False),
        ("H-1", "accepted", True),
    ]
    assert verdicts[4] == Verdict(5, "duplicate", "heartbeat", "SHDEX", "H-1", duplicate_of=1)


def test_with_keys_a_line_is_judged_as_a_signed_replay_sends_it(tmp_path: Path) -> None:
    """The keys file holds SHDEX's key only: SHDEX's lines are signed as `dmm replay --keys` signs them and
    accepted; a line of another known exchange would go unsigned, so the worker would reject it as
    `unauthenticated`, before its field rules; lines naming no known exchange keep their reasons."""
    keys = tmp_path / "shdex-keys.csv"
    keys.write_text(f"exchange_id,key_id,secret\nSHDEX,SHDEX-1,{'ab' * 32}\n")
    trade = _example("trade")
    lines = [
        _line(trade),
        _line({**trade, "exchange_id": "SZDEX", "event_id": "Z-1"}),
        _line({**trade, "exchange_id": "SZDEX", "event_id": "Z-2", "quantity": 0}),
        _line({**trade, "event_id": "S-2", "quantity": 0}),
        _line({**trade, "exchange_id": "NOPE", "event_id": "N-1"}),
        b"{garbage",
    ]
    code, output = _run(tmp_path, lines, "--json", "--keys", str(keys))
    assert code == 1
    verdicts = [json.loads(row) for row in output.splitlines()]
    assert [(v["outcome"], v["reason"], v["exchange_id"]) for v in verdicts] == [
        ("accepted", "", "SHDEX"),
        ("rejected", "unauthenticated", "SZDEX"),
        ("rejected", "unauthenticated", "SZDEX"),
        ("rejected", "invalid", "SHDEX"),
        ("rejected", "unknown_exchange", "NOPE"),
        ("rejected", "malformed", ""),
    ]
    assert verdicts[1]["detail"].startswith("missing header dm-key and dm-sig")
    code, output = _run(tmp_path, lines[:2], "--keys", str(keys))
    assert "rejected: unauthenticated" in output
    code, output = _run(tmp_path, lines[:2], "--json")  # without keys, signatures are not judged
    assert code == 0


def test_an_unusable_keys_file_is_refused_with_its_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys.csv"
    keys.write_text("exchange_id,key_id,secret\nSHDEX,SHDEX-1,abcd\nXX,x,00\n")
    code, output = _run(tmp_path, [_line(_example("trade"))], "--keys", str(keys))
    assert code == 2
    assert "line 2 (SHDEX 'SHDEX-1'): the secret is 2 bytes" in " ".join(output.split())
