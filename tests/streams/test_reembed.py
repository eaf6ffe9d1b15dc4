"""The re-embed backfill's pure parts: naming after the model version, the rate cap, the ETA."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from kafka import TopicPartition

from streams.reembed import Counts, TokenBucket, eta, shadow, version_slug
from topology.settings import Settings


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


def test_the_token_bucket_holds_the_average_rate_after_one_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10.0, burst=8, clock=lambda: now[0])
    assert bucket.wait_s(8) == 0.0  # the first batch goes at once
    assert bucket.wait_s(8) == pytest.approx(0.8)  # the next waits for 8 tokens at 10/s
    now[0] = 0.8
    assert bucket.wait_s(4) == pytest.approx(0.4)
    assert TokenBucket(rate=0, burst=8).wait_s(10_000) == 0.0  # no cap


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
    import streams.reembed as module

    fake = _Compacted()
    monkeypatch.setattr(module, "consumer", lambda *a, **k: fake)
    seen: list[int] = []

    async def handle(records: list) -> None:
        seen.extend(r.offset for r in records)

    phase = module.Phase("t")
    asyncio.run(module._drain(Settings(state_dir=Path("/tmp")), phase, "g", 2, handle, lambda line: None, "test"))
    assert seen == [0, 1, 3, 4] and fake.commits == [{0: 2}, {0: 5}]
    assert phase.complete and (phase.total, phase.processed) == (5, 4)


def test_counts_say_complete_only_when_the_new_version_has_every_row() -> None:
    assert Counts(60, 60, 20, 20).equal and Counts(60, 60, 20, 20).explain().endswith(": complete")
    short = Counts(61, 60, 20, 20)
    assert not short.equal and "arrived after the run began" in short.explain() and "61 live, 60 new" in short.explain()
