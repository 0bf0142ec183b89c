"""deploy/compose, deploy/k8s, deploy/Dockerfile: the invariants the README promises.

Text-level checks (the venv has no YAML parser); with PyYAML installed every
manifest is also parsed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel

from models.keys import KeysFileError, parse_keys
from settings import Settings
from tests.support.deploy_files import DEPLOY, ROOT

K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"


def env_keys(text: str) -> dict[str, str]:
    """DMM_* keys set in a YAML mapping (commented-out lines excluded)."""
    out = {}
    for m in re.finditer(r"^\s*(DMM_[A-Z0-9_]+):\s*(.*?)\s*$", text, re.M):
        out[m.group(1)] = m.group(2).strip('"')
    return out


def settings_path_exists(key: str) -> bool:
    model: type[BaseModel] = Settings
    parts = key.removeprefix("DMM_").lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if i < len(parts) - 1:
            model = field.annotation
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                return False
    return True


def yaml_files():
    return [
        *sorted(K8S.glob("*.yaml")),
        COMPOSE,
        *sorted((DEPLOY / "prometheus").glob("*.yml")),
        *sorted((DEPLOY / "grafana" / "provisioning").rglob("*.yml")),
    ]


def test_yaml_parses_when_pyyaml_is_available():
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed; the text checks in this file still run")
    for path in yaml_files():
        assert list(yaml.safe_load_all(path.read_text(encoding="utf-8"))), path


def test_every_dmm_env_var_is_a_setting(monkeypatch):
    configmap = env_keys((K8S / "configmap.yaml").read_text(encoding="utf-8"))
    secret = env_keys((K8S / "secret.yaml").read_text(encoding="utf-8"))
    compose = env_keys(COMPOSE.read_text(encoding="utf-8"))
    for key in {**configmap, **secret, **compose}:
        assert settings_path_exists(key), f"{key} is not a field of settings.Settings"
    # and the ConfigMap values validate
    for key, value in configmap.items():
        monkeypatch.setenv(key, value)
    s = Settings(_env_file=None)
    assert s.web_host == "0.0.0.0" and s.web_port == 6066
    assert s.kafka.security_protocol == "SASL_SSL"
    assert s.clickhouse.url and s.clickhouse.url.startswith("https://")


def test_compose_worker_uses_least_privilege_user():
    text = COMPOSE.read_text(encoding="utf-8")
    env = env_keys(text)
    assert env["DMM_CLICKHOUSE__USER"] == "dmm_worker"
    assert env["DMM_CLICKHOUSE__URL"].startswith("http://clickhouse:")
    assert env["DMM_WEB_HOST"] == "0.0.0.0"
    for image in ("apache/kafka:", "clickhouse/clickhouse-server:", "prom/prometheus:", "grafana/grafana:"):
        assert f"image: {image}" in text
    assert "KAFKA_PROCESS_ROLES: broker,controller" in text  # KRaft
    assert "../prometheus:/etc/prometheus" in text
    assert "../grafana/provisioning:/etc/grafana/provisioning" in text
    assert "../clickhouse/grants.sql:/etc/dmm/grants.sql" in text
    # no secret values in the file, only ${VAR} references
    assert not re.search(r"^\s*[A-Z_]*PASSWORD:\s*(?!\$\{)\S", text, re.M)


def test_k8s_secret_template_has_no_real_secret():
    text = (K8S / "secret.yaml").read_text(encoding="utf-8")
    for m in re.finditer(r"^\s+(\w+(?:\.\w+)?):\s*(\S.*)$", text, re.M):
        key, value = m.groups()
        if "PASSWORD" in key:
            assert value.strip('"') == "REPLACE_ME", key


def test_k8s_deployment_hardening_and_probes():
    text = (K8S / "statefulset.yaml").read_text(encoding="utf-8")
    for needle in (
        "runAsNonRoot: true", "readOnlyRootFilesystem: true", "allowPrivilegeEscalation: false",
        'drop: ["ALL"]', "mountPath: /tmp", "emptyDir:", "livenessProbe:", "readinessProbe:",
        "path: /healthz", "containerPort: 6066", 'prometheus.io/scrape: "true"', 'prometheus.io/port: "6066"',
        "requests:", "limits:",
    ):
        assert needle in text, needle
    assert "secretRef:" in text and "configMapRef:" in text


def test_kustomization_lists_every_manifest():
    text = (K8S / "kustomization.yaml").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\s+-\s+(\S+\.yaml)", text, re.M))
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    kinds = " ".join(p.read_text(encoding="utf-8") for p in K8S.glob("*.yaml"))
    for kind in ("Namespace", "ConfigMap", "Secret", "StatefulSet", "Service", "PodDisruptionBudget"):
        assert f"kind: {kind}\n" in kinds, kind


def test_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^USER 10001", text, re.M)
    assert 'ENTRYPOINT ["dmm"]' in text and 'CMD ["worker"]' in text
    assert re.search(r"^EXPOSE 6066$", text, re.M)
    # every package the wheel build needs is copied in
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    include = re.search(r"include\s*=\s*\[([^\]]*)\]", pyproject).group(1)
    for pkg in re.findall(r'"(\w+)\*"', include):
        assert f"COPY {pkg} ./{pkg}" in text, f"Dockerfile does not copy package {pkg}"


@pytest.mark.integration
def test_install_prometheus_script_is_valid_bash():
    import subprocess

    script = ROOT / "scripts" / "install-prometheus"
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert script.stat().st_mode & 0o111, "scripts/install-prometheus is not executable"


KEYS_SECRET = "dmm-producer-keys"


def test_the_producer_keys_file_is_a_secret_mounted_read_only_in_k8s():
    configmap = env_keys((K8S / "configmap.yaml").read_text(encoding="utf-8"))
    keys_file = configmap["DMM_INGEST__KEYS_FILE"]
    directory, name = keys_file.rsplit("/", 1)
    deployment = (K8S / "statefulset.yaml").read_text(encoding="utf-8")
    near = deployment[deployment.index(directory) - 80 :]
    mount = re.search(r"- name: (\S+)\n\s+mountPath: (\S+)\n\s+readOnly: true", near)
    assert mount and mount.group(2) == directory, "the keys file's directory is a read-only mount"
    volume = re.search(
        rf"- name: {mount.group(1)}\n\s+secret:\n\s+secretName: (\S+)\n\s+defaultMode: (\d+)", deployment
    )
    assert volume and volume.group(1) == KEYS_SECRET
    assert int(volume.group(2), 8) & 0o007 == 0, "no world access to the keys"
    secrets = (K8S / "secret.yaml").read_text(encoding="utf-8")
    template = secrets[secrets.index(f"name: {KEYS_SECRET}") :]
    csv_text = re.search(rf"  {re.escape(name)}: \|\n((?:    .*\n?)+)", template)
    assert csv_text, f"Secret {KEYS_SECRET} holds {name}"
    rows = [line.strip() for line in csv_text.group(1).splitlines()]
    assert rows[0] == "exchange_id,key_id,secret" and all(row.endswith(",REPLACE_ME") for row in rows[1:])
    assert not re.search(r"\b[0-9a-fA-F]{64,}\b", secrets), "no real secret in the template"
    # Applied unfilled, the worker refuses to start and says which line.
    with pytest.raises(KeysFileError, match=r"line 2 .*not hex"):
        parse_keys(rows, name)


def test_compose_mounts_the_producer_keys_as_a_secret_and_kafka_requires_sasl_and_acls():
    text = COMPOSE.read_text(encoding="utf-8")
    env = env_keys(text)
    assert env["DMM_INGEST__KEYS_FILE"] == "/run/secrets/producer_keys"
    worker = text[text.index("  dmm-worker:") : text.index("  prometheus:")]
    assert re.search(r"^    secrets:\n      - producer_keys$", worker, re.M)
    top = text[text.index("\nsecrets:") :]
    assert re.search(r"producer_keys:\n\s+file: \./secrets/producer-keys\.csv", top)
    assert re.search(r"kafka_exchange_users:\n\s+file: \./secrets/kafka-exchange-users\.csv", top)
    ignored = (DEPLOY / "compose" / "secrets" / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignored, "the secrets directory keeps its files out of git"
    # Exchanges and the worker authenticate (SCRAM); what no ACL allows is denied.
    listeners = re.search(r"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: (\S+)", text).group(1)
    assert {"EXTERNAL:SASL_PLAINTEXT", "CLIENT:SASL_PLAINTEXT"} <= set(listeners.split(","))
    for needle in (
        "KAFKA_SASL_ENABLED_MECHANISMS: SCRAM-SHA-512",
        "KAFKA_AUTHORIZER_CLASS_NAME: org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        'KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND: "false"',
        "./kafka-acls.sh:/opt/dmm/kafka-acls.sh:ro",
        "bash /opt/dmm/kafka-acls.sh $$B /run/secrets/kafka_exchange_users",
    ):
        assert needle in text, needle
    kafka = text[text.index("  kafka:") : text.index("  kafka-init:")]
    published = re.findall(r'^\s+- "(?:[\d.]+:)?(\d+):\d+"$', kafka, re.M)
    assert published == ["9092"], "only the SASL listener for exchanges is published (9093 is the super user's)"
    assert (env["DMM_KAFKA__SECURITY_PROTOCOL"], env["DMM_KAFKA__SASL_USERNAME"]) == ("SASL_PLAINTEXT", "dmm-worker")


ACLS = DEPLOY / "compose" / "kafka-acls.sh"


def _run_acl_script(tmp_path: Path, users: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The script against stand-ins of Kafka's admin tools that record their arguments."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("kafka-acls.sh", "kafka-configs.sh"):
        stub = bin_dir / tool
        stub.write_text(f'#!/usr/bin/env bash\nprintf "{tool} %s\\n" "$*" >> "{calls}"\n')
        stub.chmod(0o755)
    users_file = tmp_path / "kafka-exchange-users.csv"
    users_file.write_text(users)
    passwords = {"WORKER_PASSWORD": "w" * 24, "OPS_PASSWORD": "o" * 24}
    result = subprocess.run(
        ["bash", str(ACLS), "kafka:9093", str(users_file)],
        env={"PATH": "/usr/bin:/bin", "KAFKA_BIN": str(bin_dir), **passwords, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    return result, calls.read_text().splitlines() if calls.exists() else []


def _grants(calls: list[str]) -> dict[str, set[tuple[str, str]]]:
    """Principal -> {(operation, resource)} from the recorded kafka-acls.sh calls."""
    grants: dict[str, set[tuple[str, str]]] = {}
    for call in calls:
        if not call.startswith("kafka-acls.sh"):
            continue
        words = call.split()
        principal = words[words.index("--allow-principal") + 1].removeprefix("User:")
        pattern = words[words.index("--resource-pattern-type") + 1] if "--resource-pattern-type" in words else "literal"
        operations = [words[i + 1] for i, w in enumerate(words) if w == "--operation"]
        resources = [f"{w[2:]}:{pattern}:{words[i + 1]}" for i, w in enumerate(words) if w in ("--topic", "--group")]
        resources += ["cluster"] * ("--cluster" in words)
        grants.setdefault(principal, set()).update((op, res) for op in operations for res in resources)
    return grants


@pytest.mark.integration
def test_acl_script_lets_each_exchange_write_dm_events_only_and_the_monitor_alone_read_it(tmp_path: Path):
    result, calls = _run_acl_script(
        tmp_path, f"exchange_id,password\r\nSHDEX,{'s' * 20}\r\nSZDEX,{'z' * 20}\r\n", TOPIC_PREFIX="t."
    )
    assert result.returncode == 0, result.stderr
    assert "2 exchange(s)" in result.stdout
    for password in ("w" * 24, "o" * 24, "s" * 20, "z" * 20):
        assert password not in result.stdout + result.stderr
    users = {c.split("--entity-name ")[1].split()[0] for c in calls if c.startswith("kafka-configs.sh")}
    assert users == {"dmm-worker", "dmm-ops", "exchange-SHDEX", "exchange-SZDEX"}
    grants = _grants(calls)
    for exchange in ("exchange-SHDEX", "exchange-SZDEX"):
        assert grants[exchange] == {
            ("Write", "topic:literal:t.dm.events"),
            ("Describe", "topic:literal:t.dm.events"),
            ("IdempotentWrite", "cluster"),
        }
    events = "topic:literal:t.dm.events"
    readers = {p for p, g in grants.items() for op, res in g if res == events and op in ("Read", "All")}
    assert readers == {"dmm-worker"}
    rule_writers = {p for p, g in grants.items() if ("Write", "topic:literal:t.dm.rules") in g}
    assert rule_writers == {"dmm-ops"}
    for topic in ("t.dm.alerts", "t.dm.rejected"):
        assert {p for p, g in grants.items() if ("Write", f"topic:literal:{topic}") in g} == {"dmm-worker"}
    assert ("Read", "group:prefixed:dmm-worker") in grants["dmm-worker"]  # dmm-worker and Faust's dmm-worker-control
    assert ("All", "topic:prefixed:dmm-worker-control") in grants["dmm-worker"]  # Faust's own topics
    assert not any(res.startswith("topic:prefixed:t.dm") or res.endswith(":*") for g in grants.values() for _, res in g)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("users", "env", "error"),
    [
        ("exchange_id,password\nSHDEX,short\n", {}, "password of Kafka user exchange-SHDEX must be"),
        (f"exchange_id,password\nshdex;rm,{'s' * 20}\n", {}, "is not a row exchange_id,password"),
        ("exchange_id,password\n", {}, "names no exchange"),
        (f"exchange_id,password\nSHDEX,{'s' * 20}\n", {"WORKER_PASSWORD": ""}, "set WORKER_PASSWORD"),
    ],
)
def test_acl_script_refuses_what_it_cannot_apply_safely(tmp_path: Path, users: str, env: dict[str, str], error: str):
    result, _ = _run_acl_script(tmp_path, users, **env)
    assert result.returncode != 0 and error in result.stderr, result.stderr


@pytest.mark.integration
def test_acl_script_is_valid_bash_and_executable():
    subprocess.run(["bash", "-n", str(ACLS)], check=True)
    assert ACLS.stat().st_mode & 0o111, f"{ACLS} is not executable"
