"""The re-embed backfill (issue 17, first part) on the real stack: every item of the item-content topic
re-encoded through Triton into the shadow collection of the target's version, and a run stopped
halfway resumed by the next one without encoding again what was committed."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from encoders.client import EncoderClient
from streams.reembed import Backfill, reembed
from streams.sinks.kafka import ensure_topics
from streams.sinks.milvus import ensure_collections
from tests.support.streaming import clip_upload, milvus_rows, send, stored_items, wait_until
from topology.codec import encode_upload
from topology.collections import VECTOR_FIELD
from topology.settings import Settings

pytestmark = pytest.mark.integration


def _run(s: Settings, stop_after: int | None = None) -> tuple[Backfill, list[str]]:
    lines: list[str] = []

    async def go() -> Backfill:
        target = EncoderClient.for_settings(s)
        await target.start()
        try:
            return await reembed(s, target, max_rate=0, batch=8, progress=lines.append, stop_after=stop_after)
        finally:
            await target.close()

    return asyncio.run(go()), lines


def test_a_backfill_stopped_halfway_resumes_and_every_item_gets_the_new_vector(stack: Stack, settings: Settings) -> None:
    tag = f"re{uuid.uuid4().hex[:6]}"
    s = settings.namespaced(tag)
    ensure_topics(s.kafka_bootstrap, s.kafka_security(), s.topics().all())
    ensure_collections(s.milvus_uri, s.milvus_token_value, s.collections(), s.milvus_backend)
    uploads = [clip_upload(tag, n, cover=n % 3 == 0) for n in range(40)]
    ids = [u.item_id for u in uploads]
    (port,) = free_ports(1)
    worker = start_worker(s, port, stack.state_dir / "workers")
    try:
        wait_for_group(s, [worker])
        send(s, [(s.topics().uploads.name, u.item_id.encode(), encode_upload(u)) for u in uploads])
        wait_until(lambda: len(stored_items(s, ids)) == len(ids), what="the items in Milvus")
    finally:
        worker.stop()
    live = stored_items(s, ids)

    first, _ = _run(s, stop_after=16)  # a run that ends after two batches of 8 (a crash after its second commit)
    assert (first.total, first.already_done, first.processed) == (40, 0, 16)
    second, lines = _run(s)
    assert second.collection == first.collection and second.collection.startswith(f"{s.milvus_collection_prefix}items__")
    assert (second.total, second.already_done, second.processed, second.encoded) == (40, 16, 24, 24)  # nothing committed encoded again
    assert not second.refused and any("16 done by an earlier run" in line for line in lines)
    third, _ = _run(s)
    assert (third.already_done, third.processed) == (40, 0)  # complete: a rerun has nothing to do

    shadow = milvus_rows(s, second.collection, ids, [VECTOR_FIELD, "model_version"])
    assert sorted(shadow) == sorted(ids)
    for item_id, row in shadow.items():  # the same model here, so the same vectors; the row names the version
        np.testing.assert_allclose(np.asarray(row[VECTOR_FIELD], dtype=np.float32), live[item_id], atol=1e-5)
        assert row["model_version"] == second.model_version
