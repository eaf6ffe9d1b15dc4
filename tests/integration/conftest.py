"""The real local stack for integration tests: Kafka (KRaft), Milvus Lite and Triton on free
loopback ports, with a temporary state folder, started once per session and stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploy.local.process import group_members
from deploy.local.stack import SERVICES, Stack
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
def settings(stack: Stack) -> Settings:
    return stack.settings
