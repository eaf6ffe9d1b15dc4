"""Kubernetes manifests of a whole deployment (issue 19), built from the settings as plain dicts: the
Strimzi Kafka cluster (KRaft node pools), its topics (`deploy.k8s.topics`) and the workers' user; the
workers as a StatefulSet with static group membership, scaled by KEDA on consumer lag; Triton on GPUs;
the values file of the milvus-helm chart; alert rules, dashboard and scrape configs for the
prometheus-operator. `render` returns them per file, `write` puts them in a folder that
`kubectl apply -k` takes.

Nothing secret is rendered: passwords, tokens and certificates are Secrets that Strimzi creates (the
KafkaUser's password, the cluster CA) or that the operator creates once (deploy/k8s/README.md), and
the pods read them through `secretKeyRef` and Secret volumes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args

import yaml
from pydantic import SecretStr

from deploy.k8s.topics import STRIMZI_API, kafka_topics
from encoders.config import PRESETS
from encoders.signature import SAIL_ENCODER
from topology.settings import Settings, host_port
from topology.topics import replication

PART_OF: Final = "sail-stream"
WORKER_JOB: Final = (
    "sail-stream"  # the Prometheus job of the workers: deploy/monitoring/alerts.yml's SailWorkerDown reads up{job="sail-stream"}
)
JOB_LABEL: Final = "app.kubernetes.io/name"  # the PodMonitors name each job after this pod label
MONITORING: Final = Path(__file__).resolve().parents[1] / "monitoring"
ALERTS_FILE: Final = MONITORING / "alerts.yml"
DASHBOARD_FILE: Final = MONITORING / "grafana-dashboard.json"
MILVUS_VALUES_FILE: Final = "milvus-values.yaml"  # `helm install -f`, not a resource: kept out of kustomization.yaml
KUSTOMIZATION: Final = "kustomization.yaml"

KAFKA_TLS_PORT: Final = 9093  # the Strimzi listener the workers use: TLS with SCRAM-SHA-512
MILVUS_PORT: Final = 19530
STATE_DIR: Final = "/var/lib/sail-stream"
KAFKA_CA_DIR: Final = "/etc/sail-stream/kafka-ca"
MILVUS_TLS_DIR: Final = "/etc/sail-stream/milvus-tls"
TRITON_TLS_DIR: Final = "/etc/sail-stream/triton-tls"
ENCODER_DIR: Final = "/var/lib/sail-stream/encoder"
RUN_AS: Final = 10001  # any non-root uid: the pods write only to their emptyDir volumes

# Settings that belong to the local stack (deploy/local) or that each pod gets otherwise: never copied
# from the settings in effect into the workers' ConfigMap.
LOCAL_ONLY: Final = frozenset(
    {
        "state_dir",
        "cache_dir",
        "kafka_version",
        "kafka_controller_port",
        "kafka_brokers",
        "kafka_heap_mb",
        "start_timeout_s",
        "triton_tls_server_cert_file",
        "triton_tls_server_key_file",
        "kafka_group_instance_id",
    }
)
# Settings the deployment decides (addresses of its own services, the mounted files): always set.
OWNED: Final = frozenset(
    {
        "kafka_bootstrap",
        "kafka_security_protocol",
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        "milvus_uri",
        "milvus_backend",
        "milvus_tls_ca_file",
        "milvus_tls_cert_file",
        "milvus_tls_key_file",
        "triton_url",
        "triton_tls_ca_file",
        "triton_tls_cert_file",
        "triton_tls_key_file",
    }
)
GROUP_INSTANCE_ENV: Final = "SAIL_KAFKA_GROUP_INSTANCE_ID"
WEB_BIND_ENV: Final = "SAIL_WORKER_WEB_BIND"  # the kubelet's probes and Prometheus reach the pod's address, not its loopback

_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class DeployOptions:
    """What a Kubernetes deployment decides beyond the settings: names, sizes, the image.

    Raises:
        ValueError: a name is no DNS label, or the replica bounds contradict each other.
    """

    namespace: str = "sail-stream"
    cluster: str = "sail"  # the Strimzi Kafka cluster
    image: str = "sail-stream:0.1.0"  # the project's image: `sail-stream` on PATH, `python -m encoders.serving` for Triton
    image_pull_policy: str = "IfNotPresent"
    kafka_nodes: int = 3  # each a KRaft controller and a broker
    kafka_storage: str = "100Gi"
    kafka_storage_class: str | None = None  # None: the cluster's default class
    kafka_user: str = "sail-worker"  # the KafkaUser, and so the Secret Strimzi writes its password to
    kafka_acls: bool = True  # simple authorization on the cluster; the workers' user may touch only its topics and groups
    workers: str = "sail-worker"
    worker_replicas: int = 2  # KEDA's minimum
    worker_max_replicas: int = 6  # KEDA's maximum, never above the partitions (a worker beyond them idles)
    worker_cpu: str = "1"
    worker_memory: str = "2Gi"
    uploads_lag_threshold: int = 200  # uploads waiting per worker before KEDA adds one (each costs an encode)
    interactions_lag_threshold: int = 5000  # interactions waiting per worker (cheap: maths and a Milvus upsert per batch)
    triton: str = "sail-triton"
    triton_replicas: int = 1
    triton_gpus: int = 1  # nvidia.com/gpu per Triton pod; 0: Triton on CPU
    triton_cpu: str = "2"
    triton_memory: str = "8Gi"
    triton_shm: str = "2Gi"  # /dev/shm: PyTriton hands tensors between tritonserver and the Python models through it
    encoder_claim: str | None = (
        None  # a PVC holding a saved encoder folder (`sail-stream train`'s OUT/encoder); None: a preset in the image
    )
    milvus_release: str = (
        "milvus"  # the milvus-helm release; its proxy Service has the release's name when that contains "milvus"
    )
    milvus_token_secret: str | None = "sail-milvus-token"  # key `token`: user:password of the workers' Milvus user; None: no auth
    milvus_tls_secret: str = (
        "sail-milvus-tls"  # keys ca.crt (and tls.crt/tls.key for mutual TLS), used when the settings ask for TLS
    )
    triton_tls_secret: str = "sail-triton-tls"  # a kubernetes.io/tls Secret with ca.crt, used when the settings ask for TLS
    monitoring_labels: tuple[
        tuple[str, str], ...
    ] = ()  # e.g. (("release", "kube-prometheus-stack"),) for the operator's selectors

    def __post_init__(self) -> None:
        for field in ("namespace", "cluster", "kafka_user", "workers", "triton", "milvus_release"):
            if not _DNS_LABEL.match(getattr(self, field)):
                raise ValueError(f"{field} {getattr(self, field)!r} is not a DNS label (lower case letters, digits, '-')")
        if not 1 <= self.worker_replicas <= self.worker_max_replicas:
            raise ValueError(f"worker replicas must satisfy 1 <= {self.worker_replicas} <= max {self.worker_max_replicas}")
        if self.kafka_nodes < 1 or self.triton_replicas < 1 or self.triton_gpus < 0:
            raise ValueError("kafka_nodes and triton_replicas are at least 1, triton_gpus at least 0")

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.cluster}-kafka-bootstrap.{self.namespace}.svc:{KAFKA_TLS_PORT}"

    @property
    def kafka_user_secret(self) -> str:
        """Strimzi's User Operator writes the SCRAM password to a Secret named like the user (key `password`)."""
        return self.kafka_user

    @property
    def cluster_ca_secret(self) -> str:
        """Strimzi's Cluster Operator publishes the CA of the brokers' certificates here (key `ca.crt`)."""
        return f"{self.cluster}-cluster-ca-cert"

    @property
    def milvus_service(self) -> str:
        return self.milvus_release if "milvus" in self.milvus_release else f"{self.milvus_release}-milvus"


