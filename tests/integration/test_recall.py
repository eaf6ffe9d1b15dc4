"""Recall over real Milvus: read-your-writes, filters, exclusions, the HTTP API with its client, and the
refusal of a query vector of another model version than the items it would search (issue 30)."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
from aiohttp import web

from deploy.local.stack import free_ports
from streams.interest.maths import l2_normalise
from streams.lifecycle.registry import Versions
from streams.recall.api import recall_app
from streams.recall.client import RecallClient
from streams.recall.query import VERSION_MISMATCH, Recall, RecallError, VersionMismatch
from streams.sinks.milvus import MilvusSink, ensure_collections
from tests.support.stack import on_both_backends
from topology.collections import VECTOR_FIELD, item_row, user_row
from topology.settings import Settings
from topology.versions import Registry, Version

pytestmark = pytest.mark.integration


@pytest.fixture
async def world(settings: Settings):
    """Twelve items in two clusters and one user who has seen two of them."""
    sink = MilvusSink(settings.milvus_uri, None, settings.milvus_backend)
    await sink.start()
    items, users = settings.collections()
    tag = uuid.uuid4().hex[:6]
    rng = np.random.default_rng(int(tag, 16))
    dim = items.dim
    axis = l2_normalise(rng.standard_normal((2, dim)).astype(np.float32))  # random centres: other tests' items are far away
    # Noise of norm ~0.3 keeps a cluster tight (cosine ~0.9 within, ~0.05 to anything else). Per-coordinate noise of
    # 0.1 had norm ~2 at dim 384: cosine ~0.2 within a cluster, and 1 in ~60 runs another test's item ranked above one.
    noise = 0.3 / np.sqrt(dim)
    vectors = l2_normalise(
        np.concatenate([axis[0] + noise * rng.standard_normal((6, dim)), axis[1] + noise * rng.standard_normal((6, dim))]).astype(
            np.float32
        )
    )
    ids = [f"{tag}-i{n}" for n in range(12)]
    rows = [item_row(ids[n], f"{tag}-c{n % 3}", 1000 + n, 2000 + n, "v", vectors[n]) for n in range(12)]
    await sink.upsert(items.name, rows)
    user = f"{tag}-user"
    await sink.upsert(users.name, [user_row(user, 0, 1, 2, f"{ids[0]},{ids[1]}", "v", l2_normalise(vectors[0] + vectors[1]))])
    yield sink, Recall(sink, items, users, slots=1), ids, user, tag
    await sink.close()


@on_both_backends
async def test_an_item_upserted_a_moment_ago_is_recalled_at_strong_consistency(world) -> None:
    _, recall, ids, _, _ = world
    similar = await recall.item_to_item(ids[2], k=3, consistency="Strong")
    assert len(similar) == 3 and ids[2] not in [r.item_id for r in similar]
    assert {r.item_id for r in similar} <= set(ids[:6])  # its own cluster


@on_both_backends
async def test_user_recall_leaves_out_seen_items_and_applies_filters(world) -> None:
    _, recall, ids, user, tag = world
    top = await recall.user_to_item(user, k=4, consistency="Strong")
    got = [r.item_id for r in top]
    assert ids[0] not in got and ids[1] not in got  # in the user's recent history
    assert set(got) <= set(ids[2:6])
    fresh = await recall.user_to_item(
        user, k=20, created_after_ms=1004, exclude_creator=f"{tag}-c2", exclude_items=[ids[4]], consistency="Strong"
    )
    assert fresh and all(r.created_at_ms >= 1004 and r.creator_id != f"{tag}-c2" and r.item_id != ids[4] for r in fresh)


@on_both_backends
async def test_items_of_another_version_in_the_same_collection_are_never_searched(world, settings: Settings) -> None:
    """Without a registry, an encoder changed without a re-embed writes its version into the same
    collection: recall searches only the query vector's version, so it answers (no 409) and never mixes."""
    sink, recall, ids, user, tag = world
    items, _ = settings.collections()
    near = await sink.get(items.name, [ids[2]], [VECTOR_FIELD])
    other = [item_row(f"{tag}-other{n}", f"{tag}-c9", 1000, 2000, "other-version", near[0][VECTOR_FIELD]) for n in range(3)]
    await sink.upsert(items.name, other)
    top = await recall.user_to_item(user, k=8, consistency="Strong")
    assert top and {r.model_version for r in top} == {"v"} and {r.query_model_version for r in top} == {"v"}
    similar = await recall.item_to_item(ids[2], k=8, consistency="Strong")
    assert similar and not any(r.item_id.startswith(f"{tag}-other") for r in similar)


