"""One bad record never stops the stream (issue 11), on the real stack: poison pills, unbounded and
forbidden media reads, forged event times, keys that disagree with bodies, and identifiers that must
round-trip through Milvus filters. Each bad record is dead-lettered with its reason, the good records
sent just before and after it (same partition, same micro-batch) are stored, and the lag returns to
zero by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deploy.local.process import ManagedProcess
from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from streams.recall.query import Recall, RecallError
from streams.sinks.kafka import ensure_topics, producer
from streams.sinks.milvus import MilvusRejected, MilvusSink
from tests.support.media import image_bytes
from tests.support.streaming import dead_letters, drained, send, stored_items, user_vectors, wait_until
from topology import reasons
from topology.codec import encode_interaction, encode_upload
from topology.collections import VECTOR_FIELD, item_row, items_collection
from topology.messages import Action, ContentUpload, Interaction, Media
from topology.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    (root / "cover.jpg").write_bytes(image_bytes(3))
    os.mkfifo(root / "stream.jpg")  # a reader of a FIFO waits for a writer forever
    return root


@pytest.fixture(scope="module")
def poison(stack: Stack, settings: Settings, media_root: Path) -> Iterator[tuple[Settings, ManagedProcess]]:
    """A worker on its own group and topics, with one media root (and the default: no private hosts)."""
    run = uuid.uuid4().hex[:6]
    own = settings.model_copy(update={"app_id": f"pp{run}", "topic_prefix": f"pp{run}.", "media_roots": str(media_root)})
    ensure_topics(own.kafka_bootstrap, own.kafka_security(), own.topics().all())
    (port,) = free_ports(1)
    worker = start_worker(own, port, stack.state_dir / "poison")
    try:
        wait_for_group(own, [worker])
        yield own, worker
    finally:
        worker.stop()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _upload(tag: str, name: str, **fields: object) -> ContentUpload:
    values: dict[str, object] = {
        "item_id": f"{tag}-{name}",
        "creator_id": f"{tag}-creator",
        "created_at_ms": _now_ms(),
        "title": f"{name} of {tag}",
    }
    values.update(fields)
    return ContentUpload(**values)  # type: ignore[arg-type]


def _send_uploads(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    """Upload records on one partition, in this order, so that they share a micro-batch."""
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
    for key, value in records:
        p.send(settings.topics().uploads.name, key=key, value=value, partition=0)
    p.flush()
    p.close()


def _send_interactions(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    send(settings, [(settings.topics().interactions.name, key, value) for key, value in records])


def _letters_for(settings: Settings, originals: list[bytes]) -> dict[bytes, list]:
    found: dict[bytes, list] = {o: [] for o in originals}
    for letter in dead_letters(settings):
        if letter.original in found:
            found[letter.original].append(letter)
    return found


def _bad_uploads_between_good_ones(settings: Settings, tag: str, bad: list[bytes], bad_keys: list[bytes]) -> dict[bytes, list]:
    """Send good, bad_1, good, bad_2, ..., good on one partition; wait for every good one in Milvus and
    one dead letter per bad one; return the dead letters by original."""
    goods = [_upload(tag, f"good-{n}") for n in range(len(bad) + 1)]
    records = [(goods[0].item_id.encode(), encode_upload(goods[0]))]
    for n, (key, value) in enumerate(zip(bad_keys, bad)):
        records += [(key, value), (goods[n + 1].item_id.encode(), encode_upload(goods[n + 1]))]
    _send_uploads(settings, records)
    ids = [g.item_id for g in goods]
    wait_until(lambda: len(stored_items(settings, ids)) == len(ids), what="the good uploads around the bad ones")
    wait_until(lambda: all(_letters_for(settings, bad).values()), timeout_s=60, what="a dead letter per bad upload")
    wait_until(lambda: drained(settings), what="lag back to zero")
    letters = _letters_for(settings, bad)
    assert all(len(v) == 1 for v in letters.values()), {k[:40]: len(v) for k, v in letters.items()}
    return letters


def test_an_int64_overflow_is_dead_lettered_and_its_batch_is_stored(poison: tuple[Settings, ManagedProcess]) -> None:
    settings, worker = poison
    tag = uuid.uuid4().hex[:6]
    bad = _upload(tag, "overflow", created_at_ms=2**64 - 1)
    letters = _bad_uploads_between_good_ones(settings, tag, [encode_upload(bad)], [bad.item_id.encode()])
    (letter,) = letters[encode_upload(bad)]
    assert letter.reason == reasons.SCHEMA_INVALID_VALUE and "created_at_ms" in letter.detail
    assert stored_items(settings, [bad.item_id]) == {} and worker.is_running()


def test_special_and_outside_files_are_never_read(poison: tuple[Settings, ManagedProcess], media_root: Path) -> None:
    settings, worker = poison
    tag = uuid.uuid4().hex[:6]
    uris = [
        "file:///dev/zero",
        f"file://{media_root}/stream.jpg",
        "file:///proc/self/environ",
        f"file://{media_root}/../../etc/passwd",
    ]
    bad = [_upload(tag, f"file-{n}", cover=Media.at(uri)) for n, uri in enumerate(uris)]
    letters = _bad_uploads_between_good_ones(settings, tag, [encode_upload(b) for b in bad], [b.item_id.encode() for b in bad])
    for upload, uri in zip(bad, uris):
        (letter,) = letters[encode_upload(upload)]
        assert letter.reason == reasons.MEDIA_FORBIDDEN, (uri, letter.detail)
    assert "not a regular file" in letters[encode_upload(bad[1])][0].detail
    # a regular file under the root is read as before
    good = _upload(tag, "file-ok", cover=Media.at(f"file://{media_root}/cover.jpg"))
    _send_uploads(settings, [(good.item_id.encode(), encode_upload(good))])
    wait_until(lambda: bool(stored_items(settings, [good.item_id])), what="an upload whose cover is a file under the media root")
    assert worker.is_running()


def test_internal_addresses_are_never_fetched(poison: tuple[Settings, ManagedProcess]) -> None:
    settings, _ = poison
    tag = uuid.uuid4().hex[:6]
    milvus_port = settings.milvus_uri.rsplit(":", 1)[1]
    uris = [
        f"http://127.0.0.1:{milvus_port}/v2/vectordb/collections/list",
        f"http://localhost:{milvus_port}/",
        "http://169.254.169.254/latest/meta-data/",
    ]
    bad = [_upload(tag, f"url-{n}", cover=Media.at(uri)) for n, uri in enumerate(uris)]
    letters = _bad_uploads_between_good_ones(settings, tag, [encode_upload(b) for b in bad], [b.item_id.encode() for b in bad])
    for upload in bad:
        (letter,) = letters[encode_upload(upload)]
        assert letter.reason == reasons.MEDIA_FORBIDDEN and "not a public address" in letter.detail, letter.detail


def test_forged_times_and_keys_are_dead_lettered_and_never_applied(poison: tuple[Settings, ManagedProcess]) -> None:
    settings, _ = poison
    tag = uuid.uuid4().hex[:6]
    item = _upload(tag, "liked")
    future = _upload(tag, "from-the-future", created_at_ms=_now_ms() + 1000 * 365 * 86_400_000)
    wrong_key = _upload(tag, "wrong-key")
    letters = _bad_uploads_between_good_ones(
        settings, tag, [encode_upload(future), encode_upload(wrong_key)], [future.item_id.encode(), b"another-item"]
    )
    assert letters[encode_upload(future)][0].reason == reasons.SCHEMA_INVALID_TIME
    assert letters[encode_upload(wrong_key)][0].reason == reasons.SCHEMA_KEY_MISMATCH
    _send_uploads(settings, [(item.item_id.encode(), encode_upload(item))])
    wait_until(lambda: bool(stored_items(settings, [item.item_id])), what="the liked item")

    user, other = f"{tag}-user", f"{tag}-other"
    now = _now_ms()

    def event(n: int, ts: int, who: str = user) -> Interaction:
        return Interaction(event_id=f"{tag}-e{n}", user_id=who, item_id=item.item_id, action=Action.LIKE, timestamp_ms=ts)

    forged = encode_interaction(event(1, now + 1000 * 365 * 86_400_000 * 1000))  # a thousand years ahead
    misrouted = encode_interaction(event(2, now, who=other))  # body names `other`, key says `user`
    _send_interactions(
        settings,
        [
            (user.encode(), encode_interaction(event(0, now))),
            (user.encode(), forged),
            (user.encode(), misrouted),
            (user.encode(), encode_interaction(event(3, now + 1))),
        ],
    )
    wait_until(lambda: user_vectors(settings, [user]).get(user, (None, 0))[1] == 2, what="the two good interactions applied")
    wait_until(
        lambda: all(_letters_for(settings, [forged, misrouted]).values()), timeout_s=60, what="dead letters of the forged ones"
    )
    wait_until(lambda: drained(settings), what="lag back to zero")
    letters = _letters_for(settings, [forged, misrouted])
    assert [x.reason for x in letters[forged]] == [reasons.SCHEMA_INVALID_TIME]
    assert [x.reason for x in letters[misrouted]] == [reasons.SCHEMA_KEY_MISMATCH]
    assert user_vectors(settings, [other]) == {}  # never applied on the wrong partition
    rows = _rows_updated_at(settings, user)
    assert rows <= now + 1  # the forged year never became the user's newest event


def _rows_updated_at(settings: Settings, user: str) -> int:
    async def go() -> int:
        sink = MilvusSink(settings.milvus_uri, None, settings.milvus_backend)
        await sink.start()
        try:
            (row,) = await sink.get(settings.collections()[1].name, [f"{user}#0"], fields=["updated_at_ms"])
            return int(row["updated_at_ms"])
        finally:
            await sink.close()

    return asyncio.run(go())


def test_identifiers_round_trip_through_recall_and_its_filters(poison: tuple[Settings, ManagedProcess]) -> None:
    """Any accepted id (any script, `#`, `/`, `:`) is stored, excluded and filtered on exactly;
    ids with the characters that quote or separate ids (`, ' " \\`) are dead-lettered."""
    settings, _ = poison
    tag = uuid.uuid4().hex[:6]
    creators = [f"créateur-{tag}-ü", f"作者-{tag}"]
    names = ["猫-clip", "emoji😀-clip", "a#b:c/d@e", "ÄÖÜ-straße", "plain"]
    uploads = [_upload(tag, name, creator_id=creators[n % 2], title=f"cats and more cats {n}") for n, name in enumerate(names)]
    rejected = [_upload(tag, name) for name in ("a,b", "it's", 'say "hi"', "back\\slash")]
    records = [(u.item_id.encode(), encode_upload(u)) for u in (*uploads, *rejected)]
    _send_uploads(settings, records)
    ids = [u.item_id for u in uploads]
    wait_until(lambda: len(stored_items(settings, ids)) == len(ids), what="uploads with non-ASCII ids")
    wait_until(
        lambda: all(_letters_for(settings, [encode_upload(r) for r in rejected]).values()),
        timeout_s=60,
        what="dead letters of the bad ids",
    )
    assert {x[0].reason for x in _letters_for(settings, [encode_upload(r) for r in rejected]).values()} == {
        reasons.SCHEMA_INVALID_VALUE
    }

    user = f"ユーザー-{tag}"
    seen = ids[:2]
    events = [
        Interaction(event_id=f"{tag}-e{n}", user_id=user, item_id=i, action=Action.LIKE, timestamp_ms=_now_ms())
        for n, i in enumerate(seen)
    ]
    _send_interactions(settings, [(user.encode(), encode_interaction(e)) for e in events])
    wait_until(lambda: user_vectors(settings, [user]).get(user, (None, 0))[1] == 2, what="the non-ASCII user's vector")

    async def recall() -> None:
        sink = MilvusSink(settings.milvus_uri, None, settings.milvus_backend)
        await sink.start()
        items, users = settings.collections()
        r = Recall(sink, items, users, slots=1)
        try:
            mine = min(u.created_at_ms for u in uploads)  # this test's items only: the collection is shared
            top = [x.item_id for x in await r.user_to_item(user, k=50, consistency="Strong", created_after_ms=mine)]
            assert not set(seen) & set(top)  # the seen (non-ASCII) ids are excluded
            assert set(ids[2:]) <= set(top)
            narrowed = await r.user_to_item(
                user, k=50, consistency="Strong", created_after_ms=mine, exclude_creator=creators[1], exclude_items=[ids[4]]
            )
            assert [x.item_id for x in narrowed] == [ids[2]]  # seen 0, 1; creator of 1 and 3; 4 excluded by id
            similar = await r.item_to_item(ids[1], k=50, consistency="Strong", created_after_ms=mine, exclude_creator=creators[0])
            assert {x.item_id for x in similar} == {ids[3]}  # itself and the excluded creator's items left out
            for bad in ("a,b", "it's", 'x" or creator_id != "', "back\\slash"):
                with pytest.raises(RecallError) as info:
                    await r.user_to_item(user, exclude_creator=bad)
                assert info.value.status == 400
                with pytest.raises(RecallError):
                    await r.item_to_item(bad)
        finally:
            await sink.close()

    asyncio.run(recall())


def test_the_sink_stores_what_milvus_accepts_and_names_what_it_refuses(settings: Settings) -> None:
    """Straight to the real Milvus, under the codec: rows the schema check catches, and a row only
    Milvus itself refuses (Milvus Lite cannot store a primary key with a single quote: its internal
    delete of the old row fails), each isolated from the rows around it."""
    spec = items_collection(settings.milvus_collection_prefix, settings.embedding_dim)
    tag = uuid.uuid4().hex[:6]
    unit = [1.0] + [0.0] * (spec.dim - 1)

    def row(item_id: str, **overrides: object) -> dict[str, object]:
        return {**item_row(item_id, "c", 1, 2, "m", unit), **overrides}

    rows = [
        row(f"{tag}-0"),
        row(f"{tag}-big", created_at_ms=2**64 - 1),
        row(f"{tag}-2"),
        row(f"{tag}-it's"),
        row(f"{tag}-4"),
        row(f"{tag}-nan", **{VECTOR_FIELD: [float("nan")] * spec.dim}),
        row(f"{tag}-6"),
    ]

    async def go() -> dict[int, str]:
        sink = MilvusSink(settings.milvus_uri, None, settings.milvus_backend)
        await sink.start()
        try:
            with pytest.raises(MilvusRejected, match="Value out of range"):
                await sink.upsert(spec.name, [rows[1]])  # pymilvus refuses it before sending: never a retry
            return await sink.upsert_each(spec, rows)
        finally:
            await sink.close()

    refused = asyncio.run(go())
    assert set(refused) == {1, 3, 5}
    assert "not an int64" in refused[1] and "NaN" in refused[5] and refused[3]
    stored = stored_items(
        settings, [str(r["item_id"]) for n, r in enumerate(rows) if n != 3]
    )  # pymilvus's get cannot quote a "'"
    assert set(stored) == {f"{tag}-{n}" for n in (0, 2, 4, 6)}
    np.testing.assert_allclose(stored[f"{tag}-0"], unit)


def test_sigterm_ends_a_worker_retrying_a_down_milvus_and_its_batch_is_redone(
    stack: Stack, poison: tuple[Settings, ManagedProcess]
) -> None:
    settings, _ = poison
    run = uuid.uuid4().hex[:6]
    own = settings.model_copy(update={"app_id": f"st{run}", "topic_prefix": f"st{run}."})
    ensure_topics(own.kafka_bootstrap, own.kafka_security(), own.topics().all())
    (port,) = free_ports(1)
    worker = start_worker(own, port, stack.state_dir / "sigterm")
    restarted = None
    try:
        wait_for_group(own, [worker])
        tag = uuid.uuid4().hex[:6]
        uploads = [_upload(tag, f"held-{n}") for n in range(4)]
        stack.down(["milvus"])
        try:
            _send_uploads(own, [(u.item_id.encode(), encode_upload(u)) for u in uploads])
            log = stack.state_dir / "sigterm" / f"worker-{port}.log"
            wait_until(
                lambda: "dependency down, retrying dependency=milvus" in log.read_text(errors="replace"),
                timeout_s=60,
                what="the worker retrying",
            )
            record = worker.record()
            assert record is not None
            os.killpg(record.pgid, signal.SIGTERM)
            wait_until(lambda: not worker.is_running(), timeout_s=45, what="the worker to exit on SIGTERM while Milvus is down")
        finally:
            stack.up(["milvus"])
        restarted = start_worker(
            own, port, stack.state_dir / "sigterm"
        )  # the same static member: its partitions back without a rebalance
        wait_for_group(own, [restarted])
        ids = [u.item_id for u in uploads]
        wait_until(lambda: len(stored_items(own, ids)) == len(ids), what="the abandoned batch redone after the restart")
        wait_until(lambda: drained(own), what="lag back to zero")
    finally:
        worker.stop()
        if restarted is not None:
            restarted.stop()