# ---------------------------------------------------------------------------------------------- settings


def env_name(field: str) -> str:
    """The environment variable of a `Settings` field (`env_prefix` SAIL_)."""
    return f"{Settings.model_config.get('env_prefix', '')}{field}".upper()


def _is_secret(field: str) -> bool:
    annotation = Settings.model_fields[field].annotation
    return annotation is SecretStr or SecretStr in get_args(annotation)


def deployed_settings(settings: Settings, options: DeployOptions) -> Settings:
    """`settings` as the workers run them in the cluster: the addresses of the deployment's own
    services, SCRAM over TLS to Kafka with the CA mounted from Strimzi's Secret, the TLS files where
    the Secrets are mounted, and 3 replicas per topic on 3 brokers unless the settings chose."""
    triton_port = host_port(settings.triton_url)[1]
    triton_tls, milvus_tls = settings.triton_tls(), settings.milvus_tls()
    update: dict[str, Any] = {
        "kafka_bootstrap": options.kafka_bootstrap,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": options.kafka_user,
        "kafka_ssl_cafile": Path(KAFKA_CA_DIR) / "ca.crt",
        "kafka_ssl_certfile": None,
        "kafka_ssl_keyfile": None,
        "triton_url": f"{'grpcs' if triton_tls else 'grpc'}://{options.triton}.{options.namespace}.svc:{triton_port}",
        "triton_tls_ca_file": Path(TRITON_TLS_DIR) / "ca.crt" if triton_tls else None,
        "triton_tls_cert_file": None,  # encoders.serving checks no client certificates
        "triton_tls_key_file": None,
        "milvus_uri": f"{'https' if milvus_tls else 'http'}://{options.milvus_service}.{options.namespace}.svc:{MILVUS_PORT}",
        "milvus_backend": "server",
        "milvus_tls_ca_file": Path(MILVUS_TLS_DIR) / "ca.crt" if milvus_tls else None,
        "milvus_tls_cert_file": Path(MILVUS_TLS_DIR) / "tls.crt" if milvus_tls and milvus_tls.cert_file else None,
        "milvus_tls_key_file": Path(MILVUS_TLS_DIR) / "tls.key" if milvus_tls and milvus_tls.cert_file else None,
        "state_dir": Path(STATE_DIR),
        "cache_dir": Path(STATE_DIR) / "cache",
    }
    if "topic_replication_factor" not in settings.model_fields_set:
        update["topic_replication_factor"] = replication(options.kafka_nodes)[0]
    if options.encoder_claim:  # a folder path of the rendering machine means nothing in the pods
        update["encoder"] = ENCODER_DIR
    return settings.model_copy(update=update)


