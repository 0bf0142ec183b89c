"""deploy/examples/go-producer: builds offline from Debian's Go packages, and partitions like the Java client.

The toolchain is Debian's `golang-go` plus `golang-github-shopify-sarama-dev`
(`scripts/install-go`; CI runs it), built in GOPATH mode, no module download.
The run against the embedded broker checks every keyed message landed on
toPositive(murmur2(key)) % partitions, the partition kafka-python (our SDK, same
hash as the Java client) picks for the same lines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2

from dmm.broker import EmbeddedBroker
from dmm.producer import EventProducer
from dmm.replay import line_key, replay_file
from models import Heartbeat
from models.keys import load_keys
from settings import KafkaSettings
from streams.authenticate import Authenticator
from streams.decode import Rejection, decode
from streams.kafka_client import ensure_topics
from tests.support.deploy_files import DEPLOY
from tests.support.readback import read_topic

pytestmark = pytest.mark.integration

SOURCE = DEPLOY / "examples" / "go-producer"
SARAMA = Path("/usr/share/gocode/src/github.com/Shopify/sarama")
EXAMPLES = DEPLOY.parent / "docs" / "examples"
PARTITIONS = 6


def _go_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOCACHE": str(cache)}


@pytest.fixture(scope="module")
def go(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    path = shutil.which("go")
    if path is None or not SARAMA.is_dir():
        pytest.skip("Go or Debian's sarama package is not installed: run scripts/install-go (CI installs them)")
    return path, _go_env(tmp_path_factory.mktemp("gocache"))


@pytest.fixture(scope="module")
def binary(go: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    executable, env = go
    out = tmp_path_factory.mktemp("go-producer") / "go-producer"
    r = subprocess.run(
        [executable, "build", "-o", str(out), "."],
        cwd=SOURCE,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    return out


def test_go_unit_tests_pass_with_the_java_clients_murmur2_vectors(go: tuple[str, dict[str, str]]) -> None:
    executable, env = go
    r = subprocess.run(
        [executable, "test", "-v", "."], cwd=SOURCE, env=env, check=False, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--- PASS: TestMurmur2MatchesTheJavaClient" in r.stdout


def _lines() -> list[bytes]:
    """Trades for 20 products, the contract's examples, and lines the monitor would reject."""
    trade = (EXAMPLES / "trade.json").read_bytes().strip()
    lines = [
        trade.replace(b"DP310000-2026-000123", f"DP3100{n:02d}-2026-{n:06d}".encode()).replace(
            b"SHDEX-T-20261121-004211", f"SHDEX-T-GO-{n}".encode()
        )
        for n in range(20)
    ]
    lines += [(EXAMPLES / f"{name}.json").read_bytes().strip() for name in ("listing", "usage", "heartbeat")]
    lines += [b"{garbage", b'{"type":"trade","product_id":42}', "数据".encode()]
    return lines


