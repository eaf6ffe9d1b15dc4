"""A worker's item cache warmed at start from the item-embeddings topic's newest records
(`streams.sinks.kafka.tail_chunks`, `ItemVectors.warm`), on the real broker."""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest

from streams.lifecycle.registry import Versions
from streams.ops.metrics import Metrics
from streams.retry import Retry
from streams.sinks.kafka import ensure_topics, producer, tail_chunks
from streams.sinks.milvus import MilvusSink
from streams.worker.items import ItemCache, ItemVectors
from topology.codec import encode_item_embedding
from topology.messages import ItemEmbedding
from topology.settings import Settings

pytestmark = pytest.mark.integration


def _embedding(item_id: str, vector: np.ndarray) -> bytes:
    v = vector.astype("<f4")
    return encode_item_embedding(ItemEmbedding(item_id, v.tobytes(), len(v), "v", 1000, 2000))


async def test_a_worker_starts_with_the_newest_item_vectors_of_the_topic_in_its_cache(settings: Settings) -> None:
    spec = dataclasses.replace(settings.topics().item_embeddings, name=f"warm-{uuid.uuid4().hex[:8]}", partitions=2)
    ensure_topics(settings.kafka_bootstrap, settings.kafka_security(), [spec])
    rng = np.random.default_rng(11)
    vectors = {f"item-{n}": rng.standard_normal(settings.embedding_dim).astype(np.float32) for n in range(60)}
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
    for n, (item, vector) in enumerate(vectors.items()):
        p.send(spec.name, key=item.encode(), value=_embedding(item, vector), partition=n % 2)  # 30 per partition
    p.flush()
    p.close()
    chunks = list(tail_chunks(settings.kafka_bootstrap, settings.kafka_security(), spec.name, newest=20, chunk=7))
    newest = [item for n, item in enumerate(vectors) if n >= 40]  # the last 10 of each partition
    assert sorted(len(c) for c in chunks) == [6, 7, 7]  # up to the ends as they stood, in chunks
    assert not list(tail_chunks(settings.kafka_bootstrap, settings.kafka_security(), spec.name, newest=0))

    # Warmed, every vector of the newest share is served from memory: the sink is never started, so a
    # get that reached Milvus would raise. The older items are not cached.
    sink = MilvusSink(settings.milvus_uri, None, settings.milvus_backend)
    metrics = Metrics()
    items, _ = settings.collections()
    registry = settings.registry()
    vectors_of = ItemVectors(
        ItemCache(100), sink, Versions(sink, *registry), Retry(metrics, 1.0), settings.limits(), metrics.item_vectors
    )
    read = await vectors_of.warm(tail_chunks(settings.kafka_bootstrap, settings.kafka_security(), spec.name, newest=20))
    assert read == 20
    got = await vectors_of.get(newest, items)
    assert set(got) == set(newest)
    for item in newest:
        np.testing.assert_array_equal(got[item], vectors[item])
    assert metrics.item_vectors.labels("cache")._value.get() == 20 and metrics.item_vectors.labels("milvus")._value.get() == 0
    with pytest.raises(RuntimeError, match="before start"):
        await vectors_of.get(["item-0"], items)  # older than the newest share: a miss, read from Milvus
