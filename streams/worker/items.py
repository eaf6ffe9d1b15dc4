"""Item vectors for the interest agent: a bounded in-memory cache, fed by the item-embeddings topic
and by Milvus reads, and one Milvus get for whatever the cache misses.

Vectors are cached per items collection (one per model version), so a user's vector is never folded
from items of two versions, also across a swap."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from streams.lifecycle.registry import Versions
from streams.retry import Retry
from streams.sinks.milvus import MilvusSink
from topology.codec import BadInput, Limits, decode_item_embedding
from topology.collections import VECTOR_FIELD, CollectionSpec

logger = logging.getLogger(__name__)


class ItemCache:
    """Bounded LRU of item vectors in this worker, keyed by (items collection, item)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def put(self, collection: str, item_id: str, vector: np.ndarray) -> None:
        if self._capacity <= 0:
            return
        key = (collection, item_id)
        self._vectors[key] = vector
        self._vectors.move_to_end(key)
        while len(self._vectors) > self._capacity:
            self._vectors.popitem(last=False)

    def get_many(self, collection: str, item_ids: Iterable[str]) -> tuple[dict[str, np.ndarray], list[str]]:
        """(the cached vectors, the ids not cached) of `item_ids`, each found one now the most recently
        used; one loop for a batch (0.31 -> 0.22 us an item against a call per item, 2,957 lookups in a
        cache of 20,000)."""
        lookup, touch = self._vectors.get, self._vectors.move_to_end
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for item_id in item_ids:
            key = (collection, item_id)
            vector = lookup(key)
            if vector is None:
                missing.append(item_id)
            else:
                touch(key)
                found[item_id] = vector
        return found, missing


class ItemVectors:
    """The vectors of items that have one in a version's items collection: the cache first, then
    Milvus (retried while it is down)."""

    def __init__(
        self, cache: ItemCache, sink: MilvusSink, versions: Versions, retry: Retry, limits: Limits, counted: Any = None
    ) -> None:
        self.cache = cache
        self._counted = counted  # a Counter labelled by source (cache, milvus, missing), or None
        self._sink = sink
        self._versions = versions
        self._retry = retry
        self._limits = limits
        self.model_versions: dict[str, str] = {}  # items collection -> the model version of the vectors last seen from it

    def version_of(self, items: CollectionSpec) -> str:
        """The model version of `items`' vectors as last seen ("" before any): what names a user vector folded from them."""
        return self.model_versions.get(items.name, "")

    async def get(self, item_ids: Iterable[str], items: CollectionSpec) -> dict[str, np.ndarray]:
        found, missing = self.cache.get_many(items.name, set(item_ids))
        hits = len(found)
        if missing:
            rows = await self._retry.retrying(
                "milvus", "get items", lambda: self._sink.get(items.name, missing, fields=[VECTOR_FIELD, "model_version"])
            )
            for row in rows:
                if row.get("model_version"):
                    self.model_versions[items.name] = str(row["model_version"])
                vector = np.asarray(row[VECTOR_FIELD], dtype=np.float32)
                self.cache.put(items.name, row["item_id"], vector)
                found[row["item_id"]] = vector
        if self._counted is not None:
            self._counted.labels("cache").inc(hits)
            self._counted.labels("milvus").inc(len(found) - hits)
            self._counted.labels("missing").inc(len(missing) - (len(found) - hits))
        return found

    async def warm(self, chunks: Iterator[list[bytes]]) -> int:
        """Cache the records `chunks` yields (the item-embeddings topic's newest, `streams.sinks.kafka.
        tail_chunks`); returns how many were read. A worker starts with an empty cache and, without this,
        reads every item its first interactions name from Milvus (a fresh worker's batch-record drain in
        bench.interest: 18,082 Milvus reads for 20,000 items, 40 % of the interest agent's time); the
        `cache_item_vectors` agent only sees records written after its group's committed offset.

        `chunks` is read on a daemon thread of its own: kafka-python blocks, and a worker stopping
        while a broker does not answer must not wait for it at exit (the default executor's threads
        are joined then).

        Raises:
            Exception: what reading `chunks` raised.
        """
        loop = asyncio.get_running_loop()
        handed: asyncio.Queue[list[bytes] | BaseException | None] = asyncio.Queue(maxsize=2)

        def hand(value: list[bytes] | BaseException | None) -> bool:
            """Hand `value` to the warm-up; False when nobody takes it any more (the worker stopped or the
            warm-up was cancelled, also while the hand-over waited: the thread then ends quietly)."""
            if loop.is_closed():
                return False
            try:
                asyncio.run_coroutine_threadsafe(handed.put(value), loop).result()
            except (concurrent.futures.CancelledError, RuntimeError):  # cancelled with its loop, or the loop closed
                return False
            return True

        def read() -> None:
            try:
                for values in chunks:
                    if not hand(values):
                        return
            except BaseException as exc:  # raised on the loop's side
                hand(exc)
            else:
                hand(None)

        threading.Thread(target=read, name="item-cache-warm", daemon=True).start()
        read_count = 0
        while (values := await handed.get()) is not None:
            if isinstance(values, BaseException):
                raise values
            for value in values:
                self.cache_embedding(value)
            read_count += len(values)
        return read_count

    def cache_embedding(self, data: bytes) -> None:
        """Cache one record of the item-embeddings topic (what any worker encoded), under the live
        version's collection if it is of that version (a record encoded before a swap is not)."""
        try:
            embedding = decode_item_embedding(data, self._limits)
        except BadInput as exc:
            logger.warning("ignoring malformed item embedding: %s", exc)
            return
        live = self._versions.known.live
        if live.model_version in ("", embedding.model_version):  # "": no registry, one encoder
            self.model_versions[live.items] = embedding.model_version
            self.cache.put(live.items, embedding.item_id, np.frombuffer(embedding.vector, dtype="<f4").astype(np.float32))
