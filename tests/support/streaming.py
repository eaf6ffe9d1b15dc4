"""Helpers of the integration tests that drive a real worker: produce, wait, read Milvus and the
dead-letter topic back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

from streams.sinks.kafka import group_lag, producer, read_topic
from streams.sinks.milvus import MilvusSink
from tests.support.media import image_bytes
from topology.codec import decode_dead_letter
from topology.collections import VECTOR_FIELD, user_key
from topology.messages import ContentUpload, Media
from topology.settings import Settings


def send(settings: Settings, records: list[tuple[str, bytes, bytes]]) -> None:
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
    for topic, key, value in records:
        p.send(topic, key=key, value=value)
    p.flush()
    p.close()


def drained(settings: Settings) -> bool:
    topics = settings.topics()
    return all(
        not any(group_lag(settings.kafka_bootstrap, settings.kafka_security(), settings.app_id, t.name).values())
        for t in (topics.uploads, topics.interactions, topics.interactions_retry)
        + ((topics.co_engagements,) if settings.collab_enabled else ())
    )


def wait_until(predicate: Callable[[], bool], timeout_s: float = 90.0, what: str = "condition") -> None:
    """Poll `predicate` every 0.5 s; AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def milvus_rows(settings: Settings, collection: str, ids: list[str], fields: list[str]) -> dict[str, dict]:
    async def go() -> list[dict]:
        sink = MilvusSink(settings.milvus_uri, None, settings.milvus_backend)
        await sink.start()
        try:
            return await sink.get(collection, ids, fields=fields)
        finally:
            await sink.close()

    base = collection.split("__")[0]  # also a shadow <name>__<version>
    key = "user_id" if base.endswith("collab_users") else "user_key" if base.endswith("users") else "item_id"
    return {row[key]: row for row in asyncio.run(go())}


def stored_items(settings: Settings, ids: list[str]) -> dict[str, np.ndarray]:
    found = milvus_rows(settings, settings.collections()[0].name, ids, [VECTOR_FIELD])
    return {k: np.asarray(v[VECTOR_FIELD], dtype=np.float32) for k, v in found.items()}


def user_vectors(settings: Settings, users: list[str]) -> dict[str, tuple[np.ndarray, int]]:
    found = milvus_rows(
        settings, settings.collections()[1].name, [user_key(u, 0) for u in users], [VECTOR_FIELD, "event_count", "user_id"]
    )
    return {r["user_id"]: (np.asarray(r[VECTOR_FIELD], dtype=np.float32), int(r["event_count"])) for r in found.values()}


def dead_letters(settings: Settings) -> list:
    records = read_topic(settings.kafka_bootstrap, settings.kafka_security(), settings.topics().dead_letters.name, idle_ms=2000)
    return [decode_dead_letter(r.value) for r in records]


def clip_upload(tag: str, n: int, cover: bool = False) -> ContentUpload:
    return ContentUpload(
        item_id=f"{tag}-item-{n}",
        creator_id=f"{tag}-creator",
        created_at_ms=int(time.time() * 1000),
        title=f"{tag} clip number {n} about cats",
        tags=("cats",),
        cover=Media.inline(image_bytes(n)) if cover else None,
    )
