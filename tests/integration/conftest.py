"""The real local stack for integration tests: Kafka (KRaft), Milvus Lite and Triton on free
loopback ports, with a temporary state folder, started once per session and stopped at the end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local.process import group_members
from deploy.local.stack import SERVICES, Stack, free_ports
from topology.settings import Settings


def stack_settings(state_dir: Path, **overrides: object) -> Settings:
    """Settings for a private stack: free ports, its own state folder, unique names."""
    kafka, controller, milvus, grpc, http, metrics = free_ports(6)
    run = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "kafka_bootstrap": f"127.0.0.1:{kafka}",
        "kafka_controller_port": controller,
        "milvus_uri": f"http://127.0.0.1:{milvus}",
        "triton_url": f"grpc://127.0.0.1:{grpc}",
        "triton_http_port": http,
        "triton_metrics_port": metrics,
        "state_dir": state_dir,
        "topic_prefix": f"it{run}.",
        "topic_partitions": 3,
        "milvus_collection_prefix": f"it{run}_",
        "embedding_dim": 384,  # the encoder's width
        "app_id": f"it{run}",
        "item_wait_s": 6.0,  # how long an interaction waits for its item before the dead-letter topic
        "item_retry_backoff_ms": 200.0,
        "start_timeout_s": 240.0,
        "encoder": "sail-tiny-omni",  # gates open: the whole omni-modal path crosses the wire
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The session's running stack; its processes must all be gone after `down`."""
    lines: list[str] = []
    running = Stack(stack_settings(tmp_path_factory.mktemp("stack")), progress=lines.append)
    try:
        running.up()
    except Exception:
        running.down()
        raise
    records = [running._procs[name].record() for name in SERVICES]
    yield running
    running.down()
    leftovers = {r.command[0]: group_members(r.pgid) for r in records if r is not None and group_members(r.pgid)}
    assert not leftovers, f"processes left behind after down: {leftovers}"


@pytest.fixture(scope="session")
def settings(stack: Stack) -> Settings:
    return stack.settings
