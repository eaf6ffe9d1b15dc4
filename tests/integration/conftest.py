"""The real local stack for integration tests: Kafka (KRaft), Milvus Lite and Triton on free
loopback ports, with a temporary state folder, started once per session and stopped at the end.

A test marked `@on_both_backends` runs twice: on that stack (Lite) and on the same Kafka and Triton with
a Milvus standalone server of its own (`server_settings`: topics, collections and consumer group of
their own; started once, on the first test that asks for it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploy.local.process import group_members
from deploy.local.stack import SERVICES, Stack, free_ports
from streams.sinks.kafka import ensure_topics
from tests.support.stack import stack_settings
from topology.settings import Settings


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
def server_settings(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The session stack's Kafka and Triton with a Milvus standalone server (HNSW) in place of Lite."""
    pytest.importorskip("milvus", reason="the milvus-server extra is not installed")
    (port,) = free_ports(1)
    s = stack.settings.namespaced(f"srv{stack.settings.app_id[-6:]}").model_copy(
        update={
            "milvus_backend": "server",
            "milvus_uri": f"http://127.0.0.1:{port}",
            "state_dir": tmp_path_factory.mktemp("server"),
            "start_timeout_s": 300.0,
        }
    )
    ensure_topics(s.kafka_bootstrap, s.kafka_security(), s.topics().all())
    server = Stack(s)
    try:
        server.up(["milvus"])
    except Exception:
        server.down(["milvus"])
        raise
    yield s
    server.down(["milvus"])


@pytest.fixture(scope="session")
def settings(request: pytest.FixtureRequest, stack: Stack) -> Settings:
    """The session stack's settings; `@on_both_backends` tests get `server_settings` as their second run."""
    if getattr(request, "param", "lite") == "server":
        server: Settings = request.getfixturevalue("server_settings")
        return server
    return stack.settings
