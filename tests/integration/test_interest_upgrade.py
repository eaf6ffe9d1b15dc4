"""A worker upgraded in place over a changelog written by the previous state format (issue 14): it
restores the version-1 states, keeps every user's history, and recognises the old events on replay;
and over a cluster made by an older release: it creates the item-content topic that release lacked."""

from __future__ import annotations

import uuid

import msgpack
import numpy as np
import pytest

from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from streams.interest.maths import InterestParams, fold_interactions, interest_vectors
from streams.sinks.kafka import consumer, describe_topics, ensure_topics, producer
from streams.sinks.milvus import ensure_collections
from tests.support.streaming import clip_upload, drained, send, stored_items, user_vectors, wait_until
from topology.codec import encode_interaction, encode_upload
from topology.messages import Action, Interaction, InterestState
from topology.settings import Settings
from topology.topics import TopicSpec, table_changelog

pytestmark = pytest.mark.integration


def _version_1(state: InterestState, ids: list[str]) -> bytes:
    """A user's state exactly as workers before issue 14 wrote it (windows plus remembered event ids)."""

    def rows(signals: tuple) -> list[list[object]]:  # type: ignore[type-arg]
        return [[s.event_id, s.item_id, s.timestamp_ms, s.weight] for s in signals]

    return msgpack.packb(
        {
            "v": 1,
            "pos": rows(state.positives),
            "neg": rows(state.negatives),
            "ids": ids,
            "count": state.event_count,
            "updated": state.updated_at_ms,
        },
        use_bin_type=True,
    )


def test_a_worker_upgraded_over_a_version_1_changelog_keeps_every_users_vector(stack: Stack, settings: Settings) -> None:
    tag = f"up{uuid.uuid4().hex[:6]}"
    s = settings.namespaced(tag)
    older_release = [t for t in s.topics().all() if t != s.topics().item_content]  # item-content came later
    ensure_topics(s.kafka_bootstrap, s.kafka_security(), older_release)
    ensure_collections(s.milvus_uri, s.milvus_token_value, s.collections(), s.milvus_backend)
    params = InterestParams.for_settings(s)
    uploads = [clip_upload(tag, n) for n in range(8)]
    items = [u.item_id for u in uploads]
    rng = np.random.default_rng(3)
    actions = [Action.LIKE, Action.VIEW, Action.SHARE, Action.SKIP]

    def events(prefix: str, users: int, per_user: int, start_ms: int) -> list[Interaction]:
        return [
            Interaction(
                f"{tag}-{prefix}-{u}-{k}",
                f"{tag}-user-{u}",
                items[int(rng.integers(len(items)))],
                actions[int(rng.integers(len(actions)))],
                start_ms + k * 1000 + u,
                dwell_ms=8000,
            )
            for u in range(users)
            for k in range(per_user)
        ]

    old = events("old", users=4, per_user=14, start_ms=1_700_000_000_000)  # more than a window each: the v1 floor matters
    new = events("new", users=4, per_user=3, start_ms=1_700_000_100_000)
    changelog = table_changelog(tag)  # as the old worker's Faust created it: compacted, one partition per interactions partition
    ensure_topics(
        s.kafka_bootstrap,
        s.kafka_security(),
        [TopicSpec(changelog, s.topic_partitions, "user_id", -1, True, s.max_message_bytes)],
    )
    p = producer(s.kafka_bootstrap, s.kafka_security(), s.max_message_bytes)  # the changelog as the old worker left it
    for user in sorted({e.user_id for e in old}):
        mine = [e for e in old if e.user_id == user]
        p.send(changelog, key=user.encode(), value=_version_1(fold_interactions(mine, params), [e.event_id for e in mine]))
    p.flush()
    p.close()

    (port,) = free_ports(1)
    worker = start_worker(s, port, stack.state_dir / "workers")
    try:
        wait_for_group(s, [worker])
        send(s, [(s.topics().uploads.name, u.item_id.encode(), encode_upload(u)) for u in uploads])
        wait_until(lambda: len(stored_items(s, items)) == len(items), what="the items in Milvus")
        # the upgraded worker created the topic the older release lacked, and keeps the uploads' content there
        content = s.topics().item_content.name
        assert describe_topics(s.kafka_bootstrap, s.kafka_security(), [content]) == {content: s.topic_partitions}
        assert "created topic " + content in worker.log_tail(400)

        def kept() -> set[str]:
            c = consumer(s.kafka_bootstrap, s.kafka_security(), content, auto_offset_reset="earliest", consumer_timeout_ms=2000)
            try:
                return {r.key.decode() for r in c}
            finally:
                c.close()

        wait_until(lambda: kept() == set(items), what="the uploads on the item-content topic")
        replayed = old[::3]  # old events delivered again after the upgrade: recognised, not applied twice
        send(s, [(s.topics().interactions.name, e.user_id.encode(), encode_interaction(e)) for e in (*new, *replayed)])
        wait_until(lambda: drained(s), what="the interactions processed")
        vectors = stored_items(s, items)
        got = user_vectors(s, sorted({e.user_id for e in old}))
        for user in sorted({e.user_id for e in old}):
            history = [e for e in (*old, *new) if e.user_id == user]
            expected = interest_vectors(fold_interactions(history, params), vectors, params)
            assert expected is not None
            np.testing.assert_allclose(got[user][0], expected[0], atol=1e-5)
            assert got[user][1] == len(history)  # the old count carried over, the new events added once, the replays not at all
    finally:
        worker.stop()
