"""The Kubernetes manifests of deploy/k8s: valid against the Kubernetes and CRD schemas, offline, and
consistent with the settings, topology/ and deploy/monitoring (one source of truth each)."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from deploy.k8s.crds import Checked, is_custom_resource, validate_custom_resources
from deploy.k8s.manifests import (
    ALERTS_FILE,
    DASHBOARD_FILE,
    GROUP_INSTANCE_ENV,
    JOB_LABEL,
    KUSTOMIZATION,
    MILVUS_VALUES_FILE,
    DeployOptions,
    deployed_settings,
    env_name,
    render,
    write,
)
from deploy.k8s.topics import kafka_topics
from topology.settings import Settings, load_settings

K8S_VERSIONS = ("1.31", kubernetes_validate.utils.latest_version())  # a conservative floor, and the newest bundled
PLAIN = Settings(state_dir=Path("/tmp"))
SECURED = Settings(
    state_dir=Path("/tmp"),
    topic_prefix="prod.",
    topic_partitions=12,
    topic_replication_factor=3,
    app_id="recsys-sail",
    kafka_security_protocol="SASL_SSL",
    kafka_sasl_mechanism="SCRAM-SHA-512",
    kafka_sasl_username="laptop-user",
    kafka_sasl_password=SecretStr("kafka-password-from-a-laptop"),
    milvus_uri="https://milvus.example:19530",
    milvus_tls_ca_file=Path("/home/me/milvus-ca.pem"),
    milvus_token=SecretStr("root:milvus-token-from-a-laptop"),
    triton_url="grpcs://triton.example:9001",
    triton_tls_ca_file=Path("/home/me/triton-ca.pem"),
    content_batch_max=32,
)
SCENARIOS = {
    "plain": (PLAIN, DeployOptions()),
    "secured": (
        SECURED,
        DeployOptions(
            namespace="recsys",
            cluster="kafka-main",
            worker_max_replicas=20,
            triton_gpus=0,
            encoder_claim="sail-encoder",
            monitoring_labels=(("release", "kube-prometheus-stack"),),
        ),
    ),
}


def _documents(scenario: str) -> list[dict[str, Any]]:
    settings, options = SCENARIOS[scenario]
    return [d for name, docs in render(settings, options).items() if name != MILVUS_VALUES_FILE for d in docs]


def _find(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


@pytest.fixture(scope="module")
def crd_checks() -> dict[str, list[Checked]]:
    """Every custom resource of both scenarios through the CRD validators, in one Node.js run."""
    per_scenario = {name: [d for d in _documents(name) if is_custom_resource(d)] for name in SCENARIOS}
    checked = validate_custom_resources([d for docs in per_scenario.values() for d in docs], Settings().cache_dir)
    out, start = {}, 0
    for name, docs in per_scenario.items():
        out[name], start = checked[start : start + len(docs)], start + len(docs)
    return out


# ---------------------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_core_kubernetes_document_validates_strictly(scenario: str, version: str) -> None:
    core = [d for d in _documents(scenario) if not is_custom_resource(d)]
    assert {d["kind"] for d in core} == {"Namespace", "ConfigMap", "Service", "StatefulSet", "Deployment", "PodDisruptionBudget"}
    for document in core:
        kubernetes_validate.validate(document, version, strict=True)  # raises with the path of the first problem


def test_strict_kubernetes_validation_rejects_a_misspelled_field_and_a_wrong_type() -> None:
    workers = _find(_documents("plain"), "StatefulSet")
    misspelled = copy.deepcopy(workers)
    _container(misspelled)["readinesProbe"] = _container(misspelled).pop("readinessProbe")
    wrong_type = copy.deepcopy(workers)
    wrong_type["spec"]["replicas"] = "2"
    for bad, why in ((misspelled, "readinesProbe"), (wrong_type, "is not of type 'integer'")):
        with pytest.raises(kubernetes_validate.ValidationError, match=why):
            kubernetes_validate.validate(bad, "1.31", strict=True)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_custom_resource_validates_against_its_crd_schema(scenario: str, crd_checks: dict[str, list[Checked]]) -> None:
    checked = crd_checks[scenario]
    kinds = {
        "Kafka",
        "KafkaNodePool",
        "KafkaUser",
        "KafkaTopic",
        "ScaledObject",
        "TriggerAuthentication",
        "PrometheusRule",
        "PodMonitor",
    }
    assert {c.kind for c in checked} == kinds
    assert [c for c in checked if c.errors] == []


def test_the_crd_validators_reject_misspelled_fields_and_wrong_types() -> None:
    """One misspelled field and one wrong type per validator package (Strimzi, KEDA, prometheus-operator).

    The compiled CRD schemas alone let unknown fields pass (no additionalProperties: false in the CRDs);
    validate.mjs finds them by swapping each value for one of another JSON type: a field the schema knows
    then fails, one it ignores does not. Both halves are checked here."""
    documents = _documents("plain")
    cases: list[tuple[dict[str, Any], str]] = []

    names = {"KafkaTopic": "sail.content-uploads", "PodMonitor": "sail-worker"}

    def case(kind: str, change: Any, expected: str) -> None:
        document = copy.deepcopy(_find(documents, kind, names.get(kind)))
        change(document)
        cases.append((document, expected))

    case(
        "KafkaNodePool", lambda d: d["spec"].__setitem__("resource", {"requests": {"cpu": "2"}}), "/spec/resource: unknown field"
    )  # resources
    case("KafkaTopic", lambda d: d["spec"].__setitem__("partitions", "6"), "spec/partitions must be integer")
    case(
        "Kafka",
        lambda d: d["spec"]["kafka"]["listeners"][0].__setitem__("authentification", {}),
        "listeners/0/authentification: unknown field",
    )
    case("ScaledObject", lambda d: d["spec"].__setitem__("maxReplicas", 3), "/spec/maxReplicas: unknown field")
    case("ScaledObject", lambda d: d["spec"].__setitem__("maxReplicaCount", "3"), "spec/maxReplicaCount must be integer")
    case(
        "TriggerAuthentication",
        lambda d: d["spec"]["secretTargetRef"][0].__setitem__("secret", "x"),
        "secretTargetRef/0/secret: unknown field",
    )
    case("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].__setitem__("forr", "1m"), "rules/0/forr: unknown field")
    case(
        "PodMonitor",
        lambda d: d["spec"]["podMetricsEndpoints"][0].__setitem__("interval", 15),
        "podMetricsEndpoints/0/interval must be string",
    )
    checked = validate_custom_resources([d for d, _ in cases], Settings().cache_dir)
    for (document, expected), result in zip(cases, checked, strict=True):
        assert any(expected in error for error in result.errors), (document["kind"], expected, result.errors)


# ---------------------------------------------------------------------------------------------- one source of truth


def test_the_rendered_topics_are_exactly_kafka_topics_of_the_settings() -> None:
    settings, options = SCENARIOS["secured"]
    deployed = deployed_settings(settings, options)  # the Milvus server backend: no collaborative table, no changelog of it
    assert render(settings, options)["topics.yaml"] == kafka_topics(deployed, options.cluster, options.namespace)
    # settings that leave the replication to the deployment get 3 replicas on 3 brokers (min ISR 2)
    topics = render(PLAIN, DeployOptions())["topics.yaml"]
    assert topics == kafka_topics(deployed_settings(PLAIN, DeployOptions()), "sail", "sail-stream")
    assert all(t["spec"]["replicas"] == 3 and t["spec"]["config"]["min.insync.replicas"] == "2" for t in topics)


def test_the_prometheus_rule_is_alerts_yml_and_the_worker_job_is_the_one_it_names() -> None:
    documents = _documents("plain")
    alerts = yaml.safe_load(ALERTS_FILE.read_text())
    assert _find(documents, "PrometheusRule")["spec"]["groups"] == alerts["groups"]
    jobs = set(re.findall(r'\bjob="([^"]+)"', ALERTS_FILE.read_text()))
    monitor = _find(documents, "PodMonitor", "sail-worker")
    pod_labels = _find(documents, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["jobLabel"] == JOB_LABEL and jobs == {pod_labels[JOB_LABEL]}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in {
        p["name"] for p in _container(_find(documents, "StatefulSet"))["ports"]
    }


def test_the_dashboard_config_map_holds_the_dashboard_json_for_grafanas_sidecar() -> None:
    dashboard = _find(_documents("plain"), "ConfigMap", "sail-stream-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["sail-stream.json"]) == json.loads(DASHBOARD_FILE.read_text())


# ---------------------------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize(("partitions", "max_replicas", "expected"), [(4, 10, 4), (12, 6, 6), (6, 6, 6)])
def test_keda_never_scales_the_workers_beyond_the_partitions(partitions: int, max_replicas: int, expected: int) -> None:
    settings = Settings(state_dir=Path("/tmp"), topic_partitions=partitions, app_id="workers-a")
    options = DeployOptions(worker_replicas=2, worker_max_replicas=max_replicas)
    scaled = _find(render(settings, options)["autoscaling.yaml"], "ScaledObject")
    assert scaled["spec"]["maxReplicaCount"] == expected <= partitions and scaled["spec"]["minReplicaCount"] == 2
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": options.workers}
    triggers = scaled["spec"]["triggers"]
    assert {t["metadata"]["topic"] for t in triggers} == {settings.topics().uploads.name, settings.topics().interactions.name}
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {"workers-a"}
    with pytest.raises(ValueError, match="idle"):
        render(Settings(state_dir=Path("/tmp"), topic_partitions=1), DeployOptions(worker_replicas=2))


def test_each_worker_pod_is_its_own_static_group_member() -> None:
    workers = _find(_documents("plain"), "StatefulSet")
    env = {e["name"]: e for e in _container(workers)["env"]}
    assert GROUP_INSTANCE_ENV == env_name("kafka_group_instance_id") and "kafka_group_instance_id" in Settings.model_fields
    # a StatefulSet pod's name is <set>-<ordinal>: unique among the live pods and the same after a restart
    assert env[GROUP_INSTANCE_ENV]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert workers["spec"]["serviceName"] == _find(_documents("plain"), "Service", "sail-worker")["metadata"]["name"]
    assert "replicas" not in workers["spec"]  # KEDA owns the count; an apply must not reset it (a rebalance each time)


def test_every_sail_variable_names_a_setting_and_no_secret_is_rendered(tmp_path: Path) -> None:
    settings, options = SCENARIOS["secured"]
    documents = _documents("secured")
    known = {env_name(field) for field in Settings.model_fields}
    config = _find(documents, "ConfigMap", "sail-worker-config")["data"]
    names = set(config) | {e["name"] for e in _container(_find(documents, "StatefulSet"))["env"]}
    assert names - known == set(), "variables no setting reads (pydantic-settings ignores them silently)"
    rendered = "".join(p.read_text() for p in write(render(settings, options), tmp_path))
    for secret in settings.secret_values():
        assert secret not in rendered
    assert "/home/me" not in rendered  # the laptop's TLS file paths are replaced by the mounted Secrets


def test_the_workers_settings_load_from_the_rendered_environment_and_reach_the_deployments_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, options = SCENARIOS["secured"]
    documents = _documents("secured")
    for name in [n for n in os.environ if n.startswith("SAIL_")]:
        monkeypatch.delenv(name)
    for name, value in _find(documents, "ConfigMap", "sail-worker-config")["data"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(env_name("kafka_sasl_password"), "from-the-kafka-user-secret")
    monkeypatch.setenv(GROUP_INSTANCE_ENV, "sail-worker-0")
    loaded = load_settings()
    assert loaded.kafka_group_instance_id == "sail-worker-0" and loaded.kafka_security_protocol == "SASL_SSL"
    assert (
        loaded.kafka_bootstrap == "kafka-main-kafka-bootstrap.recsys.svc:9093"
        and loaded.kafka_sasl_username == options.kafka_user
    )
    assert loaded.triton_url == "grpcs://sail-triton.recsys.svc:9001" and loaded.milvus_uri == "https://milvus.recsys.svc:19530"
    assert (loaded.app_id, loaded.topic_prefix, loaded.topic_partitions, loaded.content_batch_max) == (
        "recsys-sail",
        "prod.",
        12,
        32,
    )
    mounts = {m["mountPath"] for m in _container(_find(documents, "StatefulSet"))["volumeMounts"]}
    for path in (loaded.kafka_ssl_cafile, loaded.milvus_tls_ca_file, loaded.triton_tls_ca_file):
        assert path is not None and str(path.parent) in mounts


def test_credentials_come_from_the_secrets_strimzi_and_the_operator_create() -> None:
    documents = _documents("plain")
    workers = _find(documents, "StatefulSet")
    env = {e["name"]: e.get("valueFrom", {}) for e in _container(workers)["env"]}
    assert env[env_name("kafka_sasl_password")] == {
        "secretKeyRef": {"name": "sail-worker", "key": "password"}
    }  # the KafkaUser's Secret
    assert env[env_name("milvus_token")] == {"secretKeyRef": {"name": "sail-milvus-token", "key": "token"}}
    volumes = {v["name"]: v for v in workers["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-ca"]["secret"]["secretName"] == "sail-cluster-ca-cert"
    assert _find(documents, "KafkaUser")["metadata"]["name"] == "sail-worker"
    assert _find(documents, "Kafka")["spec"]["kafka"]["listeners"][0]["authentication"] == {"type": "scram-sha-512"}
    auth = _find(documents, "TriggerAuthentication")["spec"]
    refs = {(r["parameter"], r["name"], r["key"]) for r in auth["secretTargetRef"]}
    assert refs == {("password", "sail-worker", "password"), ("ca", "sail-cluster-ca-cert", "ca.crt")}
    assert not [d for d in documents if d["kind"] == "Secret"]


def test_triton_gets_its_gpus_and_is_ready_once_the_encoder_is_loaded() -> None:
    triton = _find(_documents("plain"), "Deployment")
    container = _container(triton)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1 and "--device" in container["args"]
    assert container["args"][container["args"].index("--device") + 1] == "cuda"
    # ready once the encoder is loaded, not only the server up
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/models/sail_encoder/ready", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": 8001, "http": 8000, "metrics": 8002}
    cpu = _container(_find(_documents("secured"), "Deployment"))
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"] and "--tls-cert" in cpu["args"]
    # a trained encoder folder is served from its volume; a path on the rendering machine is refused
    trained = Settings(state_dir=Path("/tmp"), encoder="/home/me/runs/sail-tiny-cre/encoder")
    args = _container(_find(render(trained, DeployOptions(encoder_claim="sail-encoder"))["triton.yaml"], "Deployment"))["args"]
    assert args[args.index("--encoder") + 1] == "/var/lib/sail-stream/encoder"
    with pytest.raises(ValueError, match="encoder_claim"):
        render(trained, DeployOptions())


def test_the_kafka_cluster_replicates_and_limits_messages_as_the_topics_need() -> None:
    documents = _documents("plain")
    kafka = _find(documents, "Kafka")
    assert kafka["metadata"]["annotations"] == {"strimzi.io/kraft": "enabled", "strimzi.io/node-pools": "enabled"}
    config = kafka["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"], config["offsets.topic.replication.factor"]) == (
        3,
        2,
        3,
    )
    assert config["message.max.bytes"] == max(
        int(t["spec"]["config"]["max.message.bytes"]) for t in documents if t["kind"] == "KafkaTopic"
    )
    pool = _find(documents, "KafkaNodePool")
    assert pool["spec"]["replicas"] == 3 and pool["spec"]["roles"] == ["controller", "broker"]


def test_milvus_values_are_cluster_mode_and_milvus_lite_is_refused() -> None:
    (values,) = render(PLAIN, DeployOptions())[MILVUS_VALUES_FILE]
    assert values["cluster"] == {"enabled": True} and values["etcd"]["replicaCount"] == 3
    assert "authorizationEnabled: true" in values["extraConfigFiles"]["user.yaml"]
    with pytest.raises(ValueError, match="Milvus Lite"):
        render(Settings(state_dir=Path("/tmp"), milvus_uri="./local.db"), DeployOptions())


def test_write_gives_kubectl_apply_k_every_resource_file_and_helm_its_values(tmp_path: Path) -> None:
    files = render(PLAIN, DeployOptions())
    written = write(files, tmp_path)
    kustomization = yaml.safe_load((tmp_path / KUSTOMIZATION).read_text())
    assert kustomization["resources"] == [name for name in files if name != MILVUS_VALUES_FILE]
    assert {p.name for p in written} == {*files, KUSTOMIZATION}
    for name, documents in files.items():
        assert list(yaml.safe_load_all((tmp_path / name).read_text())) == documents
    assert (
        "sail-stream.json: |" in (tmp_path / "monitoring.yaml").read_text()
    )  # the dashboard reads as JSON, not as one escaped line
    assert not [p for p in written if "&id0" in p.read_text()]  # no YAML anchors: each document reads on its own


def test_a_changed_setting_rolls_the_workers() -> None:
    """The workers read their ConfigMap at start only, so its digest is in the pod template."""

    def digest(settings: Settings) -> str:
        workers = _find(render(settings, DeployOptions())["workers.yaml"], "StatefulSet")
        return workers["spec"]["template"]["metadata"]["annotations"]["sail-stream/config-sha256"]

    assert (
        digest(PLAIN)
        == digest(Settings(state_dir=Path("/tmp")))
        != digest(Settings(state_dir=Path("/tmp"), content_batch_max=16))
    )


def test_options_refuse_names_kubernetes_cannot_take_and_contradicting_bounds() -> None:
    with pytest.raises(ValueError, match="DNS label"):
        DeployOptions(namespace="Sail_Stream")
    with pytest.raises(ValueError, match="worker replicas"):
        DeployOptions(worker_replicas=5, worker_max_replicas=3)
