"""The re-embed's pure parts: naming after the model version, the registry, the rate cap, the ETA, the counts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from kafka import TopicPartition

from streams.lifecycle.reembed import Counts, eta
from topology.settings import Settings
from topology.versions import Registry, Version, shadow, version_slug


def test_versions_name_collections_and_groups_with_milvus_safe_characters() -> None:
    assert version_slug("sail-tiny-cre-8927e6b833d2") == "sail_tiny_cre_8927e6b833d2"
    assert version_slug("a.b/c:1") == "a_b_c_1"
    with pytest.raises(ValueError, match="no letter or digit"):
        version_slug("-./")
    items, users = Settings(milvus_collection_prefix="p_", state_dir=Path("/tmp")).collections()
    spec = shadow(items, "m-1", dim=256)
    assert spec.name == "p_items__m_1" and spec.dim == 256  # the new model's width, whatever the live one's
    assert [f.name for f in spec.fields] == [f.name for f in items.fields] and spec.primary_key == "item_id"
    assert shadow(users, "m-1", dim=256).name == "p_users__m_1"


def test_eta_reads_like_a_progress_line() -> None:
    assert eta(100, 1000, 10.0) == "1m30s"
    assert eta(990, 1000, 10.0) == "1s"
    assert eta(0, 1000, 0.0) == "?"


class _Compacted:
    """A kafka-python consumer over one partition whose offset 2 was compacted away (end offset 5)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.records = [SimpleNamespace(topic="t", partition=0, offset=o, key=b"k", value=b"v") for o in (0, 1, 3, 4)]
        self.at, self.commits = 0, []

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, partitions: list) -> None: ...
    def end_offsets(self, partitions: list) -> dict:
        return {partitions[0]: 5}

    def beginning_offsets(self, partitions: list) -> dict:
        return {partitions[0]: 0}

    def committed(self, tp: object) -> None:
        return None

    def seek(self, tp: object, offset: int) -> None:
        self.at = offset

    def position(self, tp: object) -> int:
        return self.at

    def poll(self, timeout_ms: int, max_records: int) -> dict:
        batch = [r for r in self.records if r.offset >= self.at][:max_records]
        self.at = batch[-1].offset + 1 if batch else 5
        return {TopicPartition("t", 0): batch} if batch else {}

    def commit(self, offsets: dict) -> None:
        self.commits.append({tp.partition: o.offset for tp, o in offsets.items()})

    def close(self) -> None: ...


def test_a_phase_over_a_compacted_topic_completes_at_its_end_offset_despite_the_holes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting records against end - start never reaches the total on a compacted topic; the users
    phase waited on that and would never have run in production."""
    import streams.lifecycle.reembed as module

    fake = _Compacted()
    monkeypatch.setattr(module, "consumer", lambda *a, **k: fake)
    seen: list[int] = []

    async def handle(records: list) -> None:
        seen.extend(r.offset for r in records)

    phase = module.Phase("t")
    asyncio.run(module._drain(Settings(state_dir=Path("/tmp")), phase, "g", 2, handle, lambda line: None, "test"))
    assert seen == [0, 1, 3, 4] and fake.commits == [{0: 2}, {0: 5}]
    assert phase.complete and (phase.total, phase.processed) == (5, 4)


def test_counts_say_complete_only_when_the_new_version_has_every_row_the_live_one_had() -> None:
    assert Counts(60, 60, 20, 20).complete and Counts(60, 60, 20, 20).explain().endswith(": complete")
    assert Counts(60, 63, 20, 21).complete  # uploads and users that arrived between the two counts
    short = Counts(61, 60, 20, 20)
    assert not short.complete and "refused" in short.explain() and "61 live, 60 new" in short.explain()
    assert not Counts(60, 60, 21, 20).complete


def test_the_registry_round_trips_and_a_swap_keeps_the_live_version_as_the_previous_one() -> None:
    items, users = Settings(milvus_collection_prefix="p_", state_dir=Path("/tmp")).collections()
    old = Version("m-1", items.name, users.name, items.dim)
    new = Version("m-2", "p_items__m_2", "p_users__m_2", 256, "grpc://10.0.0.7:8001")
    building = Registry(old).with_shadow(new)
    assert Registry.decode(building.encode()) == building and building.generation == 1
    swapped = building.swapped_to(new, now_ms=1_000, keep_ms=500)
    assert (swapped.live, swapped.previous, swapped.shadow, swapped.keep_until_ms, swapped.generation) == (
        new,
        old,
        None,
        1_500,
        2,
    )
    assert Registry.decode(swapped.encode()) == swapped
    assert swapped.retired().previous is None and swapped.retired().live == new
    new_items, new_users = new.specs(items, users)
    assert (new_items.name, new_items.dim, new_users.name, new_users.dim) == ("p_items__m_2", 256, "p_users__m_2", 256)
    with pytest.raises(ValueError, match="unreadable"):
        Registry.decode('{"live": {"model_version": "m"}}')
    with pytest.raises(ValueError, match="unreadable"):
        Registry.decode("not json")


class _Items:
    """The new version's items collection (`get`) and users collection (`upsert_each`), in memory."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors, self.users = vectors, {}

    async def get(self, collection: str, ids: list[str], fields: list[str]) -> list[dict]:
        return [{"item_id": i, "embedding": self.vectors[i]} for i in ids if i in self.vectors]

    async def upsert_each(self, spec: object, rows: list[dict]) -> dict:
        self.users.update({row["user_key"]: row for row in rows})
        return {}


def test_a_user_written_before_an_item_of_theirs_had_its_new_vector_is_written_again_once_it_has() -> None:
    """A state on the changelog can name an item whose item-content record the items phase has not
    read yet; its user's vector would stay folded without that item (and its counts short) for good."""
    import numpy as np

    import streams.lifecycle.reembed as module
    from streams.interest.maths import InterestParams, fold_interactions, interest_vectors
    from streams.ops.metrics import Metrics
    from streams.retry import Retry
    from topology.messages import Action, Interaction

    s = Settings(state_dir=Path("/tmp"))
    items, users = s.collections()
    params = InterestParams.for_settings(s)
    a, b = np.eye(384, dtype=np.float32)[0], np.eye(384, dtype=np.float32)[1]
    state = fold_interactions(
        [Interaction("e1", "u", "a", Action.LIKE, 1_000), Interaction("e2", "u", "b", Action.LIKE, 2_000)], params
    )
    sink = _Items({"a": a.tolist()})  # "b" not re-encoded yet
    result = module.Backfill("m", items.name, users.name, "g", module.Phase("t"))
    write = module._write_users
    asyncio.run(write({"u": state}, params, sink, items, users, "m", result, Retry(Metrics(), 1.0)))  # type: ignore[arg-type]
    assert "u" in result.pending  # written with "a" alone, and kept
    np.testing.assert_allclose(sink.users["u#0"]["embedding"], interest_vectors(state, {"a": a}, params)[0], atol=1e-6)  # type: ignore[index]
    sink.vectors["b"] = b.tolist()
    pending, result.pending = result.pending, {}
    asyncio.run(write(pending, params, sink, items, users, "m", result, Retry(Metrics(), 1.0)))  # type: ignore[arg-type]
    assert not result.pending
    np.testing.assert_allclose(sink.users["u#0"]["embedding"], interest_vectors(state, {"a": a, "b": b}, params)[0], atol=1e-6)  # type: ignore[index]
