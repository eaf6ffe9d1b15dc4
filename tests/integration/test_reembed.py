"""The re-embed (issue 17) on the real stack.

- The backfill: every item of the item-content topic re-encoded through Triton into the shadow items
  collection of the target's version, then every user's vectors recomputed from the table's changelog
  into the shadow users collection; a run stopped halfway is resumed by the next one without encoding
  again what was committed (the CLI killed with SIGKILL after its first commits).
- The swap, with a worker running and a second Triton serving another model: recall sees only the old
  version while the new one is built, only the new one after the swap, and the worker encodes fresh
  uploads with the new model into the new collections; a rollback brings the old version up to date
  and swaps back; retiring drops the version rolled back from.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
import uuid

import numpy as np
import pytest

from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from encoders.client import EncoderClient
from streams.interest.maths import InterestParams, fold_interactions, interest_vectors
from streams.lifecycle.reembed import Backfill, Counts, reembed, retire, rollback
from streams.lifecycle.registry import Versions
from streams.recall.query import Recall, Recalled
from streams.sinks.kafka import ensure_topics, partition_offsets
from streams.sinks.milvus import MilvusSink, check_milvus, ensure_collections
from streams.worker.content import inline_request
from tests.support.stack import on_both_backends
from tests.support.streaming import clip_upload, milvus_rows, send, wait_until
from topology.codec import encode_interaction, encode_interest_state, encode_upload
from topology.collections import VECTOR_FIELD, user_key
from topology.messages import Action, Interaction
from topology.settings import Settings
from topology.topics import table_changelog
from topology.versions import Registry, Version, version_slug

pytestmark = pytest.mark.integration


def _run(s: Settings) -> tuple[Backfill, list[str]]:
    lines: list[str] = []

    async def go() -> Backfill:
        target = EncoderClient.for_settings(s)
        await target.start()
        try:
            return await reembed(s, target, max_rate=0, batch=8, progress=lines.append, swap=False)
        finally:
            await target.close()

    return asyncio.run(go()), lines


def test_a_backfill_killed_halfway_resumes_and_every_item_and_user_gets_the_new_vectors(settings: Settings) -> None:
    tag = f"re{uuid.uuid4().hex[:6]}"
    s = settings.namespaced(tag)
    ensure_topics(s.kafka_bootstrap, s.kafka_security(), [*s.topics().all(), s.changelog_topic()])
    ensure_collections(s.milvus_uri, s.milvus_token_value, s.collections(), s.milvus_backend)
    uploads = [clip_upload(tag, n, cover=n % 3 == 0) for n in range(40)]
    ids = [u.item_id for u in uploads]
    # item-content and the table's changelog as the workers leave them (test_streaming checks that they do)
    send(s, [(s.topics().item_content.name, u.item_id.encode(), encode_upload(u)) for u in uploads])
    params = InterestParams.for_settings(s)
    rng = np.random.default_rng(11)
    log = [
        Interaction(
            f"{tag}-e{u}-{k}",
            f"{tag}-user-{u}",
            ids[int(rng.integers(len(ids)))],
            [Action.LIKE, Action.VIEW, Action.SKIP][k % 3],
            1_700_000_000_000 + 1000 * k + u,
            dwell_ms=6000,
        )
        for u in range(6)
        for k in range(9)
    ]
    states = {user: fold_interactions([e for e in log if e.user_id == user], params) for user in sorted({e.user_id for e in log})}
    older = {
        user: fold_interactions([e for e in log if e.user_id == user][:4], params) for user in states
    }  # superseded on the changelog
    changelog = [
        (table_changelog(tag), user.encode(), encode_interest_state(state)) for user, state in (*older.items(), *states.items())
    ]
    send(s, changelog)

    # the live version is another model's (the stack's encoder is the target here)
    asyncio.run(
        _write_registry(s, Registry(Version("sail-older-0", s.collections()[0].name, s.collections()[1].name, s.embedding_dim)))
    )
    version = asyncio.run(_model_version(s))
    group = f"{tag}.reembed.{version_slug(version)}"

    def committed() -> int:
        return sum(
            c for c, _ in partition_offsets(s.kafka_bootstrap, s.kafka_security(), group, s.topics().item_content.name).values()
        )

    cli = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "reembed", "--to-url", s.triton_url, "--no-swap", "--max-rate", "4", "--batch", "8"],
        env={**os.environ, **s.as_env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: committed() >= 8, timeout_s=60, what="the re-embed's first commits")
    finally:
        cli.kill()  # SIGKILL halfway: 4 items/s leaves most of the 40 to do
        cli.wait()
    done = committed()
    assert 8 <= done < 40 and done % 8 == 0
    second, lines = _run(s)
    assert second.model_version == version and second.items_collection.startswith(f"{s.milvus_collection_prefix}items__")
    assert (second.items.total, second.items.already_done, second.items.processed, second.encoded) == (
        40,
        done,
        40 - done,
        40 - done,
    )  # nothing committed encoded again
    assert not second.refused and any(f"{done} done by an earlier run" in line for line in lines)
    assert second.users is not None and (second.users.total, second.users.processed) == (12, 12)
    assert 6 <= second.users_written <= 12  # each batch's newest state per user (the vectors below are the check)
    assert second.counts == Counts(live_items=0, new_items=40, live_users=0, new_users=6)  # no worker wrote the live ones here
    assert second.swap is None and second.not_swapped == "asked not to swap"
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
    shadow_users = milvus_rows(
        s, second.users_collection, [user_key(u, 0) for u in states], [VECTOR_FIELD, "model_version", "event_count", "user_id"]
    )
    assert len(shadow_users) == len(states)
    for row in shadow_users.values():  # the newest state of each user, by the worker's maths, over the new item vectors
        expected = interest_vectors(states[row["user_id"]], vectors, params)
        assert expected is not None
        np.testing.assert_allclose(np.asarray(row[VECTOR_FIELD], dtype=np.float32), expected[0], atol=1e-5)
        assert (row["model_version"], row["event_count"]) == (
            second.model_version,
            len([e for e in log if e.user_id == row["user_id"]]),
        )


async def _write_registry(s: Settings, registry: Registry) -> None:
    spec, default = s.registry()
    ensure_collections(s.milvus_uri, s.milvus_token_value, [spec], s.milvus_backend)
    sink = MilvusSink.for_settings(s)
    await sink.start()
    try:
        await Versions(sink, spec, default).write(registry)
    finally:
        await sink.close()


async def _model_version(s: Settings) -> str:
    client = EncoderClient.for_settings(s)
    await client.start()
    try:
        (probe,) = await client.encode([inline_request(clip_upload("probe", 0))])
        return probe.model_version
    finally:
        await client.close()


def _worker_live(port: int) -> str:
    """The live model version on the worker's status page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5) as response:
        return str(json.load(response)["model_versions"]["live"]["model_version"])


