"""Milvus Lite served on loopback: collections from the specs, upsert, get by key, search."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streams.sinks.milvus import (
    MilvusSink,
    MilvusUnavailable,
    SchemaMismatch,
    check_milvus,
    drop_collections,
    ensure_collections,
    timed_calls,
)
from topology.collections import VECTOR_FIELD, FieldSpec, item_row, user_key, user_row
from topology.settings import Settings

pytestmark = pytest.mark.integration


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
async def sink(settings: Settings):
    s = MilvusSink(settings.milvus_uri, None, settings.milvus_backend)
    await s.start()
    yield s
    await s.close()


def test_stack_created_both_collections_and_again_creates_nothing(settings: Settings) -> None:
    items, users = settings.collections()
    assert {items.name, users.name} <= set(check_milvus(settings.milvus_uri, None))
    assert ensure_collections(settings.milvus_uri, None, settings.collections(), settings.milvus_backend) == []


def test_existing_collection_with_another_width_is_a_clear_error(settings: Settings) -> None:
    items, _ = settings.collections()
    wider = dataclasses.replace(
        items, fields=tuple(dataclasses.replace(f, dim=f.dim * 2) if f.name == VECTOR_FIELD else f for f in items.fields)
    )
    with pytest.raises(SchemaMismatch, match=f"stores dim={items.dim} vectors but the settings say {items.dim * 2}"):
        ensure_collections(settings.milvus_uri, None, [wider], settings.milvus_backend)


def test_a_collection_made_before_the_semantic_id_fields_is_refused_with_what_to_do(settings: Settings) -> None:
    items, _ = settings.collections()
    older = dataclasses.replace(
        items, name=f"{items.name}_before_sid", fields=tuple(f for f in items.fields if not f.name.startswith("sid_"))
    )
    ensure_collections(settings.milvus_uri, None, [older], settings.milvus_backend)
    with pytest.raises(
        SchemaMismatch,
        match=r"has no field sid_codes, sid_suffix, sid_codebook: it was created by an older sail-stream.*sail-stream reembed",
    ):
        ensure_collections(settings.milvus_uri, None, [dataclasses.replace(items, name=older.name)], settings.milvus_backend)


async def test_upserted_items_are_got_by_key_and_found_by_similarity(settings: Settings, sink: MilvusSink) -> None:
    items, _ = settings.collections()
    rng = np.random.default_rng(7)
    vectors = _unit(rng, 50, items.dim)
    rows = [item_row(f"m-{i}", f"c{i % 5}", 1000 + i, 2000 + i, "probe-v1", vectors[i]) for i in range(50)]
    assert await sink.upsert(items.name, rows) == 50

    got = await sink.get(items.name, ["m-3", "m-42"], fields=["creator_id", "created_at_ms", VECTOR_FIELD])
    by_id = {row["item_id"]: row for row in got}
    assert by_id["m-3"]["creator_id"] == "c3" and by_id["m-42"]["created_at_ms"] == 1042
    np.testing.assert_allclose(np.asarray(by_id["m-42"][VECTOR_FIELD], dtype=np.float32), vectors[42], atol=1e-6)

    # Read-your-writes: the just-upserted item is its own nearest neighbour at Strong consistency.
    hits = await sink.search(
        items.name, vectors[[10, 20]], limit=3, vector_field=VECTOR_FIELD, output_fields=["creator_id"], consistency="Strong"
    )
    assert [h[0].id for h in hits] == ["m-10", "m-20"]
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0][0].fields["creator_id"] == "c0"

    # Filters the recall side will use: fresh-only and exclude-creator.
    filtered = await sink.search(
        items.name,
        vectors[[10]],
        limit=50,
        vector_field=VECTOR_FIELD,
        filter_expr='created_at_ms >= 1030 and created_at_ms < 1050 and creator_id != "c1"',
        output_fields=["creator_id", "created_at_ms"],
        consistency="Strong",
    )
    # (the upper bound keeps other tests' items, which share the collection, out of the count)
    assert filtered[0] and all(1030 <= h.fields["created_at_ms"] < 1050 and h.fields["creator_id"] != "c1" for h in filtered[0])
    assert len(filtered[0]) == 16  # items 30..49 minus the four of creator c1


async def test_replayed_upsert_overwrites_instead_of_duplicating(settings: Settings, sink: MilvusSink) -> None:
    _, users = settings.collections()
    rng = np.random.default_rng(3)
    first, second = _unit(rng, 2, users.dim)
    row = user_row("u1", 0, 1, 1, "i1,i2", "v", first)
    await sink.upsert(users.name, [row])
    await sink.upsert(users.name, [row])
    await sink.upsert(users.name, [{**row, "event_count": 2, VECTOR_FIELD: second.tolist()}])
    got = await sink.get(users.name, [user_key("u1", 0)], fields=["event_count", VECTOR_FIELD])
    assert len(got) == 1 and got[0]["event_count"] == 2
    np.testing.assert_allclose(np.asarray(got[0][VECTOR_FIELD], dtype=np.float32), second, atol=1e-6)


async def test_unreachable_milvus_raises_milvus_unavailable() -> None:
    from deploy.local.stack import free_ports

    (port,) = free_ports(1)
    with pytest.raises(MilvusUnavailable, match=f"127.0.0.1:{port}"):
        check_milvus(f"http://127.0.0.1:{port}", None, timeout_s=1.0)


async def test_the_schema_is_described_once_and_described_again_when_the_collection_is_made_again(
    settings: Settings, sink: MilvusSink
) -> None:
    """The sink gives pymilvus the collection's schema it read once (pymilvus would describe the collection
    before every upsert, get and delete); when the collection is dropped and made again with other fields,
    the kept schema is stale: the refused upsert is sent once more with the schema read again."""
    _, users = settings.collections()
    spec = dataclasses.replace(users, name=f"{users.name}_schema_kept")
    ensure_collections(settings.milvus_uri, None, [spec], settings.milvus_backend)
    rng = np.random.default_rng(5)
    rows = [user_row(f"u{n}", 0, 1, 1, "i1", "v", v) for n, v in enumerate(_unit(rng, 3, spec.dim))]
    with timed_calls() as calls:
        await sink.upsert(spec.name, rows[:1])
        await sink.upsert(spec.name, rows[1:])
        got = await sink.get(spec.name, [user_key("u0", 0), user_key("u2", 0), 'it\'s "quoted"'], fields=["user_id"])
        await sink.delete(spec.name, [user_key("u1", 0)])
    assert [op for op, _ in calls] == ["describe", "upsert", "upsert", "get", "delete"]
    assert sorted(row["user_id"] for row in got) == ["u0", "u2"]
    assert [row["user_id"] for row in await sink.get(spec.name, [user_key("u1", 0)], fields=["user_id"])] == []

    # made again with one field more: the kept schema packs rows without it, which Milvus refuses
    drop_collections(settings.milvus_uri, None, [spec.name])
    extra = FieldSpec("note", "varchar", max_length=16)
    wider = dataclasses.replace(spec, fields=(*spec.fields, extra))
    ensure_collections(settings.milvus_uri, None, [wider], settings.milvus_backend)
    with timed_calls() as calls:
        assert await sink.upsert(spec.name, [{**rows[0], "note": "again"}]) == 1
    assert [op for op, _ in calls] == ["upsert", "describe", "upsert"]
    got = await sink.get(spec.name, [user_key("u0", 0)], fields=["note"])
    assert [row["note"] for row in got] == ["again"]
    drop_collections(settings.milvus_uri, None, [spec.name])
