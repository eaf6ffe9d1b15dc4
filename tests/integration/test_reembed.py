"""The re-embed backfill (issue 17, first part) on the real stack: every item of the item-content topic
re-encoded through Triton into the shadow collection of the target's version, and a run stopped
halfway resumed by the next one without encoding again what was committed."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from encoders.client import EncoderClient
from streams.reembed import Backfill, reembed
from streams.sinks.kafka import ensure_topics
from streams.worker.content import inline_request
from tests.support.streaming import clip_upload, milvus_rows, send
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


def test_a_backfill_stopped_halfway_resumes_and_every_item_gets_the_new_vector(settings: Settings) -> None:
    tag = f"re{uuid.uuid4().hex[:6]}"
    s = settings.namespaced(tag)
    ensure_topics(s.kafka_bootstrap, s.kafka_security(), s.topics().all())
    uploads = [clip_upload(tag, n, cover=n % 3 == 0) for n in range(40)]
    ids = [u.item_id for u in uploads]
    # item-content as the content agent leaves it (tests/integration/test_streaming.py checks that it does)
    send(s, [(s.topics().item_content.name, u.item_id.encode(), encode_upload(u)) for u in uploads])

    first, _ = _run(s, stop_after=16)  # a run that ends after two batches of 8 (a crash after its second commit)
    assert (first.total, first.already_done, first.processed) == (40, 0, 16)
    second, lines = _run(s)
    assert second.collection == first.collection and second.collection.startswith(f"{s.milvus_collection_prefix}items__")
    assert (second.total, second.already_done, second.processed, second.encoded) == (40, 16, 24, 24)  # nothing committed encoded again
    assert not second.refused and any("16 done by an earlier run" in line for line in lines)
    third, _ = _run(s)
    assert (third.already_done, third.processed) == (40, 0)  # complete: a rerun has nothing to do

    async def direct() -> list[np.ndarray]:
        client = EncoderClient.for_settings(s)
        await client.start()
        try:
            return [r.vector for r in await client.encode([inline_request(u) for u in uploads])]  # type: ignore[misc]
        finally:
            await client.close()

    shadow = milvus_rows(s, second.collection, ids, [VECTOR_FIELD, "model_version"])
    assert sorted(shadow) == sorted(ids)
    for upload, expected in zip(uploads, asyncio.run(direct())):  # the stack's encoder is the target here
        row = shadow[upload.item_id]
        np.testing.assert_allclose(np.asarray(row[VECTOR_FIELD], dtype=np.float32), expected, atol=1e-5)
        assert row["model_version"] == second.model_version
