"""Kubernetes, on paper but checked: every manifest of deploy/k8s, and the pod specs the Helm
values give Dagster's chart, validated with kubernetes-validate against a pinned Kubernetes;
the values set what the deployment relies on, with the chart's own key names; no secret value
in any file. No cluster runs here (README, "Deploying")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mdstudio_core.config import Settings

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy/k8s"
VALUES = ROOT / "deploy/helm/values.yaml"
KUBERNETES_VERSION = "1.31.0"
IMAGE = "registry.example.com/mdstudio:0.1.0"
CONFIG, SECRETS = "mdstudio-config", "mdstudio-secrets"

# The keys Dagster's chart (1.13) accepts in the parts of the values we set: its values schema
# (helm/dagster/schema) forbids any other.
CHART_KEYS = {
    "k8sRunLauncher": {
        "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
        "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
        "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig",
    },
    "runK8sConfig": {
        "containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig",
        "jobMetadata",
    },
    "deployment": {
        "name", "image", "port", "dagsterApiGrpcArgs", "codeServerArgs",
        "includeConfigInLaunchedRuns", "env", "envConfigMaps", "envSecrets", "annotations",
        "nodeSelector", "affinity", "tolerations", "podSecurityContext", "securityContext",
        "resources", "livenessProbe", "readinessProbe", "startupProbe", "labels",
        "volumeMounts", "volumes", "schedulerName",
    },
    "queuedRunCoordinator": {
        "maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds",
        "dequeueNumWorkers", "dequeueUseThreads", "blockOpConcurrencyLimitedRuns",
    },
    "runRetries": {"enabled", "maxRetries", "retryOnAssetOrOpFailure"},
}  # fmt: skip


def manifests() -> list[dict[str, Any]]:
    return [
        document
        for path in sorted(K8S.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


def validate(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    "document", manifests(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_every_manifest_is_valid_for_the_pinned_kubernetes(document):
    validate(document)


def test_a_malformed_manifest_is_refused():
    deployment = next(d for d in manifests() if d["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def by_kind() -> dict[str, dict[str, Any]]:
    return {document["kind"]: document for document in manifests()}


def test_the_api_runs_two_ready_replicas_configured_from_a_configmap_and_a_secret():
    found = by_kind()
    deployment = found["Deployment"]
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["image"] == IMAGE
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "livenessProbe" in container
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    sources = [next(iter(source.values()))["name"] for source in container["envFrom"]]
    assert sources == [CONFIG, SECRETS]
    assert found["Service"]["spec"]["selector"] == labels
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert found["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    autoscaler = found["HorizontalPodAutoscaler"]["spec"]
    assert autoscaler["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert autoscaler["minReplicas"] == 2
    assert found["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"] == labels
    job = found["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["mdstudio", "db", "upgrade"]
    assert job["envFrom"] == container["envFrom"]


def test_the_configmap_holds_valid_settings_and_no_secret():
    data = by_kind()["ConfigMap"]["data"]
    Settings.from_env(data)  # every value parses, as the entry points read them
    secret = re.compile(
        r"^MDSTUDIO_(DATABASE_URL|DAGSTER_STORAGE_URL|METRICS_TOKEN|SOURCE_\w+_URL)$"
    )
    assert not [name for name in data if secret.match(name)]


def test_no_file_holds_a_secret_value():
    credentials = re.compile(r"://[^/\s:@]+:[^@\s]+@")  # user:password@ in a URL
    for path in [*K8S.glob("*.yaml"), VALUES]:
        text = path.read_text()
        assert not credentials.search(text), path
        for document in yaml.safe_load_all(text):
            assert document.get("kind") != "Secret", path
    assert values()["postgresql"]["postgresqlPassword"] == ""


def test_the_values_set_what_the_deployment_relies_on():
    chart = values()
    image = chart["dagsterWebserver"]["image"]
    assert f"{image['repository']}:{image['tag']}" == IMAGE
    [deployment] = chart["dagster-user-deployments"]["deployments"]
    assert chart["dagster-user-deployments"]["enabled"] is True
    assert deployment["image"] == chart["dagsterDaemon"]["image"] == image
    assert deployment["codeServerArgs"][:4] == [
        "-m",
        "mdstudio_pipelines.definitions",
        "-a",
        "defs",
    ]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    launcher = chart["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    k8s = launcher["config"]["k8sRunLauncher"]
    for part in (deployment, k8s):
        assert [source["name"] for source in part["envConfigMaps"]] == [CONFIG]
        assert [source["name"] for source in part["envSecrets"]] == [SECRETS]
    daemon = chart["dagsterDaemon"]
    assert daemon["runMonitoring"]["enabled"] is True
    assert daemon["runRetries"]["enabled"] is True and daemon["runRetries"]["maxRetries"] > 0
    queue = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queue["tagConcurrencyLimits"][0]["key"] == "mdstudio/source"
    assert chart["global"]["postgresqlSecretName"]
    assert chart["generatePostgresqlPasswordSecret"] is False
    assert chart["postgresql"]["enabled"] is False
    assert chart["migrate"]["enabled"] is True


def test_the_values_use_only_the_charts_keys():
    chart = values()
    k8s = chart["runLauncher"]["config"]["k8sRunLauncher"]
    [deployment] = chart["dagster-user-deployments"]["deployments"]
    daemon = chart["dagsterDaemon"]
    assert set(k8s) <= CHART_KEYS["k8sRunLauncher"]
    assert set(k8s["runK8sConfig"]) <= CHART_KEYS["runK8sConfig"]
    assert set(deployment) <= CHART_KEYS["deployment"]
    queue = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert set(queue) <= CHART_KEYS["queuedRunCoordinator"]
    assert set(daemon["runRetries"]) <= CHART_KEYS["runRetries"]


def test_the_pods_the_values_describe_are_valid_for_the_pinned_kubernetes():
    """The chart copies these fragments into its pods and Jobs: as a Job and a Deployment they
    must validate (a misspelt securityContext or resources key fails here)."""
    chart = values()
    run = chart["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    container = {"name": "dagster", "image": IMAGE, **run["containerConfig"]}
    validate(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "dagster-run"},
            "spec": {
                **run["jobSpecConfig"],
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [container]},
                },
            },
        }
    )
    [deployment] = chart["dagster-user-deployments"]["deployments"]
    code_server = {
        "name": deployment["name"],
        "image": IMAGE,
        "securityContext": deployment["securityContext"],
        "resources": deployment["resources"],
        "envFrom": [
            *({"configMapRef": ref} for ref in deployment["envConfigMaps"]),
            *({"secretRef": ref} for ref in deployment["envSecrets"]),
        ],
        "ports": [{"containerPort": deployment["port"]}],
    }
    labels = {"app": "code-server"}
    validate(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "code-server"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [code_server]}},
            },
        }
    )
