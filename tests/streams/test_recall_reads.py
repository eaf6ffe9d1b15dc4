"""Recall's reads of a user's or an item's vector: read again while a row is missing (pure, fake sink)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streams.recall.query import Recall, RecallError
from streams.sinks.milvus import Hit
from topology.settings import Settings


class RacingSink:
    """Misses the row on its first `misses` gets, as Milvus Lite does when a get races an upsert of the key."""

    def __init__(self, misses: int) -> None:
        self.misses, self.gets = misses, 0

    async def get(self, collection: str, ids: list[str], fields: list[str]) -> list[dict[str, Any]]:
        self.gets += 1
        if self.gets <= self.misses:
            return []
        return [{"user_key": i, "item_id": i, "embedding": np.eye(8, dtype=np.float32)[0].tolist(), "recent_item_ids": ""} for i in ids]

    async def search(self, collection: str, vectors: Any, **kwargs: Any) -> list[list[Hit]]:
        return [[Hit("i-2", 0.9, {"creator_id": "c", "created_at_ms": 1, "model_version": "m"})]]


def _recall(sink: RacingSink) -> Recall:
    items, users = Settings(state_dir=Path("/tmp"), embedding_dim=8).collections()
    return Recall(sink, items, users, slots=1)  # type: ignore[arg-type]


def test_a_row_missed_by_a_read_racing_its_upsert_is_read_again_and_a_missing_one_is_still_a_404() -> None:
    sink = RacingSink(misses=2)
    (hit,) = asyncio.run(_recall(sink).user_to_item("u"))
    assert (hit.item_id, hit.model_version, sink.gets) == ("i-2", "m", 3)
    sink = RacingSink(misses=2)
    assert [r.item_id for r in asyncio.run(_recall(sink).item_to_item("i-1"))] == ["i-2"]
    with pytest.raises(RecallError, match="no interest vector"):
        asyncio.run(_recall(RacingSink(misses=10)).user_to_item("u"))
