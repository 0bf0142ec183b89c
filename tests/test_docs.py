"""The documentation is part of the product: its links resolve, its examples are valid, its catalogues are complete.

README.md, ARCHITECTURE.md and docs/ link only to files of this repository; the examples under docs/examples
are what the models accept (and what the published JSON Schema shows); docs/errors.md names exactly the
monitor's rejection reasons, with details the decoder really gives; docs/asyncapi.yaml parses and names the
four topics; docs/settings.md is generated from the Settings model and current. Where the public contract's
own directory is on this machine (beside the repository), the repository's copy is checked against it; the
product never reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from models import EVENT_ADAPTER, Alert, partition_key
from models.schema import EXAMPLES, contract_schema
from streams.decode import REASONS, Rejection, WallClock, decode

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES_DIR = DOCS / "examples"
SHARED = ROOT.parent / "shared" / "contract"  # the public contract, when it sits beside the repository
README_MAX_LINES = 250
EVENT_FILES = ("listing", "trade", "usage", "heartbeat")
PROCESSING_ERROR = "processing_error"  # streams.batch_records.PROCESSING_ERROR (importing the pipeline costs seconds)


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted(DOCS.rglob("*.md"))]


# ---------------------------------------------------------------------------------------------------- links


def _prose(text: str) -> str:
    """Markdown without fenced code blocks and inline code (whose brackets are no links)."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)", re.M)


def links(path: Path) -> list[str]:
    return [inline or reference for inline, reference in LINK.findall(_prose(path.read_text(encoding="utf-8")))]


def slugs(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _prose_headings(path), re.M):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
        base = re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))
        slug, n = base, 0
        while slug in found:
            n += 1
            slug = f"{base}-{n}"
        found.add(slug)
    return found


