"""Uploads -> vectors (and semantic IDs) -> Milvus `items`, the item-embeddings topic and the item-content topic.

A batch goes through two stages. `prepare`: decode, resolve media, encode through Triton;
dead-letter what fails on the way. Up to `content_in_flight` batches are in this stage at once
(`streams.worker.inflight`), so the encoder works on the next batch while the last is stored.
`store`: assign the semantic IDs (`streams.sid.stage`), upsert the rows, publish the embeddings and
the stored uploads' content (kept for re-embedding);
batches arrive here, and are acknowledged, in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from encoders.client import encoder_verdict
from encoders.signature import EncodeResult
from streams.sinks.isolation import Isolated, isolate
from streams.sinks.media import MediaResolver
from streams.worker.context import Context, Live
from streams.worker.events import arrival, now_ms
from streams.worker.inflight import InOrderPipeline
from topology import reasons
from topology.codec import BadInput, decode_upload, encode_co_engagement, encode_item_embedding
from topology.collections import CANARY, VECTOR_FIELD, item_row
from topology.messages import CoEngagement, ContentUpload, EncodeRequest, ItemEmbedding


class ConfigMismatch(RuntimeError):
    """The encoder's vectors do not fit the Milvus collections (SAIL_EMBEDDING_DIM)."""


@dataclass(frozen=True, slots=True)
class EncodedUpload:
    """An upload with its vector, between the two stages of a content batch."""

    event: Any
    upload: ContentUpload
    vector: np.ndarray
    model_version: str
    live: Live  # the version the batch was encoded for: its rows go to that version's collections


def request_for(upload: ContentUpload, cover: bytes | None, frames: tuple[bytes, ...], audio: bytes | None) -> EncodeRequest:
    """What the encoder is asked for an upload, once its media bytes are in hand."""
    return EncodeRequest(
        role="target",
        title=upload.title,
        ocr_text=upload.ocr_text,
        asr_text=upload.asr_text,
        author_nickname=upload.author_nickname,
        tags=upload.tags,
        cover=cover,
        frames=frames,
        audio=audio,
    )


async def resolve_request(media: MediaResolver, upload: ContentUpload) -> EncodeRequest:
    """`request_for` an upload with its media fetched under `media`'s policy (the content agent's
    and the re-embed's one way to read an upload).

    Raises:
        BadInput: a medium is forbidden, too large or unreadable.
    """
    cover = await media.resolve(upload.cover, "cover")
    frames = [await media.resolve(frame, f"frames[{i}]") for i, frame in enumerate(upload.frames)]
    audio = await media.resolve(upload.audio, "audio")
    return request_for(upload, cover, tuple(f for f in frames if f is not None), audio)


def inline_request(upload: ContentUpload) -> EncodeRequest:
    """`request_for` an upload whose media are all inline (benchmarks, fault checks)."""
    cover, audio = (m.data if m is not None else None for m in (upload.cover, upload.audio))
    return request_for(upload, cover, tuple(f.data for f in upload.frames if f.data is not None), audio)


