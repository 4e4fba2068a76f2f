"""The production deployment files: docker-compose.yml, the Dockerfile, deploy/k8s/."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.policy import default_policy, load_policy
from pipeline.settings import Settings
from tests.ops.conftest import ROOT, require_tool, run

K8S = ROOT / "deploy/k8s"
K8S_VERSION = "1.30"


def compose_config(tmp_path: Path) -> dict[str, Any]:
    result = run([require_tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config"])
    assert result.returncode == 0, result.stdout + result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_compose_file_is_valid_and_workers_scale(tmp_path: Path) -> None:
    """`docker-compose config` accepts the file; workers can be scaled (no fixed name or port)."""
    services = compose_config(tmp_path)["services"]
    assert {"kafka-1", "kafka-2", "kafka-3", "topics", "worker", "prometheus", "grafana"} <= set(
        services
    )
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker, worker
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["command"] == ["topics"]
    for name in ("kafka-1", "kafka-2", "kafka-3"):
        env = services[name]["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", env
        assert services[name]["image"].startswith("apache/kafka:")
    assert worker["environment"]["HERALD_ENV"] == "production"


def test_compose_mounts_files_that_exist(tmp_path: Path) -> None:
    """Every file or folder the compose file mounts (rules, dashboard, provisioning) exists."""
    services = compose_config(tmp_path)["services"]
    mounted = []
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("/"):
                mounted.append(Path(source))
    assert len(mounted) == 5, mounted
    for path in mounted:
        assert path.exists(), path
    assert (ROOT / "deploy/grafana/dashboards/herald.json").exists()


def test_dockerfile_runs_the_worker_as_a_non_root_user() -> None:
    """The image is slim Python 3.11, installs from the lock, runs `herald worker` as non-root."""
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "--constraint requirements.lock" in text
    assert "USER herald" in text and text.index("USER herald") < text.index("ENTRYPOINT")
    assert 'ENTRYPOINT ["herald"]' in text and 'CMD ["worker"]' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def manifests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def test_k8s_manifests_validate() -> None:
    """Every manifest validates (strict: no unknown fields) against the Kubernetes schemas."""
    found = manifests()
    kinds = {doc["kind"] for _, doc in found}
    assert {"Deployment", "ConfigMap", "Secret", "PodDisruptionBudget", "Service"} <= kinds
    for name, doc in found:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} invalid: {exc.message}", pytrace=False)


def by_kind(kind: str) -> dict[str, Any]:
    (doc,) = [d for _, d in manifests() if d["kind"] == kind]
    return doc


def test_probes_use_health_endpoints_on_the_metrics_port() -> None:
    """Liveness is /healthz and readiness /readyz, on the port HERALD_METRICS_PORT serves."""
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    (port,) = container["ports"]
    assert str(port["containerPort"]) == env["HERALD_METRICS_PORT"]
    assert env["HERALD_METRICS_HOST"] == "0.0.0.0"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and get["port"] in (port["name"], port["containerPort"])
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_deployment_reads_policy_and_secrets_from_their_mounts() -> None:
    """HERALD_POLICY_FILE and the *_FILE secrets point into the ConfigMap and Secret mounts."""
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    policy_key = next(iter(by_kind("ConfigMap")["data"]))
    assert volumes["policy"]["configMap"]["name"] == by_kind("ConfigMap")["metadata"]["name"]
    assert env["HERALD_POLICY_FILE"] == f"{mounts['policy']}/{policy_key}"
    secret = by_kind("Secret")
    assert volumes["secrets"]["secret"]["secretName"] == secret["metadata"]["name"]
    for var in ("HERALD_SECRET_FILE", "HERALD_SASL_PASSWORD_FILE"):
        directory, key = os.path.split(env[var])
        assert directory == mounts["secrets"] and key in secret["stringData"], var
    # The variables are ones Settings reads; production mode refuses the development secret.
    # (the mounted files do not exist here: a secret is given directly instead)
    given = {k: v for k, v in env.items() if v and k not in ("HERALD_SECRET_FILE",
             "HERALD_SASL_PASSWORD_FILE")}  # fmt: skip
    settings = Settings.from_env({**given, "HERALD_SECRET": "x", "HERALD_SASL_PASSWORD": "y"})
    assert settings.environment == "production" and settings.log_format == "json"
    assert settings.security.sasl_mechanism == "SCRAM-SHA-512"


def test_k8s_policy_configmap_loads_as_the_default_policy(tmp_path: Path) -> None:
    """The ConfigMap's policy file loads as the worker loads it, with the default's version."""
    (text,) = by_kind("ConfigMap")["data"].values()
    mounted = tmp_path / "policy.toml"
    mounted.write_text(text)
    assert load_policy(mounted).version == default_policy().version


def test_empty_subscriber_secret_is_refused(tmp_path: Path) -> None:
    """An empty secret file (the shipped Secret before it is filled in) stops the worker."""
    empty = tmp_path / "secret"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        Settings.from_env({"HERALD_SECRET_FILE": str(empty)})