def _prose_headings(path: Path) -> str:
    return re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(path: Path) -> None:
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if ROOT not in resolved.parents and resolved != ROOT:
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in slugs(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_documentation_never_points_at_the_shared_contract_directory(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "../shared" not in text and "/work/shared" not in text


def test_the_readme_is_at_most_250_lines() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details to docs/"


def test_the_link_checker_finds_links_and_anchors() -> None:
    assert "docs/contract.md" in links(ROOT / "README.md")
    assert {"transport", "amendment-1-2026-12-authenticated-producers-a-bounded-clock-conflicting-resends"} <= slugs(
        DOCS / "contract.md"
    )


# ------------------------------------------------------------------------------------------------- examples


def _example(name: str) -> bytes:
    return (EXAMPLES_DIR / name).read_bytes()


def test_every_json_example_is_valid_for_what_it_is() -> None:
    """Each file under docs/examples: an event (the models accept it), an alert, a rejection or a signed record."""
    seen = set()
    for path in sorted(EXAMPLES_DIR.glob("*.json")):
        document = json.loads(path.read_bytes())
        if document.get("schema") == "dm.v1":
            event = EVENT_ADAPTER.validate_json(path.read_bytes())
            assert event.type == path.stem and not isinstance(decode(path.read_bytes().strip()), Rejection)
            seen.add("event")
        elif document.get("schema") == "dm.alert.v1":
            assert json.loads(Alert.model_validate_json(path.read_bytes()).to_json()) == document
            seen.add("alert")
        elif "reason" in document:
            rejected = decode(document["raw"].encode())
            assert (getattr(rejected, "reason", None), getattr(rejected, "detail", None)) == (
                document["reason"],
                document["detail"],
            ), path.name
            seen.add("rejection")
        else:
            assert set(document) == {"topic", "key", "headers", "value"}, path.name
            seen.add("record")
    assert seen == {"event", "alert", "rejection", "record"}
    assert {p.stem for p in EXAMPLES_DIR.glob("*.json")} >= set(EVENT_FILES)


def test_the_signed_record_is_a_keyed_event_whose_signature_verifies() -> None:
    record = json.loads(_example("signed-trade.json"))
    value = record["value"].encode()
    assert value == _example("trade.json").strip()
    assert record["topic"] == "dm.events" and record["key"] == partition_key(EVENT_ADAPTER.validate_json(value))
    _, key_id, secret = _example("keys.example.csv").decode().strip().splitlines()[1].split(",")
    assert record["headers"]["dm-key"] == key_id
    assert record["headers"]["dm-sig"] == hmac.new(bytes.fromhex(secret), value, hashlib.sha256).hexdigest()
    authenticator = _authenticator()
    headers = [(name, text.encode()) for name, text in record["headers"].items()]
    assert authenticator.failure("SHDEX", headers, value) is None


def test_the_rule_change_is_signed_with_the_operators_example_key() -> None:
    record = json.loads(_example("rule-change.json"))
    ops_key = _example("ops-key.example").decode().strip()
    value = record["value"].encode()
    assert record["topic"] == "dm.rules" and record["headers"]["dm-key"] == "ops"
    assert record["headers"]["dm-sig"] == hmac.new(bytes.fromhex(ops_key), value, hashlib.sha256).hexdigest()
    assert set(json.loads(value)) == {"set", "actor"}
    rules = pytest.importorskip("streams.rules")
    if hasattr(rules, "OpsKey"):  # the monitor's own signer agrees
        from pydantic import SecretStr

        signed = rules.OpsKey.configured(SecretStr(ops_key)).sign(value)
        assert [(name, header.decode()) for name, header in signed] == list(record["headers"].items())


def _authenticator() -> Any:
    authenticate = pytest.importorskip("streams.authenticate", reason="producer signatures not in this tree")
    keys = pytest.importorskip("models.keys")
    return authenticate.Authenticator(keys.load_keys(EXAMPLES_DIR / "keys.example.csv"))


@pytest.mark.skipif(not SHARED.is_dir(), reason="the public contract's directory is not beside the repository")
def test_the_repository_holds_the_public_contract_word_for_word() -> None:
    for name in ("alert", *EVENT_FILES):
        assert _example(f"{name}.json") == (SHARED / "examples" / f"{name}.json").read_bytes(), name
    for name in ("exchanges.csv", "sectors.csv"):
        assert (ROOT / "models" / "data" / name).read_bytes() == (SHARED / name).read_bytes(), name
    ours = (DOCS / "contract.md").read_text(encoding="utf-8")
    ours = re.sub(r"\n<!-- preface.*?<!-- /preface -->\n", "", ours, flags=re.S)
    for name, target in (
        ("exchanges.csv", "../models/data/exchanges.csv"),
        ("sectors.csv", "../models/data/sectors.csv"),
        ("examples/", "examples/"),
    ):
        ours = ours.replace(f"- [`{name}`]({target}):", f"- `{name}`:")
    ours = ours.replace("Files beside this one (in this repository):", "Files beside this one:")
    assert ours == (SHARED / "README.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ JSON Schema


def test_the_schema_shows_the_docs_examples() -> None:
    for definition, example in EXAMPLES.items():
        assert json.loads(_example(f"{definition.lower()}.json")) == example, definition


def test_every_type_and_field_of_the_schema_has_a_description_and_an_example() -> None:
    missing = []
    for name, definition in contract_schema()["$defs"].items():
        if not (definition.get("description") and definition.get("examples")):
            missing.append(name)
        for field, spec in definition["properties"].items():
            if not spec.get("description") or not spec.get("examples"):
                missing.append(f"{name}.{field}")
    assert not missing, f"add a description and an example in models/schema.py: {missing}"


def test_the_schemas_own_examples_are_valid() -> None:
    defs = contract_schema()["$defs"]
    for name in ("Listing", "Trade", "Usage", "Heartbeat"):
        fields = {field: spec["examples"][0] for field, spec in defs[name]["properties"].items()}
        assert type(EVENT_ADAPTER.validate_python(fields)).__name__ == name
        assert EVENT_ADAPTER.validate_python(defs[name]["examples"][0]) == EVENT_ADAPTER.validate_python(fields)
    Alert.model_validate(defs["Alert"]["examples"][0])


# ----------------------------------------------------------------------------------------------------- errors


def error_sections() -> dict[str, str]:
    text = (DOCS / "errors.md").read_text(encoding="utf-8")
    parts = re.split(r"^## `([a-z_]+)`\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _blocks(section: str, label: str) -> str:
    """The first fenced block after `**label**`."""
    found = re.search(rf"\*\*{label}\*\*.*?^```[a-z]*\n(.*?)^```", section, re.M | re.S)
    assert found, f"no **{label}** block"
    return found.group(1).rstrip("\n")


def test_the_error_catalogue_names_exactly_the_monitors_reasons_in_check_order() -> None:
    assert list(error_sections()) == [*REASONS, PROCESSING_ERROR]


@pytest.mark.parametrize(
    "reason", ["malformed", "unsupported_schema", "unknown_exchange", "invalid", "amount_mismatch"]
)
def test_each_catalogued_example_gets_its_reason_and_the_detail_shown(reason: str) -> None:
    section = error_sections()[reason]
    rejected = decode(_blocks(section, "Example").encode())
    assert (getattr(rejected, "reason", None), getattr(rejected, "detail", None)) == (
        reason,
        _blocks(section, "Detail"),
    )


def test_the_future_event_example_at_the_clock_it_names() -> None:
    section = error_sections()["future_event"]
    now_ms = int(datetime(2026, 11, 21, 2, 10, tzinfo=UTC).timestamp() * 1000)
    assert "2026-11-21T02:10:00Z" in section
    rejected = decode(_blocks(section, "Example").encode(), WallClock(now_ms, now_ms + 300_000))
    assert (getattr(rejected, "reason", None), getattr(rejected, "detail", None)) == (
        "future_event",
        _blocks(section, "Detail"),
    )


def test_the_unauthenticated_example_is_refused_with_the_detail_shown() -> None:
    section = error_sections()["unauthenticated"]
    record = json.loads(_blocks(section, "Example"))
    headers = [(name, text.encode()) for name, text in record["headers"].items()]
    assert _authenticator().failure("SHDEX", headers, record["value"].encode()) == _blocks(section, "Detail")


def test_the_conflicting_duplicate_example_is_refused_with_the_detail_shown() -> None:
    section = error_sections()["conflicting_duplicate"]
    first = EVENT_ADAPTER.validate_json(_example("heartbeat.json"))
    second = EVENT_ADAPTER.validate_json(_blocks(section, "Example"))
    assert first.key == second.key and first != second
    from types import SimpleNamespace

    from streams.batch_records import copy_of

    message = SimpleNamespace(topic="dm.events", partition=0, offset=18, key=b"SHDEX", value=b"")
    rows = SimpleNamespace(rejected=[], duplicates=[])
    said = (0, 17, first.content_digest)
    copy_of(message, second.key, "heartbeat", second.content_digest, said, rows)
    assert [(r.reason, r.detail) for r in rows.rejected] == [("conflicting_duplicate", _blocks(section, "Detail"))]


def test_the_processing_error_detail_is_the_monitors_own_wording() -> None:
    from streams.surveillance import DetectorFailed

    shown = _blocks(error_sections()[PROCESSING_ERROR], "Detail")
    assert str(DetectorFailed("price_outlier", ZeroDivisionError("division by zero"))) == shown


# ---------------------------------------------------------------------------------------------------- AsyncAPI


def load_yaml(text: str) -> Any:
    """The block YAML docs/asyncapi.yaml is written in: mappings, sequences, plain / quoted / JSON-flow
    scalars and folded (`>`) or literal (`|`) block scalars. Not a YAML parser; enough to read that file
    without adding PyYAML to the project (compared with PyYAML where it is installed)."""
    lines = [
        (len(raw) - len(raw.lstrip(" ")), raw.strip())
        for raw in text.splitlines()
        if raw.strip() and not raw.lstrip().startswith("#")
    ]
    value, end = _node(lines, 0, lines[0][0])
    assert end == len(lines), f"unparsed from: {lines[end][1]!r}"
    return value


def _node(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1] == "-" or lines[i][1].startswith("- "):
        items = []
        while i < len(lines) and lines[i][0] == indent and (lines[i][1] == "-" or lines[i][1].startswith("- ")):
            rest = lines[i][1][2:].strip()
            if not rest:
                item, i = _node(lines, i + 1, lines[i + 1][0])
            elif _is_pair(rest):
                lines[i] = (indent + 2, rest)
                item, i = _node(lines, i, indent + 2)
            else:
                item, i = _scalar(rest), i + 1
            items.append(item)
        return items, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent and not lines[i][1].startswith("- "):
        assert _is_pair(lines[i][1]), f"not a key: {lines[i][1]!r}"
        key, _, rest = lines[i][1].partition(":")
        key, rest = _scalar(key.strip()), rest.strip()
        i += 1
        if rest in (">", ">-", "|", "|-"):
            block = []
            while i < len(lines) and lines[i][0] > indent:
                block.append(lines[i][1])
                i += 1
            joined = (" " if rest[0] == ">" else "\n").join(block)
            mapping[key] = joined if rest.endswith("-") else joined + "\n"
        elif rest:
            mapping[key] = _scalar(rest)
        elif i < len(lines) and (lines[i][0] > indent or (lines[i][0] == indent and lines[i][1].startswith("- "))):
            mapping[key], i = _node(lines, i, lines[i][0])
        else:
            mapping[key] = None
    return mapping, i


def _is_pair(text: str) -> bool:
    return not text.startswith(('"', "'", "{", "[")) and (": " in text or text.endswith(":"))


def _scalar(text: str) -> Any:
    if text.startswith('"') or text.startswith(("{", "[")):
        return json.loads(text)
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    plain: dict[str, Any] = {"true": True, "false": False, "null": None, "~": None}
    if text in plain:
        return plain[text]
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?", text):
        return float(text)
    return text


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    text = (DOCS / "asyncapi.yaml").read_text(encoding="utf-8")
    document = load_yaml(text)
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        assert yaml.safe_load(text) == document
    return document  # type: ignore[no-any-return]


def _pointer(document: Any, pointer: str) -> Any:
    for part in filter(None, pointer.split("/")):
        document = document[part.replace("~1", "/").replace("~0", "~")]
    return document


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_the_asyncapi_document_describes_the_four_topics(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"].startswith("3.")
    addresses = {channel["address"] for channel in asyncapi["channels"].values()}
    assert addresses == {"dm.events", "dm.alerts", "dm.rejected", "dm.rules"}
    assert {op["action"] for op in asyncapi["operations"].values()} == {"send", "receive"}


def test_every_asyncapi_reference_resolves(asyncapi: dict[str, Any]) -> None:
    refs = _refs(asyncapi)
    assert any(ref.startswith("../deploy/contract.schema.json#") for ref in refs)
    for ref in refs:
        file_part, _, pointer = ref.partition("#")
        target = json.loads((DOCS / file_part).read_text(encoding="utf-8")) if file_part else asyncapi
        assert _pointer(target, pointer) is not None, ref


def test_the_asyncapi_examples_are_the_docs_examples(asyncapi: dict[str, Any]) -> None:
    messages = asyncapi["components"]["messages"]
    for name in (*EVENT_FILES, "alert"):
        assert messages[name]["examples"][0]["payload"] == json.loads(_example(f"{name}.json")), name
    assert messages["rejection"]["examples"][0]["payload"] == json.loads(_example("rejected.json"))
    signed = json.loads(_example("signed-trade.json"))
    assert messages["trade"]["examples"][0]["headers"] == signed["headers"]
    rule = json.loads(_example("rule-change.json"))
    assert messages["ruleChange"]["examples"][0]["headers"] == rule["headers"]
    assert messages["ruleChange"]["examples"][0]["payload"] == json.loads(rule["value"])
    reasons = asyncapi["components"]["schemas"]["rejection"]["properties"]["reason"]["enum"]
    assert reasons == [*REASONS, PROCESSING_ERROR]


def test_the_yaml_reader_reads_what_it_claims() -> None:
    text = (
        'a:\n  b: 1\n  c: "x: y"\n  d:\n    - e\n    - f: 2\n      g: [1, 2]\n  h: >-\n    one\n    two\nk:\n- true\n'
    )
    assert load_yaml(text) == {
        "a": {"b": 1, "c": "x: y", "d": ["e", {"f": 2, "g": [1, 2]}], "h": "one two"},
        "k": [True],
    }


# ---------------------------------------------------------------------------------------------------- settings


def test_the_settings_reference_is_current() -> None:
    from dmm.cli.schema import settings_markdown

    assert (DOCS / "settings.md").read_text(encoding="utf-8") == settings_markdown(), (
        "run: .venv/bin/dmm schema --settings -o docs/settings.md"
    )


def test_every_setting_is_explained() -> None:
    from dmm.cli.schema import NOTES, settings_markdown
    from settings import Settings

    undescribed = [
        row for row in settings_markdown().splitlines() if row.startswith("| `DMM_") and row.endswith("|  |")
    ]
    assert not undescribed, f"give these a description= in settings/: {undescribed}"
    sections = {name: info.annotation for name, info in Settings.model_fields.items()}
    for note in NOTES:
        section, _, name = note.rpartition(".")
        model = sections[section] if section else Settings
        assert not model.model_fields[name].description, f"{note}: settings/ describes it now; drop it from NOTES"  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------------------------- metrics


def test_every_metric_is_documented() -> None:
    defined = re.findall(
        r'\b(?:Counter|Gauge|Histogram|Summary)\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"',
        (ROOT / "sinks" / "prometheus.py").read_text(encoding="utf-8"),
    )
    documented = set(re.findall(r"^\| `([a-z_:]+)[`{]", (DOCS / "metrics.md").read_text(encoding="utf-8"), re.M))
    assert defined and {name.removesuffix("_total") for name in documented} == {
        name.removesuffix("_total") for name in defined
    }