def worker_env(settings: Settings, options: DeployOptions) -> dict[str, str]:
    """The workers' non-secret SAIL_* variables: what the deployment decides, plus every setting in
    effect that differs from its default (secrets and the local stack's settings left out)."""
    deployed = deployed_settings(settings, options)
    env: dict[str, str] = {}
    for field, info in Settings.model_fields.items():
        value = getattr(deployed, field)
        if _is_secret(field) or field in LOCAL_ONLY or value is None:
            continue
        if field in OWNED or value != info.default:
            env[env_name(field)] = str(value)
    env[env_name("state_dir")] = str(deployed.state_dir)
    env[env_name("cache_dir")] = str(deployed.cache_dir)
    env[WEB_BIND_ENV] = "0.0.0.0"
    return dict(sorted(env.items()))


# ---------------------------------------------------------------------------------------------- helpers


def _metadata(name: str, options: DeployOptions, labels: Mapping[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": options.namespace,
        "labels": {"app.kubernetes.io/part-of": PART_OF, **(labels or {})},
        **extra,
    }


def worker_labels() -> dict[str, str]:
    return {JOB_LABEL: WORKER_JOB, "app.kubernetes.io/component": "worker"}


def triton_labels() -> dict[str, str]:
    return {JOB_LABEL: "sail-triton", "app.kubernetes.io/component": "encoder"}


def _http_probe(path: str, period_s: int, failures: int) -> dict[str, Any]:
    """A probe on the container's port named `http`."""
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period_s,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _secret_files(name: str, mount_path: str, secret: str, keys: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume mount, volume): the `keys` of Secret `secret` as read-only files under `mount_path`."""
    return (
        {"name": name, "mountPath": mount_path, "readOnly": True},
        {"name": name, "secret": {"secretName": secret, "items": [{"key": k, "path": k} for k in keys]}},
    )


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _restricted() -> dict[str, Any]:
    """The container side of the `restricted` Pod Security Standard."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True}


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _spread(labels: Mapping[str, str]) -> list[dict[str, Any]]:
    selector = {"matchLabels": dict(labels)}
    return [
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": selector}
    ]


def _digest(data: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _max_message_bytes(settings: Settings) -> int:
    """The largest record any topic takes (the dead letters' envelope included): the brokers' limit."""
    return max(spec.max_message_bytes for spec in (*settings.topics().all(), *settings.changelog_topics()))


# ---------------------------------------------------------------------------------------------- Kafka (Strimzi)


def kafka_cluster(settings: Settings, options: DeployOptions) -> dict[str, Any]:
    """The Strimzi `Kafka`: KRaft with node pools, one internal TLS listener with SCRAM-SHA-512, and
    replication that survives one broker down (RF 3, min ISR 2 for every internal topic too)."""
    replicas = min(options.kafka_nodes, 3)
    config: dict[str, Any] = {
        "default.replication.factor": replicas,
        "min.insync.replicas": min(2, replicas),
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min(2, replicas),
        "message.max.bytes": _max_message_bytes(settings),
        # topics are KafkaTopics (or created by the workers with their specs), never by a typo
        "auto.create.topics.enable": False,
    }
    kafka: dict[str, Any] = {
        "listeners": [
            {"name": "tls", "port": KAFKA_TLS_PORT, "type": "internal", "tls": True, "authentication": {"type": "scram-sha-512"}}
        ],
        "config": config,
    }
    if options.kafka_acls:
        kafka["authorization"] = {"type": "simple"}
    return {
        "apiVersion": STRIMZI_API,
        "kind": "Kafka",
        "metadata": _metadata(
            options.cluster, options, annotations={"strimzi.io/kraft": "enabled", "strimzi.io/node-pools": "enabled"}
        ),
        "spec": {"kafka": kafka, "entityOperator": {"topicOperator": {}, "userOperator": {}}},
    }


def kafka_node_pool(options: DeployOptions) -> dict[str, Any]:
    """The cluster's nodes: each a controller and a broker, with one persistent volume that also holds
    the KRaft metadata log."""
    volume: dict[str, Any] = {
        "id": 0,
        "type": "persistent-claim",
        "size": options.kafka_storage,
        "deleteClaim": False,
        "kraftMetadata": "shared",
    }
    if options.kafka_storage_class:
        volume["class"] = options.kafka_storage_class
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaNodePool",
        "metadata": _metadata("dual-role", options, {"strimzi.io/cluster": options.cluster}),
        "spec": {
            "replicas": options.kafka_nodes,
            "roles": ["controller", "broker"],
            "storage": {"type": "jbod", "volumes": [volume]},
        },
    }


def kafka_user(settings: Settings, options: DeployOptions) -> dict[str, Any]:
    """The workers' `KafkaUser` (SCRAM-SHA-512). With ACLs: the topics named `<topic_prefix>*`, the
    topics Faust names after the app (`<app_id>*`: the table's changelog, the assignor's topic) and the
    consumer groups `<app_id>*` (the workers' and the re-embeds'); nothing else."""
    spec: dict[str, Any] = {"authentication": {"type": "scram-sha-512"}}
    if options.kafka_acls:
        topic_ops = ["Read", "Write", "Describe", "DescribeConfigs", "Create"]
        acls = [
            {"resource": _acl_resource("topic", settings.topic_prefix), "operations": topic_ops},
            {"resource": _acl_resource("topic", settings.app_id), "operations": topic_ops},
            {"resource": _acl_resource("group", settings.app_id), "operations": ["Read", "Describe"]},
        ]
        spec["authorization"] = {"type": "simple", "acls": acls}
    metadata = _metadata(options.kafka_user, options, {"strimzi.io/cluster": options.cluster})
    return {"apiVersion": STRIMZI_API, "kind": "KafkaUser", "metadata": metadata, "spec": spec}


def _acl_resource(kind: str, prefix: str) -> dict[str, Any]:
    if not prefix:  # no prefix: every topic of the cluster is the deployment's
        return {"type": kind, "name": "*", "patternType": "literal"}
    return {"type": kind, "name": prefix, "patternType": "prefix"}


# ---------------------------------------------------------------------------------------------- workers


def worker_config_map(settings: Settings, options: DeployOptions) -> dict[str, Any]:
    metadata = _metadata(f"{options.workers}-config", options, worker_labels())
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": worker_env(settings, options)}


def worker_stateful_set(settings: Settings, options: DeployOptions) -> dict[str, Any]:
    """The workers. A StatefulSet because its pods keep their names across restarts: each pod's name
    is its Kafka `group.instance.id` (static membership, KIP-345), so a restarted worker rejoins within
    the session timeout as the same member and gets its partitions back without a rebalance."""
    deployed = deployed_settings(settings, options)
    port = settings.worker_web_port
    env: list[dict[str, Any]] = [
        {"name": GROUP_INSTANCE_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        _secret_env(env_name("kafka_sasl_password"), options.kafka_user_secret, "password"),
    ]
    if options.milvus_token_secret:
        env.append(_secret_env(env_name("milvus_token"), options.milvus_token_secret, "token"))
    ca_mount, ca_volume = _secret_files("kafka-ca", KAFKA_CA_DIR, options.cluster_ca_secret, ["ca.crt"])
    mounts = [ca_mount, {"name": "state", "mountPath": STATE_DIR}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [
        ca_volume,
        {"name": "state", "emptyDir": {}},  # Faust's data folder; the table lives in memory and is rebuilt from its changelog
        {"name": "tmp", "emptyDir": {}},
    ]
    secrets = []
    if deployed.milvus_tls_ca_file is not None:
        keys = ["ca.crt", "tls.crt", "tls.key"] if deployed.milvus_tls_cert_file else ["ca.crt"]
        secrets.append(_secret_files("milvus-tls", MILVUS_TLS_DIR, options.milvus_tls_secret, keys))
    if deployed.triton_tls_ca_file is not None:
        secrets.append(_secret_files("triton-ca", TRITON_TLS_DIR, options.triton_tls_secret, ["ca.crt"]))
    for mount, volume in secrets:
        mounts.append(mount)
        volumes.append(volume)

    container = {
        "name": "worker",
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": ["sail-stream", "worker"],
        "args": ["--web-port", str(port), "--loglevel", "info"],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": f"{options.workers}-config"}}],
        "env": env,
        # /metrics answers while the event loop runs: a hung worker is restarted, one waiting for a down
        # dependency is not (its status says "failing" but the page still answers, and restarting helps nothing).
        "startupProbe": _http_probe("/metrics", 5, 60),  # up to 5 minutes to join the group and start the web server
        "livenessProbe": _http_probe("/metrics", 10, 6),
        "readinessProbe": _http_probe("/status.json", 10, 3),
        "resources": {
            "requests": {"cpu": options.worker_cpu, "memory": options.worker_memory},
            "limits": {"memory": options.worker_memory},
        },
        "securityContext": _restricted(),
        "volumeMounts": mounts,
    }
    labels = worker_labels()
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(options.workers, options, labels),
        "spec": {
            "serviceName": options.workers,
            # No `replicas`: KEDA's ScaledObject owns the count (from worker_replicas up), and a count here
            # would reset it on every `kubectl apply`, each reset a rebalance of the group.
            "podManagementPolicy": "Parallel",  # the workers are peers: no reason to start them one by one
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                # envFrom is read at start only: a changed ConfigMap rolls the workers through this annotation
                "metadata": {
                    "labels": {"app.kubernetes.io/part-of": PART_OF, **labels},
                    "annotations": {"sail-stream/config-sha256": _digest(worker_env(settings, options))},
                },
                "spec": {
                    "automountServiceAccountToken": False,  # the workers never call the Kubernetes API
                    "securityContext": _pod_security(),
                    # SIGTERM stops the retry loops at once and leaves the batch in hand uncommitted (README "Faults")
                    "terminationGracePeriodSeconds": 60,
                    "topologySpreadConstraints": _spread(labels),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def worker_service(settings: Settings, options: DeployOptions) -> dict[str, Any]:
    """The StatefulSet's headless Service: stable DNS names per pod, and the port the scrapes use."""
    port = settings.worker_web_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(options.workers, options, worker_labels()),
        "spec": {
            "clusterIP": "None",
            "selector": worker_labels(),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(name: str, labels: Mapping[str, str], options: DeployOptions) -> dict[str, Any]:
    """One pod at a time may be evicted (a node drain): every eviction of a worker moves its partitions."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(name, options, labels),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(labels)}},
    }


# ---------------------------------------------------------------------------------------------- autoscaling (KEDA)


def max_workers(settings: Settings, options: DeployOptions) -> int:
    """The most workers worth running: a worker beyond the partitions of a topic gets none of it."""
    return min(options.worker_max_replicas, settings.topic_partitions)


def trigger_authentication(options: DeployOptions) -> dict[str, Any]:
    """How KEDA's Kafka scaler logs in: the workers' user, its password and the cluster CA, read from
    the same ConfigMap and Secrets as the workers (configMapTargetRef needs KEDA 2.13 or newer)."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": _metadata(f"{options.workers}-kafka", options, worker_labels()),
        "spec": {
            "configMapTargetRef": [
                {"parameter": "username", "name": f"{options.workers}-config", "key": env_name("kafka_sasl_username")}
            ],
            "secretTargetRef": [
                {"parameter": "password", "name": options.kafka_user_secret, "key": "password"},
                {"parameter": "ca", "name": options.cluster_ca_secret, "key": "ca.crt"},
            ],
        },
    }


def scaled_object(settings: Settings, options: DeployOptions) -> dict[str, Any]:
    """KEDA scales the workers on the consumer group's lag over the uploads and the interactions
    (the larger of the two answers wins), between `worker_replicas` and the partitions. Every change of
    the count is a rebalance, so it scales down one worker at a time and only after 5 calm minutes."""
    topics = settings.topics()

    def trigger(name: str, topic: str, threshold: int) -> dict[str, Any]:
        metadata = {
            "bootstrapServers": options.kafka_bootstrap,
            "consumerGroup": settings.app_id,  # the Faust app id is the workers' consumer group
            "topic": topic,
            "lagThreshold": str(threshold),
            "offsetResetPolicy": "earliest",  # as the workers: a new group starts at the beginning of the topics
            "sasl": "scram_sha512",
            "tls": "enable",
        }
        return {"type": "kafka", "name": name, "metadata": metadata, "authenticationRef": {"name": f"{options.workers}-kafka"}}

    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(options.workers, options, worker_labels()),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": options.workers},
            "minReplicaCount": min(options.worker_replicas, max_workers(settings, options)),
            "maxReplicaCount": max_workers(settings, options),
            "pollingInterval": 15,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": 300,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                        },
                        "scaleUp": {
                            "stabilizationWindowSeconds": 30,
                            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
                        },
                    }
                }
            },
            "triggers": [
                trigger("uploads", topics.uploads.name, options.uploads_lag_threshold),
                trigger("interactions", topics.interactions.name, options.interactions_lag_threshold),
            ],
        },
    }


