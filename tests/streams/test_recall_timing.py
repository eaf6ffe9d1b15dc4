"""The recall API's Server-Timing: Milvus's time per operation, collected from the sink's calls (pure)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streams.lifecycle.registry import Versions
from streams.recall.api import server_timing
from streams.recall.client import parse_server_timing
from streams.sinks.milvus import MilvusSink, MilvusUnavailable, timed_calls
from topology.settings import Settings


def test_the_header_sums_each_operation_and_the_client_reads_it_back() -> None:
    header = server_timing([("get", 0.003), ("search", 0.012), ("get", 0.001)], 0.02)
    assert header == "milvus-get;dur=4.0, milvus-search;dur=12.0, total;dur=20.0"
    assert parse_server_timing(header) == {"milvus-get": 4.0, "milvus-search": 12.0, "total": 20.0}
    assert parse_server_timing("") == {}
    assert parse_server_timing('cache;desc="hit", db;dur=2.5') == {"db": 2.5}


async def test_the_sinks_calls_are_timed_inside_the_context_only() -> None:
    sink = MilvusSink("http://127.0.0.1:1", None, "lite")  # never started: `_call` only awaits what it is given
    assert await sink._call("get from items", asyncio.sleep(0.01, result=1)) == 1  # outside: nothing collected
    with timed_calls() as calls:
        await sink._call("search items", asyncio.sleep(0.02, result=None))

        async def fails() -> None:
            raise TimeoutError

        with pytest.raises(MilvusUnavailable):
            await sink._call("get from items", fails())
    assert [operation for operation, _ in calls] == ["search", "get"]  # a failed call is timed too
    assert calls[0][1] >= 0.02


class RegistrySink(MilvusSink):
    """A sink whose registry read goes through the real `_call` without Milvus."""

    reads = 0

    async def get(self, collection: str, keys: list[str], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        self.reads += 1
        return await self._call(f"get from {collection}", asyncio.sleep(0, result=[]))


async def test_the_registrys_background_re_read_is_not_counted_in_a_request() -> None:
    spec, default = Settings(milvus_collection_prefix="p_", state_dir=Path("/tmp")).registry()
    now = [0.0]
    sink = RegistrySink("http://127.0.0.1:1", None, "lite")
    versions = Versions(sink, spec, default, clock=lambda: now[0])
    await versions.latest()  # the first read, before any request
    now[0] = 5.0  # due again
    with timed_calls() as calls:
        await versions.latest()  # starts the re-read beside the request
        assert versions._refresh is not None
        await versions._refresh
    assert sink.reads == 2 and calls == []  # the re-read ran, but as no request's Milvus time
