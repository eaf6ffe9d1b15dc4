"""`Context`: what the agents of one worker share, built once by `streams.worker.app` when the app is
made; nothing connects until the worker starts (`ensure_started`).

What it holds, and who uses it:
- `settings`, `app`, `topics`, `limits`: the one settings object, the Faust app, the topic specs and
  the codec's limits (every agent).
- `items`, `users`: the settings' collection specs; a batch writes the live version's (`live()`).
- `metrics`: the worker's Prometheus metrics (every stage, the status page).
- `retry`: the one retry policy (`streams.retry`) of every Triton, Milvus and Kafka call.
- `encoder`, `encoder_for(version)`: the Triton client of the live version (others' by URL).
- `sink`: the Milvus adapter; `upsert_each` upserts through it with the retry policy.
- `versions`: the model-version registry as last read (`streams.lifecycle.registry`).
- `media`: the bounded media fetcher of uploads' images and frames.
- `vectors`: item vectors (cache, item-embeddings feed, Milvus reads) for the interest agent.
- `outbox`: records produced and dead letters, acknowledged together.
- `online`: the online hit rate sampled before positive interactions.
- `sids`: the semantic-ID stage of the content agent (`streams.sid.stage`).

It is a container, not a service: each stage takes it so the agents' signatures stay short.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import faust

from encoders.client import EncoderClient
from streams.lifecycle.registry import Versions
from streams.ops.metrics import Metrics
from streams.ops.quality import OnlineHitRate
from streams.retry import Retry
from streams.sid.stage import SemanticIds
from streams.sinks.media import MediaResolver
from streams.sinks.milvus import MilvusSink
from streams.worker.items import ItemCache, ItemVectors
from streams.worker.outbox import Outbox
from topology.collections import CollectionSpec
from topology.settings import Settings
from topology.versions import Version

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Live:
    version: Version
    items: CollectionSpec
    users: CollectionSpec
    encoder: EncoderClient


class Context:
    """One worker's shared clients and state (the module docstring lists each part)."""

    def __init__(self, settings: Settings, app: faust.App) -> None:
        s = settings
        self.settings = s
        self.app = app
        self.topics = s.topics()
        self.limits = s.limits()
        self.items, self.users = s.collections()  # the settings' specs; the live version's are `live()`'s
        self.metrics = Metrics()
        self.retry = Retry(self.metrics, s.retry_backoff_max_s)
        self.encoder = EncoderClient.for_settings(s, observe=self._observe_encode)
        self.sink = MilvusSink.for_settings(s)
        self.versions = Versions(self.sink, *s.registry(), max_age_s=s.version_refresh_s)
        self._encoders: dict[str, EncoderClient] = {}  # other versions' Tritons, by URL
        self.media = MediaResolver(max_bytes=s.max_image_bytes, timeout_s=s.media_fetch_timeout_s, policy=s.media_policy())
        self.vectors = ItemVectors(
            ItemCache(s.item_cache_size), self.sink, self.versions, self.retry, self.limits, self.metrics.item_vectors
        )
        self.outbox = Outbox(self.retry, self.metrics, self.topic(self.topics.dead_letters.name))
        self.online = OnlineHitRate(
            self.sink,
            s.online_hit_k,
            self.metrics,
            collab_items=s.collab_collections()[0].name if s.collab_enabled else None,
            content_weight=s.recall_content_weight,
            channel=s.recall_channel if s.recall_channel in ("dense", "collab", "fused") else "dense",
            max_per_s=s.online_hit_max_per_s,
        )
        self.sids = SemanticIds(self.sink, self.retry, self.metrics, s.sid_drift_ratio)
        self._started = False
        self._lock = asyncio.Lock()

    def topic(self, name: str) -> Any:
        """A Faust topic of raw bytes (every codec is `topology.codec`'s)."""
        return self.app.topic(name, key_serializer="raw", value_serializer="raw")

    @property
    def started(self) -> bool:
        return self._started

    async def ensure_started(self) -> None:
        """Open the Triton, Milvus and HTTP clients once per worker (start-up, never import)."""
        async with self._lock:
            if not self._started:
                await self.encoder.start()
                await self.sink.start()
                await self.media.start()
                await self.versions.current()  # the live version before the first batch
                self._started = True

    async def live(self) -> Live:
        """The live model version (the registry as the worker's timer last read it, every
        SAIL_VERSION_REFRESH_S): the collections to write and read, and the encoder to encode with. A
        batch takes it once, so all its rows are of one version."""
        await self.ensure_started()
        version = self.versions.known.live
        items, users = version.specs(self.items, self.users)
        return Live(version, items, users, await self.encoder_for(version))

    async def encoder_for(self, version: Version) -> EncoderClient:
        """The client of `version`'s Triton: the worker's own unless the registry names another."""
        url = version.triton_url
        if not url or url == self.settings.triton_url:
            return self.encoder
        if url not in self._encoders:
            client = EncoderClient.for_settings(
                self.settings.model_copy(update={"triton_url": url}), observe=self._observe_encode
            )
            await client.start()
            self._encoders[url] = client
        return self._encoders[url]

    async def stop(self) -> None:
        for client in self._encoders.values():
            await client.close()
        self._encoders.clear()
        if self._started:
            await self.encoder.close()
            await self.sink.close()
            await self.media.close()
            self._started = False

    async def upsert_each(self, spec: CollectionSpec, rows: list[dict[str, Any]]) -> dict[int, str]:
        """Upsert what Milvus accepts of `rows` (retried while it is down); the refused ones by
        index, with Milvus's reason."""

        async def upsert() -> dict[int, str]:
            with self.metrics.milvus_seconds.labels(spec.name).time():
                return await self.sink.upsert_each(spec, rows)

        return await self.retry.retrying("milvus", f"upsert {spec.name}", upsert)

    def _observe_encode(self, outcome: str, items: int, seconds: float) -> None:
        self.metrics.triton_requests.labels(outcome).inc()
        if outcome == "abandoned":
            logger.warning(
                "triton request of %d items passed its %.1fs deadline (abandoned; the next deadline doubles)", items, seconds
            )