async def test_unknown_ids_and_bad_parameters_are_clear_errors(world, settings: Settings) -> None:
    _, recall, ids, _, _ = world
    with pytest.raises(RecallError, match="no interest vector for user"):
        await recall.user_to_item("nobody", consistency="Strong")
    with pytest.raises(RecallError, match="stores only the full"):
        await recall.item_to_item(ids[0], dim=settings.embedding_dim // 2)
    with pytest.raises(RecallError, match="k must be"):
        await recall.item_to_item(ids[0], k=0)


@on_both_backends
async def test_http_api_and_client(world) -> None:
    _, recall, ids, user, _ = world
    runner = web.AppRunner(recall_app(recall))
    await runner.setup()
    (port,) = free_ports(1)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        client = RecallClient(f"http://127.0.0.1:{port}")
        direct = await recall.user_to_item(user, k=3, consistency="Strong")
        over_http = await asyncio.to_thread(client.user_items, user, 3, consistency="Strong")
        assert over_http == direct
        timing = client.last_timing  # the answer's Server-Timing: Milvus's time per operation and the request's
        assert {"milvus-get", "milvus-search", "total"} <= set(timing), timing
        assert timing["total"] >= max(timing["milvus-get"], timing["milvus-search"]) > 0
        similar = await asyncio.to_thread(client.similar_items, ids[7], 2, consistency="Strong", created_after_ms=1000)
        assert len(similar) == 2 and all(r.item_id in ids[6:] for r in similar)
        with pytest.raises(RecallError, match="no embedding for item") as info:
            await asyncio.to_thread(client.similar_items, "missing-item")
        assert info.value.status == 404
    finally:
        await runner.cleanup()


@on_both_backends
async def test_a_user_vector_of_another_model_version_is_refused_with_409_and_a_consistent_one_served(
    settings: Settings,
) -> None:
    """A deliberately mixed setup: the registry names v2 live, its items are all v2 (so the items-only
    check of bench.reembed before issue 30 saw one version), and one user's row in v2's users collection
    holds a vector of v1 (a users row written from an old-version vector)."""
    tag = f"mv{uuid.uuid4().hex[:6]}"
    s = settings.namespaced(tag)
    items, users = s.collections()
    registry_spec, _ = s.registry()
    await asyncio.to_thread(
        ensure_collections, s.milvus_uri, s.milvus_token_value, [*s.stored_collections(), registry_spec], s.milvus_backend
    )
    sink = MilvusSink.for_settings(s)
    await sink.start()
    runner = None
    try:
        await Versions(sink, *s.registry()).write(Registry(live=Version("v2", items.name, users.name, items.dim)))
        rng = np.random.default_rng(7)
        vectors = l2_normalise(rng.standard_normal((6, items.dim)).astype(np.float32))
        ids = [f"{tag}-i{n}" for n in range(6)]
        await sink.upsert(items.name, [item_row(ids[n], "c", 1000 + n, 2000 + n, "v2", vectors[n]) for n in range(6)])
        await sink.upsert(
            users.name,
            [
                user_row(f"{tag}-fresh", 0, 1, 1, ids[0], "v2", vectors[0]),
                user_row(f"{tag}-stale", 0, 1, 1, ids[0], "v1", vectors[0]),
            ],
        )
        recall = Recall.for_settings(sink, s)  # reads the registry, as the API does

        served = await recall.user_to_item(f"{tag}-fresh", k=3, consistency="Strong")
        assert len(served) == 3 and {(r.model_version, r.query_model_version) for r in served} == {("v2", "v2")}
        with pytest.raises(VersionMismatch, match="model version mismatch") as refused:
            await recall.user_to_item(f"{tag}-stale", k=3, consistency="Strong")
        assert (refused.value.status, refused.value.reason) == (409, VERSION_MISMATCH)
        assert (refused.value.query_model_version, refused.value.model_version) == ("v1", "v2")
        similar = await recall.item_to_item(ids[0], k=2, consistency="Strong")  # the query item's own row is v2 too
        assert len(similar) == 2 and {(r.model_version, r.query_model_version) for r in similar} == {("v2", "v2")}

        runner = web.AppRunner(recall_app(recall))
        await runner.setup()
        (port,) = free_ports(1)
        await web.TCPSite(runner, "127.0.0.1", port).start()
        client = RecallClient(f"http://127.0.0.1:{port}")
        over_http = await asyncio.to_thread(client.user_items, f"{tag}-fresh", 3, consistency="Strong")
        assert over_http == served  # query_model_version travels with each item
        with pytest.raises(VersionMismatch) as refused_over_http:
            await asyncio.to_thread(client.user_items, f"{tag}-stale", 3, consistency="Strong")
        got = refused_over_http.value
        assert (got.status, got.reason, got.query_model_version, got.model_version) == (409, VERSION_MISMATCH, "v1", "v2")
    finally:
        if runner is not None:
            await runner.cleanup()
        await sink.close()


def test_recall_command_line(world, settings: Settings) -> None:
    import json
    import os
    import subprocess
    import sys

    _, _, ids, user, _ = world
    env = {**os.environ, **settings.as_env()}
    command = [sys.executable, "-m", "deploy.cli", "recall", "user"]
    done = subprocess.run(
        [*command, user, "-k", "2", "--consistency", "Strong", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert len(got) == 2 and all(r["item_id"] in ids[2:6] for r in got)
    missing = subprocess.run(
        [*command, "nobody", "--consistency", "Strong"], env=env, capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 1 and "no interest vector" in missing.stderr