# ---------------------------------------------------------------------------------------------- Triton


def triton_deployment(settings: Settings, options: DeployOptions) -> dict[str, Any]:
    """Triton on GPUs, serving the encoder from the project's image.

    Model repository: none is mounted. deploy/triton/model_repository is for a stand-alone
    tritonserver whose Python backend must import sail-stream and its dependencies (torch,
    transformers) through SAIL_BACKEND_PYTHONPATH, i.e. needs this image's environment anyway; so the
    pod runs `python -m encoders.serving`, which starts the real tritonserver through PyTriton and binds
    the same infer function (`encoders.serving.encoder_infer_fn`), as the local stack and the tests do.
    The batcher and queue come from the settings instead of config.pbtxt. A preset's weights are in the
    image; a trained encoder folder comes from the PVC `encoder_claim`.
    """
    grpc_port = host_port(settings.triton_url)[1]
    tls = settings.triton_tls() is not None
    encoder = ENCODER_DIR if options.encoder_claim else settings.encoder
    args = [
        "--encoder",
        encoder,
        "--device",
        "cuda" if options.triton_gpus else "cpu",
        "--host",
        "0.0.0.0",
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(settings.triton_http_port),
        "--metrics-port",
        str(settings.triton_metrics_port),
        "--max-batch-size",
        str(settings.triton_max_batch_size),
        "--queue-delay-us",
        str(settings.triton_queue_delay_us),
        "--instances",
        str(settings.triton_instances),
        "--max-queue-size",
        str(settings.triton_max_queue_size),
    ]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": options.triton_shm}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if tls:  # gRPC over TLS only; HTTP (probes) and metrics stay inside the cluster in the clear
        args += ["--tls-cert", f"{TRITON_TLS_DIR}/tls.crt", "--tls-key", f"{TRITON_TLS_DIR}/tls.key"]
        mount, volume = _secret_files("tls", TRITON_TLS_DIR, options.triton_tls_secret, ["tls.crt", "tls.key"])
        mounts.append(mount)
        volumes.append(volume)
    if options.encoder_claim:
        mounts.append({"name": "encoder", "mountPath": ENCODER_DIR, "readOnly": True})
        volumes.append({"name": "encoder", "persistentVolumeClaim": {"claimName": options.encoder_claim, "readOnly": True}})
    limits: dict[str, Any] = {"memory": options.triton_memory}
    if options.triton_gpus:
        limits["nvidia.com/gpu"] = options.triton_gpus

    container = {
        "name": "triton",
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": ["python", "-m", "encoders.serving"],
        "args": args,
        "env": [{"name": "HOME", "value": "/tmp"}],  # torch and the tokenizers cache under $HOME
        "ports": [
            {"name": "grpc", "containerPort": grpc_port, "protocol": "TCP"},
            {"name": "http", "containerPort": settings.triton_http_port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": settings.triton_metrics_port, "protocol": "TCP"},
        ],
        "startupProbe": _http_probe("/v2/health/live", 10, 60),  # loading sail-large's weights can take minutes
        "livenessProbe": _http_probe("/v2/health/live", 10, 6),
        # The encoder model's own readiness, not only the server's (/v2/health/ready): PyTriton binds the
        # models after tritonserver is up, and a pod must get no traffic before the encoder is loaded.
        "readinessProbe": _http_probe(f"/v2/models/{SAIL_ENCODER.name}/ready", 5, 3),
        "resources": {"requests": {"cpu": options.triton_cpu, "memory": options.triton_memory}, "limits": limits},
        # PyTriton writes its workspace and the generated model store outside /tmp on some releases:
        # the root filesystem stays writable here (unverified read-only), the rest of `restricted` holds.
        "securityContext": {**_restricted(), "readOnlyRootFilesystem": False},
        "volumeMounts": mounts,
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": _pod_security(),
        "topologySpreadConstraints": _spread(triton_labels()),
        "containers": [container],
        "volumes": volumes,
    }
    if options.triton_gpus:  # GPU node pools are commonly tainted so that only GPU pods land there
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(options.triton, options, triton_labels()),
        "spec": {
            "replicas": options.triton_replicas,
            "selector": {"matchLabels": triton_labels()},
            # No spare GPU is assumed: a rollout stops one pod before it starts its successor. With one
            # replica that is a short outage the workers wait out (their batches retry; the lag is in Kafka).
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/part-of": PART_OF, **triton_labels()}}, "spec": pod},
        },
    }


