"""configs/kubernetes/: the manifests parse and agree with the image and the production config."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "configs" / "kubernetes"


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((K8S / name).read_text())
    assert isinstance(doc, dict)
    return doc


def container() -> dict[str, Any]:
    spec = load("deployment.yaml")["spec"]["template"]["spec"]
    (only,) = spec["containers"]
    return dict(only)


def test_grace_period_covers_prestop_and_the_bridge_drain() -> None:
    production = tomllib.loads((ROOT / "configs" / "production.toml").read_text())
    drain_s = production["server"]["drain_timeout_s"]
    pod = load("deployment.yaml")["spec"]["template"]["spec"]
    pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # SIGTERM comes after preStop; the drain, then the last sinks flush, must fit.
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + drain_s + 10


def test_probes_use_the_bridge_endpoints_and_port() -> None:
    c = container()
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    (port,) = c["ports"]
    assert port["containerPort"] == 8080 and port["name"] == "http"
    service = load("service.yaml")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_runs_as_the_image_user_without_privileges() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pod = load("deployment.yaml")["spec"]["template"]["spec"]
    assert f"USER {pod['securityContext']['runAsUser']}" in dockerfile
    assert container()["securityContext"]["allowPrivilegeEscalation"] is False


def test_selectors_agree_and_rollouts_never_drop_capacity() -> None:
    deployment = load("deployment.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for doc in (deployment, load("pdb.yaml")):
        assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert load("service.yaml")["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = load("hpa.yaml")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2 and load("pdb.yaml")["spec"]["maxUnavailable"] == 1


def test_secrets_come_from_the_environment_not_the_manifest() -> None:
    for env in container()["env"]:
        name = env["name"]
        if any(word in name for word in ("SECRET", "TOKEN", "API_KEY")):
            assert "value" not in env, name
