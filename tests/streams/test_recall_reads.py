"""Recall's reads of a user's or an item's vector (pure, fake sinks): read again while a row is missing, and
refused when the query vector's model version is not the items' (issue 30)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streams.recall.query import VERSION_MISMATCH, Recall, RecallError, VersionMismatch
from streams.sinks.milvus import Hit
from topology.settings import Settings


class RacingSink:
    """Misses the row on its first `misses` gets, as Milvus Lite does when a get races an upsert of the key."""

    def __init__(self, misses: int) -> None:
        self.misses, self.gets = misses, 0
        self.levels: list[str] = []  # the consistency of each get

    async def get(self, collection: str, ids: list[str], fields: list[str], consistency: str = "Strong") -> list[dict[str, Any]]:
        self.gets += 1
        self.levels.append(consistency)
        if self.gets <= self.misses:
            return []
        return [
            {
                "user_key": i,
                "item_id": i,
                "embedding": np.eye(8, dtype=np.float32)[0].tolist(),
                "recent_item_ids": "",
                "model_version": "m",
            }
            for i in ids
        ]

    async def search(self, collection: str, vectors: Any, **kwargs: Any) -> list[list[Hit]]:
        return [[Hit("i-2", 0.9, {"creator_id": "c", "created_at_ms": 1, "model_version": "m"})]]


def _recall(sink: RacingSink) -> Recall:
    items, users = Settings(state_dir=Path("/tmp"), embedding_dim=8).collections()
    return Recall(sink, items, users, slots=1)  # type: ignore[arg-type]


def test_a_row_missed_by_a_read_racing_its_upsert_is_read_again_and_a_missing_one_is_still_a_404() -> None:
    sink = RacingSink(misses=2)
    (hit,) = asyncio.run(_recall(sink).user_to_item("u"))
    assert (hit.item_id, hit.model_version, hit.query_model_version, sink.gets) == ("i-2", "m", "m", 3)
    # read first at the request's level (Bounded by default: no wait for the server's time tick), then, for a
    # row that was not there yet, at Strong
    assert sink.levels == ["Bounded", "Strong", "Strong"]
    sink = RacingSink(misses=0)
    asyncio.run(_recall(sink).user_to_item("u", consistency="Session"))
    assert sink.levels == ["Session"]
    sink = RacingSink(misses=2)
    assert [r.item_id for r in asyncio.run(_recall(sink).item_to_item("i-1"))] == ["i-2"]
    with pytest.raises(RecallError, match="no interest vector"):
        asyncio.run(_recall(RacingSink(misses=10)).user_to_item("u"))


class SidSink:
    """Items with semantic IDs, answering the sid channel's prefix queries as Milvus would (like / in)."""

    def __init__(self, items: dict[str, str]) -> None:
        self.items = items  # item_id -> sid_codes
        self.queries: list[str] = []

    async def get(self, collection: str, ids: list[str], fields: list[str], consistency: str = "Strong") -> list[dict[str, Any]]:
        if collection.endswith("users"):
            return [
                {
                    "user_key": "u#0",
                    "embedding": np.eye(8, dtype=np.float32)[0].tolist(),
                    "recent_item_ids": "a,x",
                    "positive_item_ids": "a",
                    "model_version": "m",
                }
            ]
        return [
            {"item_id": i, "sid_codes": self.items[i], "sid_codebook": "cb", "model_version": "m"} for i in ids if i in self.items
        ]

    async def query(
        self, collection: str, filter_expr: str, fields: list[str], limit: int, consistency: str
    ) -> list[dict[str, Any]]:
        import re

        self.queries.append(filter_expr)
        prefixes = re.findall(r'sid_codes like "([0-9.]+)%"', filter_expr)
        exact = re.findall(r'"([0-9.]+)"', filter_expr.split("sid_codes in")[1]) if "sid_codes in" in filter_expr else []
        seen = (
            re.findall(r'"([a-z])"', filter_expr.split("item_id not in")[1].split("]")[0])
            if "item_id not in" in filter_expr
            else []
        )
        return [
            {"item_id": i, "sid_codes": c, "creator_id": "c", "created_at_ms": n, "model_version": "m"}
            for n, (i, c) in enumerate(self.items.items())
            if i not in seen and (any(c.startswith(p) for p in prefixes) or c in exact)
        ][:limit]

    async def search(self, collection: str, vectors: Any, **kwargs: Any) -> list[list[Hit]]:
        return [
            [
                Hit("d", 0.9, {"creator_id": "c", "created_at_ms": 1, "model_version": "m"}),
                Hit("b", 0.8, {"creator_id": "c", "created_at_ms": 1, "model_version": "m"}),
            ]
        ]