def triton_service(settings: Settings, options: DeployOptions) -> dict[str, Any]:
    """Triton's ClusterIP Service (gRPC for the workers). gRPC keeps one connection per worker, so with
    several Triton pods each worker sticks to one of them: run at least as many workers as pods."""
    ports = [
        {
            "name": "grpc",
            "port": host_port(settings.triton_url)[1],
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
        },
        {"name": "http", "port": settings.triton_http_port, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": settings.triton_metrics_port, "targetPort": "metrics", "protocol": "TCP"},
    ]
    metadata = _metadata(options.triton, options, triton_labels())
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": {"selector": triton_labels(), "ports": ports}}


# ---------------------------------------------------------------------------------------------- Milvus (milvus-helm)


def milvus_values(settings: Settings, options: DeployOptions) -> dict[str, Any]:
    """Values for the milvus-helm chart in cluster mode: three etcd members, distributed MinIO, two of
    each stateless node, authentication on, and a ServiceMonitor. Only keys that the chart has had
    through its 4.x and 5.x releases; the message queue stays the chart's default for its release
    (Pulsar in 4.x, Woodpecker from 5.0 with Milvus 2.6).

    Raises:
        ValueError: the settings use Milvus Lite, which the workers cannot share in a cluster.
    """
    if settings.milvus_embedded:
        raise ValueError(
            "SAIL_MILVUS_URI names an embedded Milvus Lite file; a Kubernetes deployment uses the Milvus of the chart"
        )
    user_yaml = "common:\n  security:\n    authorizationEnabled: true\n" if options.milvus_token_secret else ""
    values: dict[str, Any] = {
        "cluster": {"enabled": True},
        "etcd": {"replicaCount": 3},
        "minio": {"mode": "distributed"},
        "proxy": {"replicas": 2},
        "queryNode": {"replicas": 2},
        "dataNode": {"replicas": 2},
        "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}},
    }
    if user_yaml:
        values["extraConfigFiles"] = {"user.yaml": user_yaml}
    return values


# ---------------------------------------------------------------------------------------------- monitoring


def dashboard_config_map(options: DeployOptions) -> dict[str, Any]:
    """deploy/monitoring/grafana-dashboard.json as it is, for Grafana's dashboard sidecar (label grafana_dashboard)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata("sail-stream-dashboard", options, {"grafana_dashboard": "1", **dict(options.monitoring_labels)}),
        "data": {"sail-stream.json": DASHBOARD_FILE.read_text()},
    }


def prometheus_rule(options: DeployOptions) -> dict[str, Any]:
    """deploy/monitoring/alerts.yml's groups, unchanged (promtool tests them in tests/deploy)."""
    groups = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _metadata("sail-stream", options, dict(options.monitoring_labels)),
        "spec": {"groups": groups},
    }


