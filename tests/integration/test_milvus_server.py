"""The local server option: Milvus standalone from the `milvus` PyPI package, with HNSW."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from deploy.local.process import group_members, listening_addresses
from deploy.local.stack import SERVER_TIME_TICK_MS, Stack
from streams.sinks.milvus import MilvusSink, MilvusUnavailable
from tests.support.stack import stack_settings
from topology.collections import VECTOR_FIELD, item_row
from topology.settings import host_port

pytestmark = [pytest.mark.integration, pytest.mark.milvus_server]


def _listening_inside(pgid: int) -> list[str]:
    """Listening addresses in the network namespace of the group's leader (the forwarder, which moved into
    the server's namespace before starting it), by `ss`."""
    if not (shutil.which("nsenter") and shutil.which("ss")):
        pytest.skip("nsenter or ss missing: cannot look inside the namespace")
    out = subprocess.run(["nsenter", "-t", str(pgid), "-n", "ss", "-ltnH"], capture_output=True, text=True, check=True)
    return [line.split()[3] for line in out.stdout.splitlines() if line.strip()]


async def test_standalone_server_serves_collections_with_hnsw(tmp_path: Path) -> None:
    pytest.importorskip("milvus", reason="the milvus-server extra is not installed")
    settings = stack_settings(tmp_path / "state", milvus_backend="server", start_timeout_s=300.0)
    stack = Stack(settings)
    try:
        (status,) = stack.up(["milvus"])
        assert status.state == "running" and status.detail.startswith("server")
        record = stack._procs["milvus"].record()
        assert record is not None
        # Contained: from this host's network namespace the only listening socket is the forwarded proxy port
        # on loopback; inside its own namespace the server binds every interface (its internal gRPC and
        # metrics ports), which is why it runs there.
        _, port = host_port(settings.milvus_uri)
        assert listening_addresses(record.pgid) == {("127.0.0.1", port)}
        inside = _listening_inside(record.pgid)
        assert any(address.startswith(("0.0.0.0:", "*:", "[::]:")) for address in inside), inside
        # the proxy's time tick, which every Strong read waits for, is the stack's, not the server's 200 ms default
        config = (settings.state_dir / "milvus" / "data" / "configs" / "milvus.yaml").read_text()
        proxy = config.split("\nproxy:\n", 1)[1].split("\n\n", 1)[0]
        assert f"timeTickInterval: {SERVER_TIME_TICK_MS} " in proxy and SERVER_TIME_TICK_MS < 200
        items, _ = settings.collections()
        sink = MilvusSink(settings.milvus_uri, None, "server")
        await sink.start()
        try:
            rng = np.random.default_rng(1)
            vectors = rng.standard_normal((200, items.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            rows = [item_row(f"s-{i}", "c", i, i, "v", v) for i, v in enumerate(vectors)]
            assert await sink.upsert(items.name, rows) == 200
            # Strong consistency: read-your-writes right after the upsert (Bounded may lag ~5 s here).
            hits = await sink.search(items.name, vectors[[7]], limit=1, vector_field=VECTOR_FIELD, consistency="Strong")
            assert hits[0][0].id == "s-7"
        finally:
            await sink.close()
        # Stopped (SIGTERM, then SIGKILL after the server's short grace) and started again: nothing acknowledged
        # is lost, and the stop left no process behind.
        assert stack.down(["milvus"]) == ["milvus"] and group_members(record.pgid) == []
        stack.up(["milvus"])
        sink = MilvusSink(settings.milvus_uri, None, "server")
        await sink.start()
        try:
            # the collection is loaded again from its write-ahead log first: reads time out meanwhile
            deadline, back = time.monotonic() + 120, []
            while len(back) < 200 and time.monotonic() < deadline:
                try:
                    back = await sink.get(items.name, [f"s-{i}" for i in range(200)], fields=["item_id"])
                except MilvusUnavailable:
                    await asyncio.sleep(2)
            assert len(back) == 200
        finally:
            await sink.close()
        record = stack._procs["milvus"].record()
    finally:
        stack.down()
    assert record is not None and group_members(record.pgid) == []