class ContentStage:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.pipeline = InOrderPipeline[list[EncodedUpload]](ctx.settings.content_in_flight)
        self.embeddings_topic = ctx.topic(ctx.topics.item_embeddings.name)
        self.content_topic = ctx.topic(ctx.topics.item_content.name)
        s = ctx.settings
        self.priors = s.collab_prior_items if s.collab_enabled else 0
        self.co_engagements_topic = ctx.topic(ctx.topics.co_engagements.name) if self.priors else None

    @property
    def batch_max(self) -> int:
        """The content agent's largest micro-batch: the setting, bounded by the model's max batch."""
        return min(self.ctx.settings.content_batch_max, self.ctx.settings.triton_max_batch_size)

    def sample(self) -> None:
        """Export the pipeline's state (in flight, time waited for a slot, the encoder's deadline)."""
        metrics = self.ctx.metrics
        metrics.content_in_flight.set(self.pipeline.in_flight)
        metrics.note_pipeline_full(self.pipeline.full_seconds())
        metrics.triton_deadline.set(self.ctx.encoder.deadline.seconds(self.batch_max))

    async def prepare(self, events: Sequence[Any]) -> list[EncodedUpload]:
        """Decode, resolve media, encode; dead-letters what fails on the way."""
        ctx = self.ctx
        live = await ctx.live()
        ctx.metrics.count_events("content", len(events))
        ctx.metrics.content_batch.set(len(events))
        refused: list[tuple[Any, str, str]] = []
        accepted: list[tuple[Any, ContentUpload]] = []
        for event in events:
            try:
                accepted.append((event, decode_upload(event.value, ctx.limits, arrival(event))))
            except BadInput as exc:
                refused.append((event, exc.reason, exc.detail))
        resolved = await asyncio.gather(*(resolve_request(ctx.media, upload) for _, upload in accepted), return_exceptions=True)
        ready: list[tuple[Any, ContentUpload, EncodeRequest]] = []
        for (event, upload), request in zip(accepted, resolved):
            if isinstance(request, BadInput):
                refused.append((event, request.reason, request.detail))
            elif isinstance(request, BaseException):
                raise request  # a bug: let it crash visibly
            else:
                ready.append((event, upload, request))
        encoded: list[EncodedUpload] = []
        if ready:
            requests = [request for _, _, request in ready]
            ctx.metrics.triton_batch.observe(len(requests))

            async def encode() -> Isolated[EncodeResult]:
                with ctx.metrics.triton_seconds.time():
                    return await isolate(requests, live.encoder.encode, encoder_verdict, live.encoder.answers)

            results = await ctx.retry.retrying("triton", "encode", encode)
            for index, (event, upload, _) in enumerate(ready):
                if index in results.rejected:
                    refused.append((event, reasons.ENCODER_REJECTED, results.rejected[index]))
                    continue
                result = results.done[index]
                if result.vector is None:
                    refused.append((event, result.reason or reasons.MEDIA_UNREADABLE, result.error))
                    continue
                if len(result.vector) != live.items.dim:
                    raise ConfigMismatch(
                        f"encoder {result.model_version} gives dim {len(result.vector)}, {live.items.name} holds {live.items.dim}"
                    )
                encoded.append(EncodedUpload(event, upload, result.vector, result.model_version, live))
        if refused:
            await ctx.outbox.dead_letter_events(refused)
        return encoded

    async def _priors(self, live: Live, stored: list[EncodedUpload]) -> list[tuple[Any, bytes, bytes]]:
        """Each stored upload's prior record for the collaborative stage: its nearest items by content
        (one search for the batch; an item the collaborative state already knows keeps its state)."""
        ctx = self.ctx

        async def search() -> Any:
            return await ctx.sink.search(
                live.items.name,
                np.stack([e.vector for e in stored]),
                limit=self.priors + 1,
                vector_field=VECTOR_FIELD,
                filter_expr=f'creator_id != "{CANARY}"',
            )

        hits = await ctx.retry.retrying("milvus", f"search {live.items.name} (collaborative priors)", search)
        records = []
        for e, found in zip(stored, hits):
            item = e.upload.item_id
            neighbours = tuple((h.id, round(h.score, 6)) for h in found if h.id != item)[: self.priors]
            prior = CoEngagement(item, "", item, e.upload.created_at_ms, prior=neighbours)  # keyed and named by its item
            if neighbours:
                records.append((self.co_engagements_topic, item.encode(), encode_co_engagement(prior)))
        return records

    async def store(self, encoded: Sequence[EncodedUpload]) -> None:
        """Upsert the rows, publish the embeddings and the uploads' content, cache the vectors."""
        ctx = self.ctx
        newest: dict[str, EncodedUpload] = {}
        for item in encoded:
            previous = newest.get(item.upload.item_id)
            if previous is None or previous.upload.created_at_ms <= item.upload.created_at_ms:  # one row per key per upsert
                newest[item.upload.item_id] = item
        if not newest:
            return
        encoded_at = now_ms()
        live = next(iter(newest.values())).live  # one version per batch
        items = live.items
        sids = await ctx.sids.assign(live.version, live.items, [(e.upload.item_id, e.vector) for e in newest.values()])
        rows = [
            item_row(e.upload.item_id, e.upload.creator_id, e.upload.created_at_ms, encoded_at, e.model_version, e.vector, sid)
            for e, sid in zip(newest.values(), sids)
        ]
        sid_of = {e.upload.item_id: sid for e, sid in zip(newest.values(), sids)}
        refused = await ctx.upsert_each(items, rows)
        stored = [e for index, e in enumerate(newest.values()) if index not in refused]
        if refused:
            await ctx.outbox.dead_letter_events(
                [(e.event, reasons.SINK_REJECTED, refused[index]) for index, e in enumerate(newest.values()) if index in refused]
            )
        acked_s = time.time()
        for e in stored:
            ctx.metrics.observe_item_freshness(max(acked_s - e.upload.created_at_ms / 1000, 0.0))
        records = []
        for e in stored:
            embedding = ItemEmbedding(
                item_id=e.upload.item_id,
                vector=e.vector.astype("<f4").tobytes(),
                dim=len(e.vector),
                model_version=e.model_version,
                created_at_ms=e.upload.created_at_ms,
                encoded_at_ms=encoded_at,
                creator_id=e.upload.creator_id,
                sid_codes=sid_of[e.upload.item_id].codes,
                sid_suffix=sid_of[e.upload.item_id].suffix,
                sid_codebook=sid_of[e.upload.item_id].codebook,
            )
            key = e.upload.item_id.encode()
            records.append((self.embeddings_topic, key, encode_item_embedding(embedding)))
            records.append((self.content_topic, key, e.event.value))  # the upload as it arrived: what a re-embed encodes again
        if self.priors and stored:
            records += await self._priors(live, stored)
        await ctx.outbox.send_all(records, f"produce {ctx.topics.item_embeddings.name} and {ctx.topics.item_content.name}")
        for e in stored:
            ctx.vectors.cache.put(items.name, e.upload.item_id, e.vector)
            ctx.vectors.model_versions[items.name] = e.model_version