class Live:
    def __init__(self, codebook: str, model_version: str = "m") -> None:
        from topology.versions import Registry, Version

        self.registry = Registry(Version(model_version, "items", "users", 8, codebook=codebook))

    async def latest(self) -> Any:
        return self.registry


def _sid_recall(sink: SidSink, codebook: str = "cb") -> Recall:
    items, users = Settings(state_dir=Path("/tmp"), embedding_dim=8).collections()
    return Recall(sink, items, users, slots=1, versions=Live(codebook))  # type: ignore[arg-type]


def test_the_sid_channel_reads_the_deepest_prefixes_first_and_ranks_by_shared_depth_then_recency() -> None:
    sink = SidSink({"a": "1.2.3", "b": "1.2.3", "c": "1.2.9", "d": "1.5.5", "e": "7.7.7", "x": "1.2.4"})
    got = asyncio.run(_sid_recall(sink).user_to_item("u", k=3, channel="sid"))
    assert [(r.item_id, r.channel) for r in got] == [
        ("b", "sid"),
        ("c", "sid"),
        ("d", "sid"),
    ]  # a (the positive) and x (seen) excluded
    assert got[0].score == pytest.approx(1.0) and got[1].score == pytest.approx(3 / 7)
    assert (
        'sid_codes in ["1.2.3"]' in sink.queries[0]
        and 'sid_codes like "1.2.%"' in sink.queries[1]
        and 'sid_codes like "1.%"' in sink.queries[2]
    )
    assert all('sid_codebook == "cb"' in q for q in sink.queries)
    sink.queries.clear()
    asyncio.run(_sid_recall(sink).user_to_item("u", k=1, channel="sid"))
    assert len(sink.queries) == 1  # enough in the positive's own bucket: no shallower read


def test_mixed_fuses_both_channels_and_names_where_each_item_came_from() -> None:
    sink = SidSink({"a": "1.2.3", "b": "1.2.3", "c": "1.2.9", "d": "1.5.5"})
    got = asyncio.run(_sid_recall(sink).user_to_item("u", k=3, channel="mixed"))
    assert [(r.item_id, r.channel) for r in got] == [("b", "dense+sid"), ("d", "dense+sid"), ("c", "sid")]
    assert got[0].score == pytest.approx(1 / 62 + 1 / 61)


def test_sid_and_mixed_without_a_codebook_are_a_409_and_an_unknown_channel_a_400() -> None:
    sink = SidSink({"a": "1.2.3"})
    for channel in ("sid", "mixed"):
        with pytest.raises(RecallError, match="has no codebook yet") as refused:
            asyncio.run(_sid_recall(sink, codebook="").item_to_item("a", channel=channel))
        assert refused.value.status == 409
    with pytest.raises(RecallError, match="channel must be one of dense, sid, mixed") as bad:
        asyncio.run(_sid_recall(sink).item_to_item("a", channel="semantic"))
    assert bad.value.status == 400


class VersionedSink:
    """One user (slots 0 and 1) and one item, each row of its own model version, and hits of `hit_version`."""

    def __init__(self, user_versions: tuple[str, str], item_version: str, hit_version: str) -> None:
        self.user_versions, self.item_version, self.hit_version = user_versions, item_version, hit_version
        self.searches = 0

    async def get(self, collection: str, ids: list[str], fields: list[str], consistency: str = "Strong") -> list[dict[str, Any]]:
        assert "model_version" in fields  # the query vector's version is read with it
        unit = np.eye(8, dtype=np.float32)[0].tolist()
        if collection.endswith("users"):
            return [
                {"user_key": key, "embedding": unit, "recent_item_ids": "", "positive_item_ids": "", "model_version": v}
                for key, v in zip(ids, self.user_versions)
            ]
        return [{"item_id": i, "embedding": unit, "model_version": self.item_version} for i in ids]

    async def search(self, collection: str, vectors: Any, **kwargs: Any) -> list[list[Hit]]:
        self.searches += 1
        return [[Hit("i-2", 0.9, {"creator_id": "c", "created_at_ms": 1, "model_version": self.hit_version})]]


def _versioned(sink: VersionedSink, registry_version: str | None) -> Recall:
    """Recall over `sink`, the registry naming `registry_version` live (None: no registry)."""
    items, users = Settings(state_dir=Path("/tmp"), embedding_dim=8).collections()
    versions = None if registry_version is None else Live("", registry_version)
    return Recall(sink, items, users, slots=2, versions=versions)  # type: ignore[arg-type]