def test_go_producer_keys_and_partitions_like_the_java_client(binary: Path, broker: EmbeddedBroker, tmp_path: Path):
    go_kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix="go.", events_partitions=PARTITIONS)
    sdk_kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix="sdk.", events_partitions=PARTITIONS)
    ensure_topics(go_kafka)
    ensure_topics(sdk_kafka)
    lines = _lines()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")

    r = subprocess.run(
        [str(binary), "-brokers", broker.bootstrap, "-topic", go_kafka.events_topic,
         "-exchange", "SZDEX", "-heartbeats", "2", "-every", "10ms", str(events)],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"sent {len(lines) + 2} message(s) to {go_kafka.events_topic}"

    stored = read_topic(go_kafka, go_kafka.events_topic)
    assert len(stored) == len(lines) + 2
    file_records = [s for s in stored if s.value in lines]
    assert sorted(s.value for s in file_records) == sorted(lines)  # byte for byte
    for record in file_records:
        assert record.key == line_key(record.value)  # the contract's key, as `dmm replay` computes it
        if record.key is not None:
            assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % PARTITIONS, record
    assert len({s.partition for s in file_records if s.key}) > 1  # the keys really spread
    for partition in {s.partition for s in file_records}:  # per partition, the file's order
        values = [s.value for s in file_records if s.partition == partition]
        assert values == [line for line in lines if line in values]

    beats = [s for s in stored if s.value not in lines]
    decoded = [decode(s.value) for s in beats]
    assert all(isinstance(beat, Heartbeat) for beat in decoded), decoded
    assert [(b.exchange_id, b.seq) for b in decoded] == [("SZDEX", 0), ("SZDEX", 1)]
    assert {s.key for s in beats} == {b"SZDEX"}
    assert {s.partition for s in beats} == {(murmur2(b"SZDEX") & 0x7FFFFFFF) % PARTITIONS}

    # The Python SDK, publishing the same file, puts every key on the same partition.
    with EventProducer(sdk_kafka) as producer:
        replay_file(events, producer)
    sdk = {s.key: s.partition for s in read_topic(sdk_kafka, sdk_kafka.events_topic) if s.key is not None}
    assert sdk == {s.key: s.partition for s in file_records if s.key is not None}


def test_go_producer_signs_every_message_as_the_monitor_verifies_it(
    binary: Path, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Given the exchange's key (DM_KEY_ID, DM_KEY_SECRET), each line and heartbeat carries dm-key and dm-sig, and
    the worker's own check (`streams.authenticate`) accepts them; unsigned (no key), a known exchange's message is
    `unauthenticated`."""
    kafka = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix="go-signed.")
    unsigned = KafkaSettings(bootstrap=broker.bootstrap, topic_prefix="go-unsigned.")
    ensure_topics(kafka)
    ensure_topics(unsigned)
    keys_file = tmp_path / "keys.csv"
    keys_file.write_text(f"exchange_id,key_id,secret\nSHDEX,SHDEX-go-1,{'5e' * 32}\nSZDEX,SZDEX-go-1,{'7a' * 40}\n")
    keys = load_keys(keys_file)
    szdex = keys.signing_key("SZDEX")
    assert szdex is not None
    lines = _lines()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    command = [str(binary), "-brokers", broker.bootstrap, "-exchange", "SZDEX", "-heartbeats", "2", "-every", "10ms"]
    signing = {**os.environ, "DM_KEY_ID": szdex.key_id, "DM_KEY_SECRET": szdex.secret.hex()}
    for settings, env in ((kafka, signing), (unsigned, os.environ)):
        r = subprocess.run(
            [*command, "-topic", settings.events_topic, str(events)],
            env=env, check=False, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr

    authenticator = Authenticator(keys)
    stored = read_topic(kafka, kafka.events_topic)
    assert len(stored) == len(lines) + 2
    for record in stored:
        assert record.headers == (("dm-key", b"SZDEX-go-1"), ("dm-sig", szdex.signature(record.value)))
    outcomes = [authenticator.verified(decode(r.value), r.headers, r.value) for r in stored]
    beats = [outcome for outcome in outcomes if isinstance(outcome, Heartbeat)]
    assert [(b.exchange_id, b.seq) for b in beats] == [("SZDEX", 0), ("SZDEX", 1)]  # SZDEX's own: accepted
    # The file's SHDEX lines carry SZDEX's key: unauthenticated, as a forgery is; the rest keep their reason.
    assert Counter(o.reason for o in outcomes if isinstance(o, Rejection)) == {
        "unauthenticated": 23,
        "malformed": 2,
        "unsupported_schema": 1,
    }

    plain = read_topic(unsigned, unsigned.events_topic)
    assert all(record.headers == () for record in plain)
    unsigned_beats = [authenticator.verified(decode(r.value), r.headers, r.value) for r in plain[-2:]]
    assert [(o.reason, o.detail.split(":")[0]) for o in unsigned_beats if isinstance(o, Rejection)] == [
        ("unauthenticated", "missing header dm-key and dm-sig")
    ] * 2

    bad = subprocess.run(
        [*command, "-topic", kafka.events_topic, str(events)],
        env={**signing, "DM_KEY_SECRET": "ab" * 16}, check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1 and "16 bytes; the contract's keys have at least 32" in bad.stderr