def pod_monitor(name: str, labels: Mapping[str, str], port: str, options: DeployOptions) -> dict[str, Any]:
    """Scrape `port` of the pods with `labels`; the job is the pods' app.kubernetes.io/name."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _metadata(name, options, dict(options.monitoring_labels)),
        "spec": {
            "jobLabel": JOB_LABEL,
            "selector": {"matchLabels": dict(labels)},
            "podMetricsEndpoints": [{"port": port, "path": "/metrics", "interval": "15s"}],
        },
    }


# ---------------------------------------------------------------------------------------------- the whole


def namespace(options: DeployOptions) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": options.namespace, "labels": {"app.kubernetes.io/part-of": PART_OF}},
    }


def render(settings: Settings, options: DeployOptions) -> dict[str, list[dict[str, Any]]]:
    """Every manifest of the deployment, by file name (multi-document YAML each); `MILVUS_VALUES_FILE`
    is the milvus-helm values, the rest are resources.

    Raises:
        ValueError: the settings and options do not make a deployment (Milvus Lite, more minimum
            workers than partitions, an encoder folder without a volume, topic names that collide as
            Kubernetes names).
    """
    if options.worker_replicas > settings.topic_partitions:
        raise ValueError(
            f"{options.worker_replicas} workers for {settings.topic_partitions} partitions: the extra workers would idle"
        )
    if settings.encoder not in PRESETS and options.encoder_claim is None:  # a folder on this machine, or the benchmarks' stand-in
        raise ValueError(
            f"SAIL_ENCODER={settings.encoder!r} is no preset ({', '.join(PRESETS)}): put the saved encoder folder on a volume "
            "and name its PersistentVolumeClaim in DeployOptions.encoder_claim"
        )
    deployed = deployed_settings(settings, options)
    return {
        "namespace.yaml": [namespace(options)],
        "kafka.yaml": [kafka_cluster(deployed, options), kafka_node_pool(options), kafka_user(deployed, options)],
        "topics.yaml": kafka_topics(deployed, options.cluster, options.namespace),
        "workers.yaml": [
            worker_config_map(settings, options),
            worker_service(settings, options),
            worker_stateful_set(settings, options),
            pod_disruption_budget(options.workers, worker_labels(), options),
        ],
        "autoscaling.yaml": [trigger_authentication(options), scaled_object(deployed, options)],
        "triton.yaml": [
            triton_deployment(settings, options),
            triton_service(settings, options),
            pod_disruption_budget(options.triton, triton_labels(), options),
        ],
        "monitoring.yaml": [
            prometheus_rule(options),
            pod_monitor(options.workers, worker_labels(), "http", options),
            pod_monitor(options.triton, triton_labels(), "metrics", options),
            dashboard_config_map(options),
        ],
        MILVUS_VALUES_FILE: [milvus_values(settings, options)],
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the dashboard, PromQL) as literal blocks, so the files read like the sources;
    no anchors and aliases for values used twice."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def to_yaml(documents: list[dict[str, Any]]) -> str:
    """Documents as multi-document YAML, keys in the order they were built."""
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, width=200)


def write(files: Mapping[str, list[dict[str, Any]]], folder: Path) -> list[Path]:
    """Write `render`'s files into `folder` and a kustomization.yaml listing the resource files, so that
    `kubectl apply -k folder` applies them (the milvus-helm values are for `helm install -f`)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "# Generated by deploy/k8s/manifests.py from the sail-stream settings in effect; render again rather than edit.\n"
    written = []
    for name, documents in files.items():
        path = folder / name
        path.write_text(header + to_yaml(documents))
        written.append(path)
    resources = [name for name in files if name != MILVUS_VALUES_FILE]
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources}
    path = folder / KUSTOMIZATION
    path.write_text(header + to_yaml([kustomization]))
    return [*written, path]
