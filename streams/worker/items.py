"""Item vectors for the interest agent: a bounded in-memory cache, fed by the item-embeddings topic
and by Milvus reads, and one Milvus get for whatever the cache misses."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np

from streams.sinks.milvus import MilvusSink
from streams.worker.retry import Retry
from topology.codec import BadInput, Limits, decode_item_embedding
from topology.collections import VECTOR_FIELD, CollectionSpec

logger = logging.getLogger(__name__)


class ItemCache:
    """Bounded LRU of item vectors in this worker."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()

    def put(self, item_id: str, vector: np.ndarray) -> None:
        if self._capacity <= 0:
            return
        self._vectors[item_id] = vector
        self._vectors.move_to_end(item_id)
        while len(self._vectors) > self._capacity:
            self._vectors.popitem(last=False)

    def get(self, item_id: str) -> np.ndarray | None:
        vector = self._vectors.get(item_id)
        if vector is not None:
            self._vectors.move_to_end(item_id)
        return vector


class ItemVectors:
    """The vectors of items that have one: the cache first, then Milvus (retried while it is down)."""

    def __init__(self, cache: ItemCache, sink: MilvusSink, items: CollectionSpec, retry: Retry, limits: Limits) -> None:
        self.cache = cache
        self._sink = sink
        self._items = items
        self._retry = retry
        self._limits = limits

    async def get(self, item_ids: Iterable[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        missing = []
        for item_id in set(item_ids):
            vector = self.cache.get(item_id)
            if vector is None:
                missing.append(item_id)
            else:
                found[item_id] = vector
        if missing:
            rows = await self._retry.retrying("milvus", "get items", lambda: self._sink.get(self._items.name, missing, fields=[VECTOR_FIELD]))
            for row in rows:
                vector = np.asarray(row[VECTOR_FIELD], dtype=np.float32)
                self.cache.put(row["item_id"], vector)
                found[row["item_id"]] = vector
        return found

    def cache_embedding(self, data: bytes) -> None:
        """Cache one record of the item-embeddings topic (what any worker encoded)."""
        try:
            embedding = decode_item_embedding(data, self._limits)
        except BadInput as exc:
            logger.warning("ignoring malformed item embedding: %s", exc)
            return
        self.cache.put(embedding.item_id, np.frombuffer(embedding.vector, dtype="<f4").astype(np.float32))
