"""Semantic IDs (issue 18) on the real stack: Kafka, Triton, Milvus Lite and a worker.

One scenario, in order:
1. uploads stored before any codebook have no semantic ID, and the recall API's sid channel answers 409;
2. `sail-stream sid fit` (the CLI) fits the live version's codebook and names it in the registry;
3. `sail-stream sid backfill` gives every older item its ID once (a second run assigns none), the
   codes being the codebook's nearest centroids of the stored vectors;
4. fresh uploads have their semantic ID in the very row that brings their vector, and on the
   item-embeddings topic;
5. after a worker restart, a re-upload keeps its codes and suffix, and a new item with the same
   content shares the codes under another suffix;
6. recall through channel=sid and channel=mixed returns items sharing the user's positives' prefixes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from streams.lifecycle.registry import Versions
from streams.recall.query import Recall, RecallError
from streams.sid.codebooks import Codebooks
from streams.sid.maths import assign, parse_sid, sid_text
from streams.sinks.kafka import consumer, ensure_topics
from streams.sinks.milvus import MilvusSink, ensure_collections
from tests.support.stack import on_both_backends
from tests.support.streaming import clip_upload, milvus_rows, send, wait_until
from topology.codec import decode_item_embedding, encode_interaction, encode_upload
from topology.collections import VECTOR_FIELD, user_key
from topology.messages import Action, Interaction
from topology.settings import Settings

pytestmark = pytest.mark.integration

SID_FIELDS = ["sid_codes", "sid_suffix", "sid_codebook", VECTOR_FIELD]


def _cli(s: Settings, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "sid", *args],
        env={**os.environ, **s.as_env()},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def _live_codebook(s: Settings) -> tuple[str, object]:
    async def go() -> tuple[str, object]:
        sink = MilvusSink.for_settings(s)
        await sink.start()
        try:
            version = (await Versions(sink, *s.registry()).read()).live
            return version.codebook, await Codebooks(sink).load(
                version.codebooks(), version.codebook
            ) if version.codebook else None
        finally:
            await sink.close()

    return asyncio.run(go())


def _recall(s: Settings, call: str, key: str, channel: str) -> list:
    async def go() -> list:
        sink = MilvusSink.for_settings(s)
        await sink.start()
        try:
            recall = Recall.for_settings(sink, s)
            if call == "user":
                return await recall.user_to_item(key, k=5, consistency="Strong", channel=channel)
            return await recall.item_to_item(key, k=5, consistency="Strong", channel=channel)
        finally:
            await sink.close()

    return asyncio.run(go())


def _embeddings(s: Settings, ids: set[str]) -> dict[str, object]:
    c = consumer(
        s.kafka_bootstrap,
        s.kafka_security(),
        s.topics().item_embeddings.name,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    try:
        return {e.item_id: e for e in (decode_item_embedding(r.value) for r in c) if e.item_id in ids}
    finally:
        c.close()


@on_both_backends
def test_semantic_ids_are_fitted_backfilled_assigned_fresh_kept_across_a_restart_and_recalled(
    stack: Stack, settings: Settings
) -> None:
    tag = f"sid{uuid.uuid4().hex[:6]}"
    s = settings.namespaced(tag).model_copy(update={"sid_levels": 2, "sid_codes": 8})
    ensure_topics(s.kafka_bootstrap, s.kafka_security(), [*s.topics().all(), s.changelog_topic()])
    ensure_collections(s.milvus_uri, s.milvus_token_value, [*s.collections(), s.registry()[0]], s.milvus_backend)
    items, users = s.collections()
    (port,) = free_ports(1)
    worker = start_worker(s, port, stack.state_dir / "workers")
    try:
        wait_for_group(s, [worker])
        older = [clip_upload(tag, n, cover=n % 2 == 0) for n in range(30)]
        send(s, [(s.topics().uploads.name, u.item_id.encode(), encode_upload(u)) for u in older])
        older_ids = [u.item_id for u in older]
        wait_until(lambda: len(milvus_rows(s, items.name, older_ids, ["item_id"])) == 30, what="the older items")
        assert {
            (r["sid_codes"], r["sid_suffix"], r["sid_codebook"])
            for r in milvus_rows(s, items.name, older_ids, SID_FIELDS).values()
        } == {("", -1, "")}
        with pytest.raises(RecallError, match="no codebook") as refused:
            _recall(s, "item", older_ids[0], "sid")
        assert refused.value.status == 409

        out = _cli(s, "fit")
        codebook_id, codebook = _live_codebook(s)
        assert codebook_id and codebook_id in out and codebook.centroids.shape == (2, 8, s.embedding_dim)  # type: ignore[attr-defined]
        assert codebook.health.items == 30  # type: ignore[attr-defined]

        out = _cli(s, "backfill")
        assert "30 items assigned" in out
        rows = milvus_rows(s, items.name, older_ids, SID_FIELDS)
        vectors = np.stack([np.asarray(rows[i][VECTOR_FIELD], dtype=np.float32) for i in older_ids])
        codes, _ = assign(codebook, vectors)  # type: ignore[arg-type]
        assert [rows[i]["sid_codes"] for i in older_ids] == [sid_text(c) for c in codes]
        assert {rows[i]["sid_codebook"] for i in older_ids} == {codebook_id}
        full = [(rows[i]["sid_codes"], rows[i]["sid_suffix"]) for i in older_ids]
        assert len(set(full)) == 30  # the suffix tells apart items sharing all codes
        for sid in {c for c, _ in full}:  # each bucket's suffixes are 0..n-1
            assert sorted(sfx for c, sfx in full if c == sid) == list(range(sum(1 for c, _ in full if c == sid)))
        assert "0 items assigned" in _cli(s, "backfill")  # once only

        fresh = [clip_upload(f"{tag}f", n) for n in range(5)]
        fresh_ids = [u.item_id for u in fresh]
        send(s, [(s.topics().uploads.name, u.item_id.encode(), encode_upload(u)) for u in fresh])
        seen: dict[str, dict] = {}

        def fresh_rows() -> bool:  # every row, from the first moment it is readable, carries its semantic ID
            for item_id, row in milvus_rows(s, items.name, fresh_ids, SID_FIELDS).items():
                assert row["sid_codebook"] == codebook_id and len(parse_sid(row["sid_codes"])) == 2 and row["sid_suffix"] >= 0, (
                    row
                )
                seen[item_id] = row
            return len(seen) == 5

        wait_until(fresh_rows, what="the fresh items")
        for row in seen.values():
            (expected,), _ = assign(codebook, np.asarray(row[VECTOR_FIELD], dtype=np.float32)[None, :])  # type: ignore[arg-type]
            assert row["sid_codes"] == sid_text(expected)
        published = _embeddings(s, set(fresh_ids))
        assert {i: (e.sid_codes, e.sid_suffix, e.sid_codebook) for i, e in published.items()} == {  # type: ignore[attr-defined]
            i: (r["sid_codes"], r["sid_suffix"], r["sid_codebook"]) for i, r in seen.items()
        }

        worker.stop()
        worker = start_worker(s, port, stack.state_dir / "workers")
        wait_for_group(s, [worker])
        twin = dataclasses.replace(
            fresh[0], item_id=f"{tag}-twin"
        )  # the same content under another id: the same vector, the same codes
        send(
            s,
            [
                (
                    s.topics().uploads.name,
                    fresh[0].item_id.encode(),
                    encode_upload(dataclasses.replace(fresh[0], created_at_ms=fresh[0].created_at_ms + 1)),
                ),
                (s.topics().uploads.name, twin.item_id.encode(), encode_upload(twin)),
            ],
        )
        wait_until(lambda: len(milvus_rows(s, items.name, [twin.item_id], ["item_id"])) == 1, what="the twin")
        wait_until(
            lambda: (
                milvus_rows(s, items.name, [fresh[0].item_id], ["created_at_ms"])[fresh[0].item_id]["created_at_ms"]
                == fresh[0].created_at_ms + 1
            ),
            what="the re-upload",
        )
        after = milvus_rows(s, items.name, [fresh[0].item_id, twin.item_id], SID_FIELDS)
        again, twin_row = after[fresh[0].item_id], after[twin.item_id]
        assert (again["sid_codes"], again["sid_suffix"]) == (
            seen[fresh[0].item_id]["sid_codes"],
            seen[fresh[0].item_id]["sid_suffix"],
        )  # stable
        assert twin_row["sid_codes"] == again["sid_codes"] and twin_row["sid_suffix"] not in {again["sid_suffix"]}
        bucket = [
            sfx
            for c, sfx in [
                (r["sid_codes"], r["sid_suffix"])
                for r in milvus_rows(s, items.name, [*older_ids, *fresh_ids, twin.item_id], SID_FIELDS).values()
            ]
            if c == twin_row["sid_codes"]
        ]
        assert len(bucket) == len(set(bucket))  # no two items of a bucket share a suffix

        user = f"{tag}-user"
        liked = older_ids[:3]
        send(
            s,
            [
                (
                    s.topics().interactions.name,
                    user.encode(),
                    encode_interaction(Interaction(f"{tag}-e{k}", user, item, Action.LIKE, 1_700_000_000_000 + k)),
                )
                for k, item in enumerate(liked)
            ],
        )
        wait_until(
            lambda: (
                milvus_rows(s, users.name, [user_key(user, 0)], ["event_count"]).get(user_key(user, 0), {}).get("event_count")
                == 3
            ),
            what="the user",
        )
        positives = milvus_rows(s, users.name, [user_key(user, 0)], ["positive_item_ids"])[user_key(user, 0)]["positive_item_ids"]
        assert positives.split(",") == liked[::-1]  # newest first
        by_sid = _recall(s, "user", user, "sid")
        liked_codes = {parse_sid(rows[i]["sid_codes"])[0] for i in liked}
        assert by_sid and all(r.channel == "sid" and r.item_id not in liked for r in by_sid)
        all_rows = milvus_rows(s, items.name, [r.item_id for r in by_sid], ["sid_codes"])
        assert all(
            parse_sid(all_rows[r.item_id]["sid_codes"])[0] in liked_codes for r in by_sid
        )  # each shares a first code with a positive
        assert [r.score for r in by_sid] == sorted((r.score for r in by_sid), reverse=True)
        mixed = _recall(s, "user", user, "mixed")
        dense = _recall(s, "user", user, "dense")
        assert len(mixed) == 5 and {r.channel for r in mixed} <= {"dense", "sid", "dense+sid"}
        assert {r.item_id for r in mixed} <= {r.item_id for r in dense} | {r.item_id for r in _recall(s, "user", user, "sid")}
        similar = _recall(s, "item", older_ids[0], "sid")
        assert similar and older_ids[0] not in {r.item_id for r in similar}
    finally:
        worker.stop()
