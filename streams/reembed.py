"""Re-embedding the catalogue with a new encoder into a shadow `items` collection (issue 17, the backfill).

The source is the compacted item-content topic: the latest stored upload of every item, as it arrived.
The job reads it from its start up to the end offsets seen when the run began, under a consumer
group of its own (`<app_id>.reembed.<version>`), and for each batch: decodes the uploads, resolves
their media under the worker's policy, encodes them through the *target* Triton, upserts the rows into
`<items>__<version>`, then commits the batch's offsets. So a killed run restarts where its last
batch was stored: nothing committed is encoded again, and at most one batch is.

The target's `model_version` comes from a probe request before anything is read, and names both the
group and the shadow collection. Encoding is capped at `max_rate` items/s (a token bucket), so the
live content agent keeps the rest of a shared encoder. An upload the new encoder cannot take (its media
gone, a refusal) is counted and named, and the run goes on. Not done here yet: dual-writing fresh
uploads during the run, users' vectors, verification and the swap (issue 17's next parts).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from encoders.client import EncoderClient
from streams.ops.metrics import Metrics
from streams.sinks.kafka import consumer
from streams.sinks.media import MediaResolver
from streams.sinks.milvus import MilvusSink, ensure_collections
from streams.worker.retry import Retry
from topology.codec import BadInput, Limits, decode_upload
from topology.collections import CollectionSpec, item_row
from topology.messages import EncodeRequest
from topology.settings import Settings

logger = logging.getLogger(__name__)

PROBE = EncodeRequest(role="target", title="sail-stream re-embed: version probe")


def version_slug(model_version: str) -> str:
    """`model_version` as a Milvus name part and a consumer group suffix (letters, digits, '_')."""
    slug = re.sub(r"[^A-Za-z0-9_]", "_", model_version).strip("_")
    if not slug:
        raise ValueError(f"model version {model_version!r} has no letter or digit to name a collection after")
    return slug[:120]


def shadow_items(settings: Settings, model_version: str, dim: int) -> CollectionSpec:
    """The `items` collection of `model_version`, beside the live one: `<items>__<version>`."""
    items, _ = settings.collections()
    spec = replace(items, name=f"{items.name}__{version_slug(model_version)}")
    return replace(spec, fields=tuple(replace(f, dim=dim) if f.name == spec.vector_field else f for f in spec.fields))


@dataclass
class Backfill:
    """What one run did; `encoded` counts this run only (a resumed run starts from the committed offsets)."""

    model_version: str
    collection: str
    group: str
    total: int = 0  # records of item-content up to the end offsets seen at the start
    already_done: int = 0  # of those, committed by earlier runs
    processed: int = 0  # records this run read, stored (or refused) and committed
    encoded: int = 0  # rows this run stored
    refused: dict[str, str] = field(default_factory=dict)  # item (or offset) -> why the new encoder did not take it
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Records processed per second in this run."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0


class TokenBucket:
    """At most `rate` items per second on average, bursts of one batch; `rate` <= 0: no cap."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.at = clock()

    def wait_s(self, items: int) -> float:
        """Seconds to wait before `items` more may go; takes them (the balance may go negative)."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= items
        return max(-self.tokens / self.rate, 0.0)


def eta(done: int, total: int, rate: float) -> str:
    """`1m39s`-style time left at `rate` items/s ("?" before there is a rate)."""
    if rate <= 0:
        return "?"
    left = max(total - done, 0) / rate
    return f"{int(left // 60)}m{int(left % 60):02d}s" if left >= 60 else f"{left:.0f}s"


async def reembed(
    settings: Settings, target: EncoderClient, max_rate: float, batch: int = 32, progress: Callable[[str], None] = print, stop_after: int | None = None,
) -> Backfill:  # fmt: skip
    """Re-encode every item of the item-content topic into the shadow collection of `target`'s version.

    `stop_after`: stop once this run has processed at least that many records (a test's crash point).
    Triton and Milvus being down are waited for (the worker's retry policy, backing off); Kafka
    errors end the run, which a rerun resumes.
    """
    s = settings
    retry = Retry(Metrics(), s.retry_backoff_max_s)
    (probe,) = await retry.retrying("triton", "version probe", lambda: target.encode([PROBE]))
    if probe.vector is None:
        raise RuntimeError(f"the target encoder refused the version probe: {probe.error}")
    version = probe.model_version
    spec = shadow_items(s, version, len(probe.vector))
    ensure_collections(s.milvus_uri, s.milvus_token_value, [spec], s.milvus_backend, tls=s.milvus_tls())
    result = Backfill(model_version=version, collection=spec.name, group=f"{s.app_id}.reembed.{version_slug(version)}")
    topic = s.topics().item_content.name
    reader = consumer(s.kafka_bootstrap, s.kafka_security(), group_id=result.group, enable_auto_commit=False, auto_offset_reset="earliest",
                      max_poll_records=batch, max_partition_fetch_bytes=s.max_message_bytes + 128 * 1024)  # fmt: skip
    sink = MilvusSink.for_settings(s)
    media = MediaResolver(max_bytes=s.max_image_bytes, timeout_s=s.media_fetch_timeout_s, policy=s.media_policy())
    await sink.start()
    await media.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        reader.assign(partitions)
        ends = reader.end_offsets(partitions)
        starts = reader.beginning_offsets(partitions)
        committed = {tp: reader.committed(tp) for tp in partitions}
        for tp in partitions:
            reader.seek(tp, committed[tp] if committed[tp] is not None else starts[tp])
        result.total = sum(ends[tp] - starts[tp] for tp in partitions)
        result.already_done = sum((committed[tp] if committed[tp] is not None else starts[tp]) - starts[tp] for tp in partitions)
        progress(f"reembed: {result.total:,} items on {topic} -> {spec.name} ({version}); {result.already_done:,} done by an earlier run")
        bucket = TokenBucket(max_rate, batch)
        began = last_report = time.monotonic()
        while any(reader.position(tp) < ends[tp] for tp in partitions):
            polled = await asyncio.to_thread(reader.poll, 1000, batch)
            records = [r for tp, rs in polled.items() for r in rs if r.offset < ends[tp]]
            if not records:
                continue
            await asyncio.sleep(bucket.wait_s(len(records)))
            await _encode_and_store(records, s.limits(), target, media, sink, spec, result, retry)
            offsets = {}
            for r in records:
                tp = TopicPartition(r.topic, r.partition)
                offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
            await asyncio.to_thread(reader.commit, {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
            result.processed += len(records)
            result.seconds = time.monotonic() - began
            if time.monotonic() - last_report >= 5.0:
                last_report = time.monotonic()
                done = result.already_done + result.processed
                progress(f"reembed: {done:,} / {result.total:,} items ({100 * done / max(result.total, 1):.0f} %), "
                         f"{result.rate:.1f} items/s, ETA {eta(done, result.total, result.rate)}")  # fmt: skip
            if stop_after is not None and result.processed >= stop_after:
                break
        result.seconds = time.monotonic() - began
    finally:
        reader.close()
        await media.close()
        await sink.close()
    return result


async def _encode_and_store(
    records: list[Any], limits: Limits, target: EncoderClient, media: MediaResolver, sink: MilvusSink, spec: CollectionSpec, result: Backfill, retry: Retry
) -> None:  # fmt: skip
    from streams.worker.content import request_for

    ready = []
    for r in records:
        try:
            upload = decode_upload(r.value, limits)
            cover = await media.resolve(upload.cover, "cover")
            frames = [await media.resolve(f, f"frames[{i}]") for i, f in enumerate(upload.frames)]
            audio = await media.resolve(upload.audio, "audio")
        except BadInput as exc:
            result.refused[f"{r.topic}[{r.partition}]@{r.offset}"] = f"{exc.reason}: {exc.detail}"
            continue
        ready.append((upload, request_for(upload, cover, tuple(f for f in frames if f is not None), audio)))
    if not ready:
        return
    requests = [request for _, request in ready]
    encoded = await retry.retrying("triton", "re-embed", lambda: target.encode(requests))
    encoded_at = int(time.time() * 1000)
    rows = []
    for (upload, _), done in zip(ready, encoded):
        if done.vector is None:
            result.refused[upload.item_id] = f"{done.reason}: {done.error}"
        else:
            rows.append(item_row(upload.item_id, upload.creator_id, upload.created_at_ms, encoded_at, done.model_version, done.vector))
    refused = await retry.retrying("milvus", f"upsert {spec.name}", lambda: sink.upsert_each(spec, rows))
    for index, why in refused.items():
        result.refused[str(rows[index]["item_id"])] = f"refused by Milvus: {why}"
    result.encoded += len(rows) - len(refused)
