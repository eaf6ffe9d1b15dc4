"""How workers and recall read the model-version registry: cached, kept through an outage, the default without one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from streams.lifecycle.registry import Versions
from streams.sinks.milvus import MilvusUnavailable
from topology.settings import Settings
from topology.versions import Registry, Version, registry_row


class FakeSink:
    """The registry collection's `get`: a row, nothing, or an error."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.error: Exception | None = None
        self.reads = 0

    async def get(self, collection: str, ids: list[str], fields: list[str]) -> list[dict[str, Any]]:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.rows


def test_readers_see_a_swap_after_max_age_keep_the_last_registry_through_an_outage_and_run_the_default_without_one() -> None:
    spec, default = Settings(milvus_collection_prefix="p_", state_dir=Path("/tmp")).registry()
    sink, now = FakeSink(), [0.0]
    versions = Versions(sink, spec, default, max_age_s=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    sink.error = MilvusUnavailable("get from p_registry failed: collection not found[collection=p_registry]")
    assert (
        asyncio.run(versions.current()) == default and default.live.items == "p_items"
    )  # no registry collection: the settings' collections

    swapped = Registry(Version("m-1", "p_items", "p_users", 384)).swapped_to(
        Version("m-2", "p_items__m_2", "p_users__m_2", 256), 0, 1000
    )
    sink.error, sink.rows = None, [registry_row(swapped)]
    now[0] = 0.5
    assert asyncio.run(versions.current()) == default  # cached: not read again within max_age_s
    now[0] = 1.0
    assert asyncio.run(versions.current()) == swapped and versions.known.live.model_version == "m-2"
    reads = sink.reads
    now[0] = 2.5
    sink.error = MilvusUnavailable("search failed: connection refused")
    assert asyncio.run(versions.current()) == swapped  # an outage does not switch anybody back to the default
    now[0] = 2.9
    assert (
        asyncio.run(versions.current()) == swapped and sink.reads == reads + 1
    )  # the failed read counts as a read: no retry storm
