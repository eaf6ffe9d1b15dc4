"""Strimzi `KafkaTopic` resources generated from `topology/` (issue 19, first part): the topics a
deployment needs, with the partitions, replication and configs `topology.topics` declares, so a
Kubernetes cluster run by the Strimzi topic operator holds exactly what the workers expect.
`sail-stream topology export --format strimzi` prints them as YAML.
"""

from __future__ import annotations

import re
from typing import Any, Final

from topology.settings import Settings
from topology.topics import TopicSpec

STRIMZI_API: Final = "kafka.strimzi.io/v1beta2"
_NAME_CHARS: Final = 253  # a Kubernetes object name: an RFC 1123 subdomain


def resource_name(topic: str) -> str:
    """A Kubernetes object name for `topic`: lower case, [a-z0-9.-], alphanumeric at both ends (the
    real topic name goes in `spec.topicName`, so nothing is lost)."""
    name = re.sub(r"[^a-z0-9.-]+", "-", topic.lower()).strip(".-")
    if not name:
        raise ValueError(f"topic {topic!r} has no character a Kubernetes name can keep")
    return name[:_NAME_CHARS].rstrip(".-")


def kafka_topic(spec: TopicSpec, cluster: str, namespace: str | None = None) -> dict[str, Any]:
    """One `KafkaTopic` for `spec`, with the configs the local stack gives it (`TopicSpec.configs`: with 3
    replicas or more, `min.insync.replicas` 2, so an `acks=all` write survives one broker down)."""
    config: dict[str, Any] = dict(spec.configs())
    metadata: dict[str, Any] = {
        "name": resource_name(spec.name),
        "labels": {"strimzi.io/cluster": cluster, "app.kubernetes.io/part-of": "sail-stream"},
    }
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaTopic",
        "metadata": metadata,
        "spec": {"topicName": spec.name, "partitions": spec.partitions, "replicas": spec.replication_factor, "config": config},
    }


def kafka_topics(settings: Settings, cluster: str, namespace: str | None = None) -> list[dict[str, Any]]:
    """Every topic of a deployment with `settings` as `KafkaTopic`s of the Strimzi cluster `cluster`.

    Raises:
        ValueError: two topics would get the same Kubernetes name.
    """
    resources = [kafka_topic(spec, cluster, namespace) for spec in (*settings.topics().all(), *settings.changelog_topics())]
    names = [r["metadata"]["name"] for r in resources]
    if len(set(names)) != len(names):
        raise ValueError(f"topic names collide once made Kubernetes names: {sorted(n for n in names if names.count(n) > 1)}")
    return resources