def _recall(s: Settings, user: str, item: str) -> tuple[list[Recalled], list[Recalled]]:
    """User-to-item and item-to-item through a fresh `Recall` (it reads the registry on its first request)."""

    async def go() -> tuple[list[Recalled], list[Recalled]]:
        sink = MilvusSink.for_settings(s)
        await sink.start()
        try:
            recall = Recall.for_settings(sink, s)
            return await recall.user_to_item(user, k=5, consistency="Strong"), await recall.item_to_item(
                item, k=5, consistency="Strong"
            )
        finally:
            await sink.close()

    return asyncio.run(go())


def _versions(results: tuple[list[Recalled], list[Recalled]]) -> set[str]:
    """Every model version in the answers: the items' and the query vectors' (the user's, the query item's)."""
    assert results[0] and results[1]
    return {v for rs in results for r in rs for v in (r.model_version, r.query_model_version)}


@on_both_backends
def test_a_swap_moves_the_worker_and_recall_to_the_new_version_in_one_step_and_a_rollback_moves_them_back(
    stack: Stack, settings: Settings
) -> None:
    tag = f"sw{uuid.uuid4().hex[:6]}"
    s = settings.namespaced(tag)
    ensure_topics(s.kafka_bootstrap, s.kafka_security(), [*s.topics().all(), s.changelog_topic()])
    ensure_collections(s.milvus_uri, s.milvus_token_value, s.collections(), s.milvus_backend)
    grpc, http, metrics = free_ports(3)  # a second Triton serving another model: the new version
    new_settings = s.model_copy(
        update={
            "encoder": "sail-tiny",
            "triton_url": f"grpc://127.0.0.1:{grpc}",
            "triton_http_port": http,
            "triton_metrics_port": metrics,
            "state_dir": stack.state_dir / f"triton-{tag}",
        }
    )
    target_triton = Stack(new_settings)
    (port,) = free_ports(1)
    worker = start_worker(s, port, stack.state_dir / "workers")
    try:
        target_triton.up(["triton"])
        wait_for_group(s, [worker])
        uploads = [clip_upload(tag, n, cover=n % 2 == 0) for n in range(10)]
        ids = [u.item_id for u in uploads]
        send(s, [(s.topics().uploads.name, i.encode(), encode_upload(u)) for i, u in zip(ids, uploads)])
        users = [f"{tag}-user-{u}" for u in range(3)]
        log = [
            Interaction(f"{tag}-e{u}-{k}", users[u], ids[(3 * u + k) % len(ids)], Action.LIKE, 1_700_000_000_000 + 1000 * k)
            for u in range(3)
            for k in range(4)
        ]
        send(s, [(s.topics().interactions.name, e.user_id.encode(), encode_interaction(e)) for e in log])
        live_items, live_users = s.collections()
        wait_until(
            lambda: len(milvus_rows(s, live_users.name, [user_key(u, 0) for u in users], ["event_count"])) == 3,
            what="the live users",
        )
        old = {r["model_version"] for r in milvus_rows(s, live_items.name, ids, ["model_version"]).values()}
        assert len(old) == 1 and "" not in old
        (old_version,) = old
        live_user_versions = {
            r["model_version"]
            for r in milvus_rows(s, live_users.name, [user_key(u, 0) for u in users], ["model_version"]).values()
        }
        assert live_user_versions == {old_version}  # before any registry row: named after the items folded in

        def run(swap: bool) -> Backfill:
            async def go() -> Backfill:
                target, live = EncoderClient.for_settings(new_settings), EncoderClient.for_settings(s)
                await target.start()
                await live.start()
                try:
                    return await reembed(
                        s,
                        target,
                        max_rate=0,
                        batch=8,
                        progress=lambda line: None,
                        target_url=new_settings.triton_url,
                        swap=swap,
                        grace_s=1.5,
                        keep_s=3600,
                        live_encoder=live,
                    )
                finally:
                    await target.close()
                    await live.close()

            return asyncio.run(go())

        built = run(swap=False)  # the new version built and registered as the shadow, not live
        new_version = built.model_version
        assert new_version != old_version and built.swap is None and built.counts is not None and built.counts.complete
        assert _versions(_recall(s, users[0], ids[0])) == {old_version}  # recall while the new version exists: the old one only
        swapped = run(swap=True)  # resumes: nothing to backfill again; counts, swaps
        assert (
            swapped.encoded == 0
            and swapped.swap is not None
            and (swapped.swap.from_version, swapped.swap.to_version) == (old_version, new_version)
        )
        assert _versions(_recall(s, users[0], ids[0])) == {new_version}
        new_items, new_users = built.items_collection, built.users_collection

        wait_until(
            lambda: _worker_live(port) == new_version, timeout_s=10, what="the worker to read the swap"
        )  # within SAIL_VERSION_REFRESH_S
        fresh = clip_upload(tag, 99)  # after the swap: the worker encodes it with the new model into the new collections
        send(s, [(s.topics().uploads.name, fresh.item_id.encode(), encode_upload(fresh))])
        wait_until(
            lambda: fresh.item_id in milvus_rows(s, new_items, [fresh.item_id], ["item_id"]),
            what="the fresh upload in the new version",
        )
        assert milvus_rows(s, new_items, [fresh.item_id], ["model_version"])[fresh.item_id]["model_version"] == new_version
        assert fresh.item_id not in milvus_rows(s, live_items.name, [fresh.item_id], ["item_id"])
        liked = Interaction(f"{tag}-fresh-like", users[0], fresh.item_id, Action.LIKE, 1_700_000_100_000)
        send(s, [(s.topics().interactions.name, users[0].encode(), encode_interaction(liked))])
        wait_until(
            lambda: (
                milvus_rows(s, new_users, [user_key(users[0], 0)], ["event_count"])[user_key(users[0], 0)]["event_count"] == 5
            ),
            what="the user's vector in the new version after a like",
        )
        assert (
            milvus_rows(s, new_users, [user_key(users[0], 0)], ["model_version"])[user_key(users[0], 0)]["model_version"]
            == new_version
        )

        def old_encoder(version: Version) -> EncoderClient:
            assert version.model_version == old_version and version.triton_url == ""  # the workers' own Triton
            return EncoderClient.for_settings(s)

        back = asyncio.run(rollback(s, old_encoder, progress=lambda line: None, grace_s=1.0, batch=8))
        assert (back.from_version, back.to_version) == (new_version, old_version)
        assert (
            milvus_rows(s, live_items.name, [fresh.item_id], ["model_version"])[fresh.item_id]["model_version"] == old_version
        )  # caught up from the swap
        assert (
            milvus_rows(s, live_users.name, [user_key(users[0], 0)], ["event_count"])[user_key(users[0], 0)]["event_count"] == 5
        )
        assert _versions(_recall(s, users[0], fresh.item_id)) == {
            old_version
        }  # a fresh Recall reads the registry at its first request

        with pytest.raises(RuntimeError, match="kept for a rollback"):
            asyncio.run(retire(s, progress=lambda line: None))
        assert sorted(asyncio.run(retire(s, progress=lambda line: None, force=True))) == sorted([new_items, new_users])
        assert not {new_items, new_users} & set(check_milvus(s.milvus_uri, s.milvus_token_value))
    finally:
        worker.stop()
        target_triton.down(["triton"])
