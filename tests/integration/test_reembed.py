"""The re-embed backfill (issue 17) on the real stack: every item of the item-content topic re-encoded
through Triton into the shadow items collection of the target's version, then every user's vectors
recomputed from the table's changelog into the shadow users collection; a run stopped halfway is
resumed by the next one without encoding again what was committed."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from encoders.client import EncoderClient
from streams.interest.maths import InterestParams, fold_interactions, interest_vectors
from streams.reembed import Backfill, Counts, reembed
from streams.sinks.kafka import ensure_topics
from streams.sinks.milvus import ensure_collections
from streams.worker.content import inline_request
from tests.support.streaming import clip_upload, milvus_rows, send
from topology.codec import encode_interest_state, encode_upload
from topology.collections import VECTOR_FIELD, user_key
from topology.messages import Action, Interaction
from topology.settings import Settings
from topology.topics import TopicSpec, table_changelog

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


def test_a_backfill_stopped_halfway_resumes_and_every_item_and_user_gets_the_new_vectors(settings: Settings) -> None:
    tag = f"re{uuid.uuid4().hex[:6]}"
    s = settings.namespaced(tag)
    ensure_topics(s.kafka_bootstrap, s.kafka_security(), [*s.topics().all(), TopicSpec(table_changelog(tag), s.topic_partitions, "user_id", -1, True, s.max_message_bytes)])
    ensure_collections(s.milvus_uri, s.milvus_token_value, s.collections(), s.milvus_backend)
    uploads = [clip_upload(tag, n, cover=n % 3 == 0) for n in range(40)]
    ids = [u.item_id for u in uploads]
    # item-content and the table's changelog as the workers leave them (test_streaming checks that they do)
    send(s, [(s.topics().item_content.name, u.item_id.encode(), encode_upload(u)) for u in uploads])
    params = InterestParams.for_settings(s)
    rng = np.random.default_rng(11)
    log = [Interaction(f"{tag}-e{u}-{k}", f"{tag}-user-{u}", ids[int(rng.integers(len(ids)))], [Action.LIKE, Action.VIEW, Action.SKIP][k % 3],
                       1_700_000_000_000 + 1000 * k + u, dwell_ms=6000) for u in range(6) for k in range(9)]  # fmt: skip
    states = {user: fold_interactions([e for e in log if e.user_id == user], params) for user in sorted({e.user_id for e in log})}
    older = {user: fold_interactions([e for e in log if e.user_id == user][:4], params) for user in states}  # superseded on the changelog
    changelog = [(table_changelog(tag), user.encode(), encode_interest_state(state)) for user, state in (*older.items(), *states.items())]
    send(s, changelog)

    first, _ = _run(s, stop_after=16)  # a run that ends after two batches of 8 (a crash after its second commit)
    assert (first.items.total, first.items.already_done, first.items.processed, first.users) == (40, 0, 16, None)
    second, lines = _run(s)
    assert second.items_collection == first.items_collection and second.items_collection.startswith(f"{s.milvus_collection_prefix}items__")
    assert (second.items.total, second.items.already_done, second.items.processed, second.encoded) == (40, 16, 24, 24)  # nothing committed encoded again
    assert not second.refused and any("16 done by an earlier run" in line for line in lines)
    assert second.users is not None and (second.users.total, second.users.processed) == (12, 12)
    assert 6 <= second.users_written <= 12  # each batch's newest state per user (the vectors below are the check)
    assert first.counts is None  # counted only once both phases are complete
    assert second.counts == Counts(live_items=0, new_items=40, live_users=0, new_users=6) and not second.counts.equal  # no worker wrote the live ones here
    third, _ = _run(s)
    assert (third.items.already_done, third.items.processed, third.users.already_done, third.users.processed) == (40, 0, 12, 0)  # type: ignore[union-attr]

    async def direct() -> list[np.ndarray]:
        client = EncoderClient.for_settings(s)
        await client.start()
        try:
            return [r.vector for r in await client.encode([inline_request(u) for u in uploads])]  # type: ignore[misc]
        finally:
            await client.close()

    shadow_items = milvus_rows(s, second.items_collection, ids, [VECTOR_FIELD, "model_version"])
    assert sorted(shadow_items) == sorted(ids)
    for upload, expected in zip(uploads, asyncio.run(direct())):  # the stack's encoder is the target here
        row = shadow_items[upload.item_id]
        np.testing.assert_allclose(np.asarray(row[VECTOR_FIELD], dtype=np.float32), expected, atol=1e-5)
        assert row["model_version"] == second.model_version
    vectors = {i: np.asarray(r[VECTOR_FIELD], dtype=np.float32) for i, r in shadow_items.items()}
    shadow_users = milvus_rows(s, second.users_collection, [user_key(u, 0) for u in states], [VECTOR_FIELD, "model_version", "event_count", "user_id"])
    assert len(shadow_users) == len(states)
    for row in shadow_users.values():  # the newest state of each user, by the worker's maths, over the new item vectors
        expected = interest_vectors(states[row["user_id"]], vectors, params)
        assert expected is not None
        np.testing.assert_allclose(np.asarray(row[VECTOR_FIELD], dtype=np.float32), expected[0], atol=1e-5)
        assert (row["model_version"], row["event_count"]) == (second.model_version, len([e for e in log if e.user_id == row["user_id"]]))
