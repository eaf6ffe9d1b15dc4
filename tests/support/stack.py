"""Settings for a private local stack: free loopback ports, its own state folder, unique names.
The tests (`stack_settings`) and the benchmarks (`local_settings`) start their stacks from here."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from deploy.local.stack import free_kafka_ports, free_ports
from topology.settings import Settings


def local_settings(state_dir: Path, prefix: str, **overrides: object) -> Settings:
    """Free ports for every service, `state_dir` for their data, and `prefix` for the topics (`a.`),
    collections (`a_`) and consumer group (`a`); `overrides` win."""
    milvus, grpc, http, metrics = free_ports(4)
    bootstrap, controller = free_kafka_ports(int(overrides.get("kafka_brokers", 1)))  # type: ignore[call-overload]
    values: dict[str, object] = {
        "kafka_bootstrap": bootstrap,
        "kafka_controller_port": controller,
        "milvus_uri": f"http://127.0.0.1:{milvus}",
        "triton_url": f"grpc://127.0.0.1:{grpc}",
        "triton_http_port": http,
        "triton_metrics_port": metrics,
        "state_dir": state_dir,
        "topic_prefix": prefix,
        "milvus_collection_prefix": prefix.replace(".", "_"),
        "app_id": prefix.rstrip("."),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def stack_settings(state_dir: Path, **overrides: object) -> Settings:
    """The integration tests' stack: small and quick to react."""
    values: dict[str, object] = {
        "topic_partitions": 3,
        "embedding_dim": 384,  # the encoder's width
        "item_wait_s": 6.0,  # how long an interaction waits for its item before the dead-letter topic
        "item_hold_poll_ms": 200.0,
        "start_timeout_s": 240.0,
        "encoder": "sail-tiny-omni",  # gates open: the whole omni-modal path crosses the wire
    }
    values.update(overrides)
    return local_settings(state_dir, f"it{uuid.uuid4().hex[:8]}.", **values)


# An integration test run twice: on the session's stack (Milvus Lite) and with a Milvus standalone server in
# place of Lite (tests/integration/conftest.py's `server_settings`), as `settings`.
on_both_backends = pytest.mark.parametrize(
    "settings", ["lite", pytest.param("server", marks=pytest.mark.milvus_server)], indirect=True
)
