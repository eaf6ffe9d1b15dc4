"""The streaming updater end to end: real Kafka, a real Faust worker process, real Triton, real Milvus."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import msgpack
import numpy as np
import pytest

from deploy.local.process import ManagedProcess
from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from encoders.client import EncoderClient
from streams.collab.maths import (
    CollabParams,
    apply_co_engagement,
    co_engagement,
    dot,
    identity,
    item_vector,
    search_vector,
    user_items,
    user_vector,
)
from streams.interest.maths import InterestParams, apply_interaction, fold_interactions, interest_vectors
from streams.recall.query import Recall, Recalled
from streams.sinks.kafka import group_assignment, group_lag, iter_topic, read_topic
from streams.sinks.milvus import MilvusSink, milvus_string
from tests.support.metrics import sample, scrape
from tests.support.stack import on_both_backends
from tests.support.streaming import (
    clip_upload,
    dead_letters,
    drained,
    milvus_rows,
    send,
    stored_items,
    user_vectors,
    wait_until,
)
from topology import reasons
from topology.codec import (
    decode_collab_state,
    decode_interest_state,
    decode_retry,
    encode_co_engagement,
    encode_interaction,
    encode_interaction_batch,
    encode_upload,
)
from topology.collections import CANARY, COLLAB_COPY, COLLAB_FIELD, VECTOR_FIELD, unpack_sparse
from topology.messages import (
    Action,
    ContentUpload,
    DeadLetter,
    EncodeRequest,
    Interaction,
    InterestState,
    ItemCollabState,
    Media,
)
from topology.settings import Settings
from topology.topics import COLLAB_TABLE, table_changelog

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(stack: Stack, settings: Settings) -> Iterator[ManagedProcess]:
    (port,) = free_ports(1)
    proc = start_worker(settings, port, stack.state_dir / "workers")
    try:
        wait_for_group(settings, [proc])
        yield proc
    finally:
        proc.stop()


def _request(upload: ContentUpload) -> EncodeRequest:
    return EncodeRequest(
        title=upload.title,
        tags=upload.tags,
        author_nickname=upload.author_nickname,
        cover=upload.cover.data if upload.cover else None,
    )


@on_both_backends
def test_upload_becomes_searchable_with_the_encoders_vector(settings: Settings, worker: ManagedProcess) -> None:
    tag = uuid.uuid4().hex[:6]
    uploads = [clip_upload(tag, n, cover=n % 2 == 0) for n in range(6)]
    sent = {u.item_id: encode_upload(u) for u in uploads}
    send(settings, [(settings.topics().uploads.name, item_id.encode(), value) for item_id, value in sent.items()])
    ids = [u.item_id for u in uploads]
    wait_until(lambda: len(stored_items(settings, ids)) == len(ids), what="items in Milvus")
    stored = stored_items(settings, ids)

    async def direct() -> list[np.ndarray]:
        client = EncoderClient(settings.triton_grpc_address, timeout_s=30.0)
        await client.start()
        try:
            return [r.vector for r in await client.encode([_request(u) for u in uploads])]  # type: ignore[misc]
        finally:
            await client.close()

    for upload, expected in zip(uploads, asyncio.run(direct())):
        np.testing.assert_allclose(stored[upload.item_id], expected, atol=1e-5)

    async def search() -> str:
        sink = MilvusSink(settings.milvus_uri, None, settings.milvus_backend)
        await sink.start()
        try:
            hits = await sink.search(
                settings.collections()[0].name, stored[ids[3]][None, :], limit=1, vector_field=VECTOR_FIELD, consistency="Strong"
            )
            return hits[0][0].id
        finally:
            await sink.close()

    assert asyncio.run(search()) == ids[3]

    # the item-content topic keeps each stored upload as it arrived, keyed by item: a re-embed's source
    def kept() -> dict[str, bytes]:
        records = read_topic(
            settings.kafka_bootstrap, settings.kafka_security(), settings.topics().item_content.name, idle_ms=2000
        )
        return {key: r.value for r in records if (key := r.key.decode()) in sent}

    wait_until(lambda: len(kept()) == len(sent), what="every upload on the item-content topic")
    assert kept() == sent


def _world(settings: Settings, tag: str, n_items: int = 8) -> list[str]:
    uploads = [clip_upload(tag, n) for n in range(n_items)]
    send(settings, [(settings.topics().uploads.name, u.item_id.encode(), encode_upload(u)) for u in uploads])
    ids = [u.item_id for u in uploads]
    wait_until(lambda: len(stored_items(settings, ids)) == len(ids), what="items in Milvus")
    return ids


def _log(tag: str, items: list[str], users: int = 3, per_user: int = 14) -> list[Interaction]:
    rng = np.random.default_rng(5)
    actions = [Action.VIEW, Action.LIKE, Action.SHARE, Action.SKIP, Action.DISLIKE, Action.COMMENT]
    return [
        Interaction(
            event_id=f"{tag}-e{u}-{k}",
            user_id=f"{tag}-user-{u}",
            item_id=items[int(rng.integers(len(items)))],
            action=actions[int(rng.integers(len(actions)))],
            timestamp_ms=1_700_000_000_000 + k * 60_000 + u,
            dwell_ms=int(rng.integers(0, 20_000)),
        )
        for u in range(users)
        for k in range(per_user)
    ]


def _expected(settings: Settings, log: list[Interaction], items: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    expected = {}
    for user in sorted({e.user_id for e in log}):
        vectors = interest_vectors(
            fold_interactions([e for e in log if e.user_id == user], InterestParams.for_settings(settings)),
            items,
            InterestParams.for_settings(settings),
        )
        if vectors is not None:
            expected[user] = vectors[0]
    return expected


@on_both_backends
def test_user_vectors_equal_the_pure_function_and_replays_change_nothing(settings: Settings, worker: ManagedProcess) -> None:
    tag = uuid.uuid4().hex[:6]
    items = _world(settings, tag)
    log = _log(tag, items)
    topic = settings.topics().interactions.name
    send(settings, [(topic, e.user_id.encode(), encode_interaction(e)) for e in log])
    wait_until(lambda: drained(settings), what="interactions processed")
    expected = _expected(settings, log, stored_items(settings, items))
    got = user_vectors(settings, list(expected))
    assert set(got) == set(expected)
    page = scrape(f"http://127.0.0.1:{worker.name.rsplit('-', 1)[1]}/metrics")
    for phase in ("decode", "state", "vectors", "maths", "upsert", "changelog"):  # where the interest path's time went
        assert sample(page, "sail_interest_seconds", phase=phase) > 0, phase
    for user, vector in expected.items():
        np.testing.assert_allclose(got[user][0], vector, atol=1e-5)
        assert got[user][1] == sum(e.user_id == user for e in log)

    # Deliver the same interactions again, shuffled: every user's state and vector stay the same.
    replay = list(log)
    np.random.default_rng(1).shuffle(replay)
    send(settings, [(topic, e.user_id.encode(), encode_interaction(e)) for e in replay])
    wait_until(lambda: drained(settings), what="replay processed")
    again = user_vectors(settings, list(expected))
    for user in expected:
        np.testing.assert_array_equal(again[user][0], got[user][0])
        assert again[user][1] == got[user][1]

    # The table's changelog: each user's newest state is the fold of their events, in the partition of
    # their interactions (co-partitioned, so a worker that takes the partition over restores the user).
    params = InterestParams.for_settings(settings)
    states, where = _records(settings, table_changelog(settings.app_id)), _records(settings, topic)
    for user in {e.user_id for e in log}:
        partition, value = states[user.encode()]
        assert partition == where[user.encode()][0]
        assert decode_interest_state(value) == fold_interactions([e for e in log if e.user_id == user], params)


def test_collaborative_vectors_equal_a_recomputation_and_a_redelivered_batch_changes_nothing(
    settings: Settings, worker: ManagedProcess
) -> None:
    assert settings.collab_enabled  # the default on Milvus Lite
    params = CollabParams.for_settings(settings)
    items_spec, users_spec = settings.collab_collections()
    tag = uuid.uuid4().hex[:6]
    items = _world(settings, tag)

    # Each upload is in the collaborative space before anyone engaged with it: its row carries its prior,
    # the nearest stored items by content (earlier tests left plenty).
    def first_rows() -> dict[str, dict]:
        rows = milvus_rows(settings, items_spec.name, items, ["likes", COLLAB_COPY])
        return {k: {**v, COLLAB_FIELD: unpack_sparse(v[COLLAB_COPY])} for k, v in rows.items()}

    wait_until(lambda: len(first_rows()) == len(items), what="every upload's first collaborative row")
    for item, row in first_rows().items():
        assert row["likes"] == 0
        assert identity(item) in row[COLLAB_FIELD] and len(row[COLLAB_FIELD]) > 1, item  # the prior's pairs besides itself

    log = _log(tag, items, users=4, per_user=12)
    topic = settings.topics().interactions.name
    send(settings, [(topic, e.user_id.encode(), encode_interaction(e)) for e in log])
    wait_until(lambda: drained(settings), what="interactions and co-engagements processed")

    # The recomputation from the events as sent: each user's log folded in order, each applied positive's
    # co-engagement, every item's state from those (any order) and the prior the worker stored.
    interest = InterestParams.for_settings(settings)
    users: dict[str, InterestState] = {}
    engagements = []
    for e in log:
        before = users.get(e.user_id, InterestState())
        users[e.user_id] = apply_interaction(before, e, interest)
        if not e.action.is_negative and users[e.user_id] is not before:
            engagements.append(co_engagement(before, e.event_id, e.user_id, e.item_id, e.timestamp_ms, params.pairs))
    stored_states = {
        key.decode(): decode_collab_state(value)
        for key, (_, value) in _records(settings, table_changelog(settings.app_id, COLLAB_TABLE)).items()
    }
    expected: dict[str, dict[int, float]] = {}
    for item in items:
        state = ItemCollabState(prior=stored_states[item].prior)
        for g in engagements:
            if g.item_id == item:
                state = apply_co_engagement(state, g, params)
        assert stored_states[item] == replace(state, recent=stored_states[item].recent)  # the remembered ids: as applied
        expected[item] = item_vector(item, state, params)
    assert sum(1 for g in engagements if g.before) >= 10  # the log pairs items: most vectors hold pairs

    def item_rows() -> dict[str, dict[int, float]]:
        return {k: unpack_sparse(v[COLLAB_COPY]) for k, v in milvus_rows(settings, items_spec.name, items, [COLLAB_COPY]).items()}

    got = item_rows()
    for item in items:
        assert got[item].keys() == expected[item].keys(), item
        for d, w in expected[item].items():
            assert got[item][d] == pytest.approx(w, rel=1e-5), (item, d)  # Milvus keeps float32 weights
    user_rows = milvus_rows(settings, users_spec.name, list(users), ["item_ids", COLLAB_COPY, "event_count"])
    for user, state in users.items():
        mine = user_items(state, params)
        if not mine:
            assert user not in user_rows
            continue
        assert user_rows[user]["item_ids"] == ",".join(i for i, _ in mine)
        assert unpack_sparse(user_rows[user][COLLAB_COPY]) == pytest.approx(user_vector(state, params), rel=1e-6)
        assert user_rows[user]["event_count"] == state.event_count

    # The recall API's collab channel serves exactly the sparse search of the recomputed vectors: its
    # scores are x_j . swap(sum_i u_i x_i), best first, and no engaged item scoring higher is left out.
    async def recalled(user: str, channel: str) -> list[Recalled]:
        sink = MilvusSink.for_settings(settings)
        await sink.start()
        try:
            return await Recall.for_settings(sink, settings).user_to_item(user, k=5, channel=channel, consistency="Strong")
        finally:
            await sink.close()

    every = {  # all collaborative item rows (this session's tests wrote a few hundred)
        str(r["item_id"]): unpack_sparse(str(r[COLLAB_COPY]))
        for r in asyncio.run(_query(settings, items_spec.name, "likes >= 0", ["item_id", COLLAB_COPY]))
    }
    catalogue = {
        str(r["item_id"])
        for r in asyncio.run(
            _query(settings, settings.collections()[0].name, f"creator_id != {milvus_string(CANARY)}", ["item_id"])
        )
    }
    served = 0
    for user, state in users.items():
        mine = user_items(state, params)
        if not mine:
            continue
        query = search_vector([(w, every[i]) for i, w in mine])
        seen = {e.item_id for e in log if e.user_id == user}
        scored = sorted(((dot(x, query), i) for i, x in every.items() if i not in seen), reverse=True)
        want = [(score, i) for score, i in scored if score > 0][:5]
        answer = asyncio.run(recalled(user, "collab"))
        assert all(r.channel == "collab" for r in answer)
        assert [r.score for r in answer] == pytest.approx([score for score, _ in want], rel=1e-4)
        assert {r.item_id for r in answer} == {i for _, i in want} or len({round(x, 5) for x, _ in scored[:6]}) < 6  # ties aside
        fused = asyncio.run(recalled(user, "fused"))  # collab / its best + content weight x dense, over both tops
        assert len(fused) == min(5, len(catalogue - seen))  # dense finds the rest when collab finds too few
        assert [r.score for r in fused] == sorted((r.score for r in fused), reverse=True)
        assert {r.item_id for r in fused}.isdisjoint(i for i, _ in mine)  # never what the user just liked
        assert {r.channel for r in fused} <= {"collab", "dense", "collab+dense"}
        if want:  # the collab top scores 1 before its content share: ahead of anything dense alone finds
            assert fused[0].channel.startswith("collab")
        served += want != []
    assert served >= 2

    # Redelivered: the co-engagements themselves, shuffled, straight to the item stage (a batch it applied
    # and saw again after a crash), and the interactions once more: no vector moves.
    redelivered = list(engagements)
    np.random.default_rng(2).shuffle(redelivered)
    send(
        settings,
        [(settings.topics().co_engagements.name, g.item_id.encode(), encode_co_engagement(g)) for g in redelivered]
        + [(topic, e.user_id.encode(), encode_interaction(e)) for e in log],
    )
    wait_until(lambda: drained(settings), what="the redelivered batches processed")
    assert item_rows() == got
    again = milvus_rows(settings, users_spec.name, list(users), [COLLAB_COPY])
    assert {u: r[COLLAB_COPY] for u, r in again.items()} == {u: r[COLLAB_COPY] for u, r in user_rows.items()}


async def _query(settings: Settings, collection: str, where: str, fields: list[str]) -> list[dict]:
    sink = MilvusSink.for_settings(settings)
    await sink.start()
    try:
        return await sink.query(collection, where, fields)
    finally:
        await sink.close()


def _records(settings: Settings, topic: str) -> dict[bytes, tuple[int, bytes]]:
    """The newest (partition, value) per key of a topic."""
    return {
        r.key: (r.partition, r.value)
        for r in read_topic(settings.kafka_bootstrap, settings.kafka_security(), topic, idle_ms=3000)
    }


def _parked(settings: Settings, original: bytes) -> bool:
    """Whether the worker put this interaction on the retry topic (it read it and found no item vector)."""
    records = iter_topic(
        settings.kafka_bootstrap, settings.kafka_security(), settings.topics().interactions_retry.name, idle_ms=2000
    )
    return any(decode_retry(r.value).original == original for r in records)  # stops at the first match


@on_both_backends
def test_interaction_before_its_item_is_applied_once_the_item_exists(settings: Settings, worker: ManagedProcess) -> None:
    tag = uuid.uuid4().hex[:6]
    late = clip_upload(tag, 99)
    event = Interaction(
        event_id=f"{tag}-early", user_id=f"{tag}-user", item_id=late.item_id, action=Action.LIKE, timestamp_ms=1_700_000_000_000
    )
    send(settings, [(settings.topics().interactions.name, event.user_id.encode(), encode_interaction(event))])
    wait_until(
        lambda: _parked(settings, encode_interaction(event)), timeout_s=60, what="the interaction parked on the retry topic"
    )
    assert user_vectors(settings, [event.user_id]) == {}  # read, not applied: its item has no vector yet
    metrics = f"http://127.0.0.1:{worker.name.rsplit('-', 1)[1]}/metrics"
    reads_before = sample(scrape(metrics), "sail_events", agent="retry")
    time.sleep(4.0)  # the item is late: its interaction is held, not read again and again (polls every 0.2 s here)
    send(settings, [(settings.topics().uploads.name, late.item_id.encode(), encode_upload(late))])
    wait_until(lambda: bool(user_vectors(settings, [event.user_id])), what="the waiting interaction applied")
    assert sample(scrape(metrics), "sail_events", agent="retry") - reads_before <= 1  # read once while waiting 4 s
    assert sample(scrape(metrics), "sail_waited_seconds_count") >= 1  # sent back by the lot, with how long it waited
    vector, count = user_vectors(settings, [event.user_id])[event.user_id]
    np.testing.assert_allclose(vector, stored_items(settings, [late.item_id])[late.item_id], atol=1e-5)
    assert count == 1


def test_a_batch_record_applies_its_good_events_dead_letters_its_bad_one_and_parks_its_early_one_alone(
    settings: Settings, worker: ManagedProcess
) -> None:
    tag = uuid.uuid4().hex[:6]
    topics = settings.topics()
    stored, late = [clip_upload(tag, n) for n in range(2)], clip_upload(tag, 9)
    send(settings, [(topics.uploads.name, u.item_id.encode(), encode_upload(u)) for u in stored])
    wait_until(lambda: len(stored_items(settings, [u.item_id for u in stored])) == 2, what="the batch's items stored")
    user, now = f"{tag}-batcher", int(time.time() * 1000)
    events = [
        Interaction(f"{tag}-b{n}", user, item.item_id, Action.LIKE, now + n) for n, item in enumerate([*stored, stored[0], late])
    ]
    raw = msgpack.unpackb(encode_interaction_batch(user, events))
    raw["events"][2]["action"] = "poke"  # the bad one, between good ones
    send(settings, [(topics.interactions.name, user.encode(), msgpack.packb(raw))])

    def letter() -> DeadLetter | None:
        return next((d for d in dead_letters(settings) if f"{tag}-b2".encode() in d.original), None)

    wait_until(lambda: letter() is not None, what="the batch's bad event dead-lettered")
    bad = letter()
    assert bad is not None and bad.reason == reasons.SCHEMA_INVALID_VALUE and "event 2 of a batch record" in bad.detail
    assert msgpack.unpackb(bad.original)["user_id"] == user  # the event alone, as a producer would send it again
    wait_until(lambda: user_vectors(settings, [user]).get(user, (None, 0))[1] == 2, what="the batch's good events applied")
    # the early one waits alone (not its whole record) and follows its item
    wait_until(lambda: _parked(settings, encode_interaction(events[3])), timeout_s=60, what="the early event parked alone")
    send(settings, [(topics.uploads.name, late.item_id.encode(), encode_upload(late))])
    wait_until(lambda: user_vectors(settings, [user]).get(user, (None, 0))[1] == 3, what="the early event applied")


def test_malformed_messages_are_dead_lettered_and_the_good_ones_around_them_processed(
    settings: Settings, worker: ManagedProcess
) -> None:
    tag = uuid.uuid4().hex[:6]
    topics = settings.topics()
    good = [clip_upload(tag, n) for n in range(4)]
    bad_upload = b"\xc1 garbage " + tag.encode()
    bad_interaction = encode_interaction(
        Interaction(event_id=f"{tag}-bad", user_id=f"{tag}-u", item_id="x", action=Action.LIKE, timestamp_ms=1)
    ).replace(b"like", b"poke")
    missing_item = Interaction(
        event_id=f"{tag}-ghost", user_id=f"{tag}-u2", item_id=f"{tag}-never-uploaded", action=Action.LIKE, timestamp_ms=1
    )
    records = [(topics.uploads.name, good[0].item_id.encode(), encode_upload(good[0])), (topics.uploads.name, b"bad", bad_upload)]
    records += [(topics.uploads.name, u.item_id.encode(), encode_upload(u)) for u in good[1:]]
    records += [
        (topics.interactions.name, b"u", bad_interaction),
        (topics.interactions.name, missing_item.user_id.encode(), encode_interaction(missing_item)),
    ]
    send(settings, records)
    wait_until(lambda: len(stored_items(settings, [u.item_id for u in good])) == len(good), what="good uploads")

    def letters() -> dict[str, object]:
        found = {}
        for letter in dead_letters(settings):
            if letter.original == bad_upload:
                found["upload"] = letter
            elif letter.original == bad_interaction:
                found["interaction"] = letter
            elif tag.encode() in letter.original and letter.reason == reasons.ITEM_NOT_FOUND:
                found["missing"] = letter
        return found

    wait_until(lambda: len(letters()) == 3, timeout_s=60, what="three dead letters")
    found = letters()
    assert found["upload"].reason == reasons.DECODE_MSGPACK and found["upload"].source_topic == topics.uploads.name  # type: ignore[attr-defined]
    assert found["interaction"].reason == reasons.SCHEMA_INVALID_VALUE and "poke" in found["interaction"].detail  # type: ignore[attr-defined]
    assert found["missing"].source_topic == topics.interactions.name and "had no embedding" in found["missing"].detail  # type: ignore[attr-defined]
    assert worker.is_running()  # bad input never stops a worker


def test_corrupt_cover_is_dead_lettered_and_its_batch_neighbours_are_stored(settings: Settings, worker: ManagedProcess) -> None:
    tag = uuid.uuid4().hex[:6]
    good = [clip_upload(tag, n, cover=True) for n in range(3)]
    broken = ContentUpload(
        item_id=f"{tag}-broken",
        creator_id="c",
        created_at_ms=1,
        title="broken cover",
        cover=Media.inline(b"\xff\xd8 not a jpeg " + tag.encode()),
    )
    topic = settings.topics().uploads.name
    send(settings, [(topic, u.item_id.encode(), encode_upload(u)) for u in (good[0], broken, *good[1:])])
    wait_until(lambda: len(stored_items(settings, [u.item_id for u in good])) == 3, what="good uploads")
    wait_until(
        lambda: any(letter.key == broken.item_id.encode() for letter in dead_letters(settings)), timeout_s=30, what="dead letter"
    )
    letter = next(d for d in dead_letters(settings) if d.key == broken.item_id.encode())
    assert letter.reason == reasons.MEDIA_UNREADABLE and "image" in letter.detail
    assert stored_items(settings, [broken.item_id]) == {}


def test_two_workers_split_the_partitions_and_process_every_event_once_in_effect(
    stack: Stack, settings: Settings, worker: ManagedProcess
) -> None:
    (port,) = free_ports(1)
    # Dynamic: it leaves for good at the end and must leave the group when it stops. A static member
    # stays in the group for the session timeout, and its expiry rebalanced the worker in the middle
    # of the next test (Triton down, uploads in hand: Faust's rebalance waited for them).
    second = start_worker(settings, port, stack.state_dir / "workers", static=False)
    try:
        members = wait_for_group(settings, [worker, second])
        uploads = settings.topics().uploads.name
        owned = [{p for t, p in parts if t == uploads} for parts in members.values()]
        assert len(owned) == 2 and all(owned) and not owned[0] & owned[1]
        assert owned[0] | owned[1] == set(range(settings.topic_partitions))

        tag = uuid.uuid4().hex[:6]
        items = _world(settings, tag, n_items=12)
        log = _log(tag, items, users=8, per_user=10)
        send(settings, [(settings.topics().interactions.name, e.user_id.encode(), encode_interaction(e)) for e in log])
        wait_until(lambda: drained(settings), what="interactions processed by two workers")
        expected = _expected(settings, log, stored_items(settings, items))
        got = user_vectors(settings, list(expected))
        for user, vector in expected.items():
            np.testing.assert_allclose(got[user][0], vector, atol=1e-5)
            assert got[user][1] == sum(e.user_id == user for e in log)
        state, after = group_assignment(settings.kafka_bootstrap, settings.kafka_security(), settings.app_id)
        assert state == "Stable" and len(after) == 2
    finally:
        second.stop()


def test_triton_down_means_backpressure_and_recovery_not_loss(stack: Stack, settings: Settings, worker: ManagedProcess) -> None:
    """With Triton stopped, uploads are neither stored nor dead-lettered; when it is back, they all land."""
    tag = uuid.uuid4().hex[:6]
    uploads = [clip_upload(tag, n) for n in range(5)]
    ids = [u.item_id for u in uploads]
    web = f"http://127.0.0.1:{worker.name.rsplit('-', 1)[1]}/metrics"
    before = scrape(web)
    stack.down(["triton"])
    try:
        send(settings, [(settings.topics().uploads.name, u.item_id.encode(), encode_upload(u)) for u in uploads])

        def retrying() -> bool:  # the worker took the uploads and has failed to reach Triton with them since
            now = scrape(web)
            took = sample(now, "sail_events", agent="content") - sample(before, "sail_events", agent="content")
            failed = sample(now, "sail_dependency_errors", dependency="triton") - sample(
                before, "sail_dependency_errors", dependency="triton"
            )
            return took >= len(uploads) and failed >= 2 and sample(now, "sail_dependency_up", dependency="triton") == 0

        wait_until(retrying, timeout_s=60, what="the worker retrying Triton with the uploads in hand")
        assert stored_items(settings, ids) == {}
        assert not any(tag.encode() in letter.original for letter in dead_letters(settings))
        assert worker.is_running()
        lag = group_lag(settings.kafka_bootstrap, settings.kafka_security(), settings.app_id, settings.topics().uploads.name)
        assert sum(lag.values()) >= len(uploads)  # nothing acknowledged while Triton is down
    finally:
        stack.up(["triton"])
    wait_until(lambda: len(stored_items(settings, ids)) == len(ids), what="uploads stored after Triton came back")
    assert not any(tag.encode() in letter.original for letter in dead_letters(settings))


def test_lag_counts_what_was_produced_and_seconds_behind_are_the_age_of_the_oldest_unprocessed_record(
    settings: Settings, worker: ManagedProcess
) -> None:
    import os
    import signal

    from streams.ops.lag import read_lag

    topic = settings.topics().interactions.name
    wait_until(lambda: drained(settings), what="a drained group")
    record = worker.record()
    assert record is not None
    os.killpg(record.pgid, signal.SIGSTOP)
    try:
        tag = uuid.uuid4().hex[:6]
        events = [
            Interaction(event_id=f"{tag}-{k}", user_id=f"{tag}-u{k % 4}", item_id="anything", action=Action.VIEW, timestamp_ms=k)
            for k in range(17)
        ]
        sent_at_ms = int(time.time() * 1000) - 5  # producer timestamps are milliseconds: leave room for rounding
        send(settings, [(topic, e.user_id.encode(), encode_interaction(e)) for e in events])

        def lag() -> tuple[int, float]:
            rows = read_lag(
                settings.kafka_bootstrap, settings.kafka_security(), settings.app_id, [topic], now_ms=int(time.time() * 1000)
            )
            return sum(r.messages_behind for r in rows), max(r.seconds_behind for r in rows)

        read_at_ms = int(time.time() * 1000)
        rows = read_lag(settings.kafka_bootstrap, settings.kafka_security(), settings.app_id, [topic], now_ms=read_at_ms)
        later = read_lag(
            settings.kafka_bootstrap, settings.kafka_security(), settings.app_id, [topic], now_ms=read_at_ms + 60_000
        )
    finally:
        os.killpg(record.pgid, signal.SIGCONT)
    assert (
        sum(r.messages_behind for r in rows) == sum(r.messages_behind for r in later) == len(events)
    )  # nothing processed while paused
    oldest_age_s = (read_at_ms - sent_at_ms) / 1000  # the oldest unprocessed record was produced after sent_at_ms
    assert 0.0 <= max(r.seconds_behind for r in rows) <= oldest_age_s + 1.0
    assert max(r.seconds_behind for r in later) == pytest.approx(
        max(r.seconds_behind for r in rows) + 60.0, abs=0.01
    )  # age = now - record time
    wait_until(lambda: lag()[0] == 0, what="lag back to zero after resuming")
    assert lag() == (0, 0.0)
