"""deploy/compose, deploy/k8s, deploy/Dockerfile: the invariants the README promises.

Text-level checks (the venv has no YAML parser); with PyYAML installed every
manifest is also parsed.
"""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from settings import Settings

from ._util import DEPLOY, ROOT

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
    return sorted(K8S.glob("*.yaml")) + [COMPOSE, *sorted((DEPLOY / "prometheus").glob("*.yml"))] + sorted(
        (DEPLOY / "grafana" / "provisioning").rglob("*.yml")
    )


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
    text = (K8S / "deployment.yaml").read_text(encoding="utf-8")
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
    for kind in ("Namespace", "ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"):
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


def test_install_prometheus_script_is_valid_bash():
    import subprocess

    script = ROOT / "scripts" / "install-prometheus"
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert script.stat().st_mode & 0o111, "scripts/install-prometheus is not executable"