def test_a_query_vector_of_the_searched_version_is_served_with_both_versions_on_every_result() -> None:
    for registry_version in ("B", None):  # named by the registry, or (no registry) only by the items returned
        sink = VersionedSink(("B", "B"), "B", "B")
        (user_hit,) = asyncio.run(_versioned(sink, registry_version).user_to_item("u", consistency="Strong"))
        (item_hit,) = asyncio.run(_versioned(sink, registry_version).item_to_item("i-1", consistency="Strong"))
        assert (user_hit.model_version, user_hit.query_model_version) == ("B", "B")
        assert (item_hit.model_version, item_hit.query_model_version) == ("B", "B")


def test_a_user_vector_of_another_version_than_the_registry_names_is_refused_before_any_search() -> None:
    sink = VersionedSink(("A", "A"), "B", "B")
    with pytest.raises(VersionMismatch, match="model version mismatch") as refused:
        asyncio.run(_versioned(sink, "B").user_to_item("u"))
    assert (refused.value.status, refused.value.reason) == (409, VERSION_MISMATCH)
    assert (refused.value.query_model_version, refused.value.model_version, sink.searches) == ("A", "B", 0)


def test_items_returned_of_another_version_than_the_query_vector_are_refused_not_served() -> None:
    sink = VersionedSink(("A", "A"), "A", "B")  # no registry: the items' own versions are all there is to compare
    with pytest.raises(VersionMismatch) as user_refused:
        asyncio.run(_versioned(sink, None).user_to_item("u"))
    with pytest.raises(VersionMismatch) as item_refused:
        asyncio.run(_versioned(sink, None).item_to_item("i-1"))
    assert (user_refused.value.query_model_version, user_refused.value.model_version) == ("A", "B")
    assert (item_refused.value.query_model_version, item_refused.value.model_version, sink.searches) == ("A", "B", 2)


def test_a_user_whose_slots_are_of_two_versions_is_refused() -> None:
    sink = VersionedSink(("A", "B"), "B", "B")
    with pytest.raises(VersionMismatch, match="several model versions") as refused:
        asyncio.run(_versioned(sink, None).user_to_item("u"))
    assert refused.value.query_model_version == "A,B"


def test_a_query_item_of_another_version_than_the_registry_names_is_refused() -> None:
    sink = VersionedSink(("B", "B"), "A", "B")
    with pytest.raises(VersionMismatch) as refused:
        asyncio.run(_versioned(sink, "B").item_to_item("i-1"))
    assert (refused.value.query_model_version, refused.value.model_version, sink.searches) == ("A", "B", 0)


class RegistrySink(RacingSink):
    """The registry's row naming `live` besides a user and items; counts the registry's reads."""

    def __init__(self) -> None:
        super().__init__(misses=0)
        self.live, self.registry_reads = "m", 0
        self.release = asyncio.Event()  # a registry read waits for it: a request must not

    async def get(self, collection: str, ids: list[str], fields: list[str], consistency: str = "Strong") -> list[dict[str, Any]]:
        if collection.endswith("registry"):
            from topology.versions import Registry, Version, registry_row

            self.registry_reads += 1
            if self.registry_reads > 1:
                await self.release.wait()
            return [registry_row(Registry(Version(self.live, "items", "users", 8)))]
        return await super().get(collection, ids, fields, consistency)


def test_a_request_never_waits_for_a_due_registry_read_after_the_first_and_the_next_one_sees_its_result() -> None:
    from streams.lifecycle.registry import Versions

    settings = Settings(state_dir=Path("/tmp"), embedding_dim=8)
    items, users = settings.collections()

    async def go() -> None:
        sink, now = RegistrySink(), [0.0]
        versions = Versions(sink, *settings.registry(), max_age_s=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
        recall = Recall(sink, items, users, slots=1, versions=versions)  # type: ignore[arg-type]
        (first,) = await recall.user_to_item("u")  # the first request reads the registry
        assert (first.query_model_version, sink.registry_reads) == ("m", 1)
        sink.live = "m2"  # a swap, and later hits of the new version
        now[0] = 5.0  # the registry is due: read beside the request, which the read's wait must not hold up
        await asyncio.wait_for(recall.user_to_item("u"), timeout=1.0)
        assert sink.registry_reads == 2 and versions.known.live.model_version == "m"
        await asyncio.wait_for(recall.user_to_item("u"), timeout=1.0)
        assert sink.registry_reads == 2  # one re-read at a time
        sink.release.set()
        await asyncio.sleep(0.01)
        assert versions.known.live.model_version == "m2"

    asyncio.run(go())
