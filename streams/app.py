"""The Faust app: content agent, interest agent, retry agent, item-embedding cache feed.

    content-uploads --> encode_uploads: decode -> resolve media -> Triton -> Milvus `items`
                                         -> item-embeddings topic -> ack
    interactions ----> update_interests: decode -> item vectors (cache, Milvus) -> pure interest
                                         maths -> Milvus `users` -> Faust table -> ack
                       (item unknown yet) -> interactions-retry --> retry_interactions: wait, then
                                         back to interactions, or dead letter `item.not_found`
    item-embeddings -> cache_item_vectors: the worker's in-memory item vector cache

Delivery: at-least-once, exactly-once effect. Each agent acknowledges a micro-batch itself, after
Milvus acknowledged the upserts and Kafka the produced records (`noack_take`; Faust's own take_events
acknowledges even a batch that failed), and Faust commits only contiguous acknowledged offsets
(`streams/commits.py`); Milvus rows are keyed, and interest states remember applied event ids, so a
replay overwrites with the same values.
Up to `content_in_flight` upload batches are in flight (`streams/inflight.py`): the next is encoded
while the last is stored, and stores, publishes and acknowledgements keep arrival order.
Bad input goes to the dead-letter topic; a down Triton/Milvus/Kafka is retried with jittered backoff
while the agent holds its batch, so no new events are pulled (backpressure) and nothing is dropped;
this retry loop is the only one (the clients try once; a slow Triton is waited for, not resent to). A record
Triton or Milvus refuses (a poison pill) is isolated from its batch (`streams.isolation`) and
dead-lettered with the dependency's message; the rest of the batch is stored. On shutdown every retry
loop stops at once and its batch stays unacknowledged, so it is redone after the restart.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import faust
import numpy as np
from aiokafka.errors import KafkaError

from encoders.client import EncoderClient, EncoderUnavailable, encoder_verdict
from encoders.signature import EncodeRequest, EncodeResult
from streams.commits import CommitRepair, install_strict_commits
from streams.inflight import Abandoned, InOrderPipeline
from streams.isolation import Isolated, isolate
from streams.interest import InterestParams, apply_interaction, decode_state, encode_state, interest_vectors
from streams.lag import caught_up, oldest_pending
from streams.media import MediaResolver
from streams.health import Thresholds
from streams.metrics import Metrics
from streams.status import LagWatch, dependency_states, render_status, status_json
from streams.sink import MilvusSink, MilvusUnavailable
from topology import reasons
from topology.codec import (
    Arrival,
    BadInput,
    decode_interaction,
    decode_item_embedding,
    decode_retry,
    decode_upload,
    encode_dead_letter,
    encode_item_embedding,
    encode_retry,
)
from topology.collections import CANARY, RECENT_ITEMS_CHARS, VECTOR_FIELD, CollectionSpec, user_key
from topology.messages import ContentUpload, DeadLetter, ItemEmbedding, RetryEnvelope
from topology.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT = (EncoderUnavailable, MilvusUnavailable, KafkaError, asyncio.TimeoutError)


def now_ms() -> int:
    return int(time.time() * 1000)


def arrival(event: Any) -> Arrival:
    """The record's key and arrival time: its Kafka timestamp, never later than now (a producer
    cannot move the arrival into the future; a replay checks against the same time as the first read)."""
    message = event.message
    stamped_ms = int((message.timestamp or 0) * 1000)
    return Arrival(key=message.key, at_ms=min(stamped_ms, now_ms()) if stamped_ms > 0 else now_ms())


class ShuttingDown(Exception):
    """The worker is stopping: the batch in hand is left unacknowledged, to be redone after a restart."""


class ConfigMismatch(RuntimeError):
    """The encoder's vectors do not fit the Milvus collections (SAIL_EMBEDDING_DIM)."""


@dataclass(frozen=True, slots=True)
class EncodedUpload:
    """An upload with its vector, between the two stages of a content batch."""

    event: Any
    upload: ContentUpload
    vector: np.ndarray
    model_version: str


class ItemCache:
    """Bounded LRU of item vectors in this worker, fed by the item-embeddings topic and Milvus reads."""

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


class Updater:
    """The worker's dependencies and per-batch logic; the agents in `create_app` call into it."""

    def __init__(self, settings: Settings, app: faust.App) -> None:
        s = settings
        self.settings = s
        self.app = app
        self.topics = s.topics()
        self.limits = s.limits()
        self.items, self.users = s.collections()
        self.params = InterestParams(
            window=s.interest_window, half_life_s=s.interest_half_life_s, negative_weight=s.interest_negative_weight, slots=s.interest_slots
        )
        self.metrics = Metrics()
        self.encoder = EncoderClient.for_settings(s, observe=self._observe_encode)
        self.content = InOrderPipeline[list[EncodedUpload]](s.content_in_flight)
        self.sink = MilvusSink.for_settings(s)
        self.media = MediaResolver(max_bytes=s.max_image_bytes, timeout_s=s.media_fetch_timeout_s, policy=s.media_policy())
        self.cache = ItemCache(s.item_cache_size)
        self._started = False
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        self._uploads_pending: tuple[float, list[int | None]] | None = None  # (checked at, oldest pending upload per partition)
        self.dead_letter_topic = app.topic(self.topics.dead_letters.name, key_serializer="raw", value_serializer="raw")
        self.embeddings_topic = app.topic(self.topics.item_embeddings.name, key_serializer="raw", value_serializer="raw")
        self.interactions_topic = app.topic(self.topics.interactions.name, key_serializer="raw", value_serializer="raw")
        self.retry_topic = app.topic(self.topics.interactions_retry.name, key_serializer="raw", value_serializer="raw")

    async def ensure_started(self) -> None:
        """Open the Triton, Milvus and HTTP clients once per worker (start-up, never import)."""
        async with self._lock:
            if not self._started:
                await self.encoder.start()
                await self.sink.start()
                await self.media.start()
                self._started = True

    async def stop(self) -> None:
        if self._started:
            await self.encoder.close()
            await self.sink.close()
            await self.media.close()
            self._started = False

    # ------------------------------------------------------------------ plumbing

    def _observe_encode(self, outcome: str, items: int, seconds: float) -> None:  # noqa: ARG002 - the client's observer signature
        self.metrics.triton_requests.labels(outcome).inc()
        if outcome == "abandoned":
            logger.warning("triton request of %d items passed its %.1fs deadline (abandoned; the next deadline doubles)", items, seconds)

    def sample_pipeline(self) -> None:
        """Export the content pipeline's state (in flight, time waited for a slot, deadline)."""
        self.metrics.content_in_flight.set(self.content.in_flight)
        self.metrics.note_pipeline_full(self.content.full_seconds())
        self.metrics.triton_deadline.set(self.encoder.deadline.seconds(self.content_batch_max))

    @property
    def content_batch_max(self) -> int:
        """The content agent's largest micro-batch: the setting, bounded by the model's max batch."""
        return min(self.settings.content_batch_max, self.settings.triton_max_batch_size)

    def begin_shutdown(self) -> None:
        """Stop every retry loop now (called before Faust waits for the agents to finish their batches)."""
        self._stopping.set()

    async def _unless_stopping(self, operation: Awaitable[T]) -> T:
        """`operation`, abandoned (cancelled) as soon as shutdown begins.

        Raises:
            ShuttingDown: the worker is stopping.
        """
        if self._stopping.is_set():
            if asyncio.iscoroutine(operation):
                operation.close()  # never started
            raise ShuttingDown
        work = asyncio.ensure_future(operation)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            work.cancel()
            raise
        finally:
            stop.cancel()
        if work not in done:
            work.cancel()
            raise ShuttingDown
        return work.result()

    async def retrying(self, dependency: str, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` until it succeeds, backing off on dependency failures (never drops).

        The pause doubles up to `retry_backoff_max_s` and is drawn between half and all of it
        ("equal jitter"), so workers that failed together do not come back together. This is the
        only retry layer: the clients under it try once.

        Raises:
            ShuttingDown: the worker began to stop; the operation may or may not have taken effect.
        """
        delay = 0.1
        while True:
            try:
                result = await self._unless_stopping(operation())
            except TRANSIENT as exc:
                busy = isinstance(exc, EncoderUnavailable) and exc.busy
                pause = delay * random.uniform(0.5, 1.0)
                if busy:  # refused before it was computed: the encoder is at capacity, not down
                    logger.info("encoder busy, retrying what=%s in %.2fs", what, pause)
                else:
                    self.metrics.dependency_errors.labels(dependency).inc()
                    self.metrics.dependency_up.labels(dependency).set(0)
                    logger.warning("dependency down, retrying dependency=%s what=%s in %.2fs error=%s", dependency, what, pause, str(exc).splitlines()[0][:200])
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=pause)
                except asyncio.TimeoutError:
                    pass
                delay = min(delay * 2, self.settings.retry_backoff_max_s)
                continue
            self.metrics.dependency_up.labels(dependency).set(1)
            return result

    async def send_all(self, records: Sequence[tuple[Any, bytes | None, bytes]], what: str) -> None:
        """Produce (topic, key, value) records together and wait for Kafka's acknowledgement of all of
        them; while Kafka is down, only the records it has not acknowledged are sent again."""
        pending = list(records)

        async def deliver(topic: Any, key: bytes | None, value: bytes) -> None:
            delivery = await topic.send(key=key, value=value, force=True)  # not attached to the event: sent now
            await delivery

        async def once() -> None:
            nonlocal pending
            outcomes = await asyncio.gather(*(deliver(*record) for record in pending), return_exceptions=True)
            pending = [record for record, outcome in zip(pending, outcomes) if isinstance(outcome, BaseException)]
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome

        if pending:
            await self.retrying("kafka", what, once)

    async def send(self, topic: Any, key: bytes | None, value: bytes) -> None:
        """Produce one record and wait for Kafka's acknowledgement (retried while Kafka is down)."""
        await self.send_all([(topic, key, value)], f"produce {topic.get_topic_name()}")

    async def dead_letter(self, original: bytes, key: bytes | None, source: tuple[str, int, int], reason: str, detail: str) -> None:
        await self.dead_letters([(original, key, source, reason, detail)])

    async def dead_letters(self, letters: Sequence[tuple[bytes, bytes | None, tuple[str, int, int], str, str]]) -> None:
        """Send (original, key, (topic, partition, offset), reason, detail) to the dead-letter topic together."""
        records = []
        for original, key, (topic, partition, offset), reason, detail in letters:
            letter = DeadLetter(original=original, source_topic=topic, partition=partition, offset=offset, reason=reason, detail=detail[:4000], key=key, failed_at_ms=now_ms())
            records.append((self.dead_letter_topic, key, encode_dead_letter(letter)))
        await self.send_all(records, "produce dead letters")
        for _, _, (topic, partition, offset), reason, detail in letters:
            self.metrics.dead_letters.labels(reason, topic).inc()
            logger.warning("dead-letter reason=%s tp=%s[%d]@%d detail=%s", reason, topic, partition, offset, detail[:200])

    async def dead_letter_events(self, refused: Sequence[tuple[Any, str, str]]) -> None:
        """Dead-letter (event, reason, detail) triples together."""
        await self.dead_letters([(e.value, e.message.key, (e.message.topic, e.message.partition, e.message.offset), r, d) for e, r, d in refused])

    async def dead_letter_event(self, event: Any, reason: str, detail: str) -> None:
        await self.dead_letter_events([(event, reason, detail)])

    async def item_vectors(self, item_ids: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors of the items that have one: the cache first, then one Milvus get for the rest."""
        found: dict[str, np.ndarray] = {}
        missing = []
        for item_id in set(item_ids):
            vector = self.cache.get(item_id)
            if vector is None:
                missing.append(item_id)
            else:
                found[item_id] = vector
        if missing:
            rows = await self.retrying("milvus", "get items", lambda: self.sink.get(self.items.name, missing, fields=[VECTOR_FIELD]))
            for row in rows:
                vector = np.asarray(row[VECTOR_FIELD], dtype=np.float32)
                self.cache.put(row["item_id"], vector)
                found[row["item_id"]] = vector
        return found

    # ------------------------------------------------------------------ content

    async def _request(self, upload: ContentUpload) -> EncodeRequest:
        cover = await self.media.resolve(upload.cover, "cover")
        frames = [await self.media.resolve(frame, f"frames[{i}]") for i, frame in enumerate(upload.frames)]
        audio = await self.media.resolve(upload.audio, "audio")
        return encode_request(upload, cover, tuple(f for f in frames if f is not None), audio)

    async def prepare_uploads(self, events: Sequence[Any]) -> list[EncodedUpload]:
        """The first stage of a batch: decode, resolve media, encode; dead-letters what fails on the
        way. Several batches may be here at once (`content_in_flight`)."""
        await self.ensure_started()
        self.metrics.count_events("content", len(events))
        self.metrics.content_batch.set(len(events))
        refused: list[tuple[Any, str, str]] = []
        accepted: list[tuple[Any, ContentUpload]] = []
        for event in events:
            try:
                accepted.append((event, decode_upload(event.value, self.limits, arrival(event))))
            except BadInput as exc:
                refused.append((event, exc.reason, exc.detail))
        resolved = await asyncio.gather(*(self._request(upload) for _, upload in accepted), return_exceptions=True)
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
            self.metrics.triton_batch.observe(len(requests))

            async def encode() -> Isolated[EncodeResult]:
                with self.metrics.timed(self.metrics.triton_seconds):
                    return await isolate(requests, self.encoder.encode, encoder_verdict, self.encoder.answers)

            results = await self.retrying("triton", "encode", encode)
            for index, (event, upload, _) in enumerate(ready):
                if index in results.rejected:
                    refused.append((event, reasons.ENCODER_REJECTED, results.rejected[index]))
                    continue
                result = results.done[index]
                if result.vector is None:
                    refused.append((event, result.reason or reasons.MEDIA_UNREADABLE, result.error))
                    continue
                if len(result.vector) != self.items.dim:
                    raise ConfigMismatch(f"encoder {result.model_version} gives dim {len(result.vector)}, SAIL_EMBEDDING_DIM is {self.items.dim}")
                encoded.append(EncodedUpload(event, upload, result.vector, result.model_version))
        if refused:
            await self.dead_letter_events(refused)
        return encoded

    async def store_uploads(self, encoded: Sequence[EncodedUpload]) -> None:
        """The second stage: upsert the rows, publish the embeddings (batches arrive here in order)."""
        newest: dict[str, EncodedUpload] = {}
        for item in encoded:
            previous = newest.get(item.upload.item_id)
            if previous is None or previous.upload.created_at_ms <= item.upload.created_at_ms:  # one row per key per upsert
                newest[item.upload.item_id] = item
        if not newest:
            return
        encoded_at = now_ms()
        rows = [
            {"item_id": e.upload.item_id, "creator_id": e.upload.creator_id, "created_at_ms": e.upload.created_at_ms, "encoded_at_ms": encoded_at,
             "model_version": e.model_version, VECTOR_FIELD: e.vector.tolist()}
            for e in newest.values()
        ]  # fmt: skip
        refused = await self.retrying("milvus", "upsert items", lambda: self._upsert_each(self.items, rows))
        stored = [e for index, e in enumerate(newest.values()) if index not in refused]
        if refused:
            await self.dead_letter_events([(e.event, reasons.SINK_REJECTED, refused[index]) for index, e in enumerate(newest.values()) if index in refused])
        acked_s = time.time()
        for e in stored:
            self.metrics.observe_item_freshness(max(acked_s - e.upload.created_at_ms / 1000, 0.0))
        records = []
        for e in stored:
            embedding = ItemEmbedding(
                item_id=e.upload.item_id, vector=e.vector.astype("<f4").tobytes(), dim=len(e.vector), model_version=e.model_version,
                created_at_ms=e.upload.created_at_ms, encoded_at_ms=encoded_at, creator_id=e.upload.creator_id,
            )  # fmt: skip
            records.append((self.embeddings_topic, e.upload.item_id.encode(), encode_item_embedding(embedding)))
        await self.send_all(records, f"produce {self.topics.item_embeddings.name}")
        for e in stored:
            self.cache.put(e.upload.item_id, e.vector)

    def cache_embedding(self, data: bytes) -> None:
        try:
            embedding = decode_item_embedding(data, self.limits)
        except BadInput as exc:
            logger.warning("ignoring malformed item embedding: %s", exc)
            return
        self.cache.put(embedding.item_id, np.frombuffer(embedding.vector, dtype="<f4").astype(np.float32))

    # ------------------------------------------------------------------ interest

    async def handle_interactions(self, events: Sequence[Any], table: Any) -> None:
        """One micro-batch of interactions; users' rows reach Milvus before their table state."""
        await self.ensure_started()
        self.metrics.count_events("interest", len(events))
        by_user: dict[str, list[tuple[Any, Any]]] = {}
        malformed: list[tuple[Any, str, str]] = []
        for event in events:
            try:
                interaction = decode_interaction(event.value, self.limits, arrival(event))
            except BadInput as exc:
                malformed.append((event, exc.reason, exc.detail))
                continue
            by_user.setdefault(interaction.user_id, []).append((event, interaction))
        if malformed:
            await self.dead_letter_events(malformed)
        if not by_user:
            return
        states = {user: decode_state(table.get(user.encode())) for user in by_user}
        needed = {i.item_id for pairs in by_user.values() for _, i in pairs} | {item for s in states.values() for item in s.item_ids()}
        vectors = await self.item_vectors(needed)
        changed = {}
        applied: dict[str, list[Any]] = {}
        waiting: list[Any] = []
        for user, pairs in by_user.items():
            state = states[user]
            for event, interaction in pairs:
                if state.has_applied(interaction.event_id):
                    continue
                if interaction.item_id not in vectors:
                    waiting.append(event)
                    continue
                state = apply_interaction(state, interaction, self.params)
                applied.setdefault(user, []).append(event)
            if state is not states[user]:
                changed[user] = state
        if waiting:
            await self._wait_for_items(waiting)
        rows = []
        for user, state in changed.items():
            slots = interest_vectors(state, vectors, self.params)
            if slots is None:
                continue  # negatives only so far: no interest vector to write yet
            for slot, vector in enumerate(slots):
                rows.append({"user_key": user_key(user, slot), "user_id": user, "slot": slot, "updated_at_ms": state.updated_at_ms,
                             "event_count": state.event_count, "model_version": "", "recent_item_ids": recent_items_field(state),
                             VECTOR_FIELD: vector.tolist()})  # fmt: skip
        if rows:
            refused = await self.retrying("milvus", "upsert users", lambda: self._upsert_each(self.users, rows))
            letters = []
            for user, reason in {rows[i]["user_id"]: message for i, message in refused.items()}.items():
                del changed[user]  # the user's state stays as Milvus has it; this batch's events of theirs are dead letters
                letters += [(event, reasons.SINK_REJECTED, reason) for event in applied[user]]
            if letters:
                await self.dead_letter_events(letters)
            acked_s = time.time()
            for user in {r["user_id"] for r in rows} & changed.keys():
                newest_ms = max(i.timestamp_ms for _, i in by_user[user])
                self.metrics.user_freshness.observe(max(acked_s - newest_ms / 1000, 0.0))
        for user, state in changed.items():
            table[user.encode()] = encode_state(state)
        await self.retrying("kafka", "flush table changelog", self.app.producer.flush)

    async def probe_freshness(self) -> None:
        """Write a canary item and time how long until a recall search at the recall consistency
        level returns it (`sail_item_freshness_seconds{stage="searchable"}`); then delete it.
        Abandoned when the worker begins to stop (the clients close under it)."""
        try:
            await self._unless_stopping(self._probe_freshness())
        except ShuttingDown:
            return

    async def _probe_freshness(self) -> None:
        await self.ensure_started()
        canary = f"{CANARY}-{self.settings.worker_web_port}"
        vector = np.random.default_rng().standard_normal(self.items.dim).astype(np.float32)
        vector /= np.linalg.norm(vector)
        written = time.time()
        row = {"item_id": canary, "creator_id": CANARY, "created_at_ms": int(written * 1000), "encoded_at_ms": int(written * 1000),
               "model_version": "canary", VECTOR_FIELD: vector.tolist()}  # fmt: skip
        try:
            await self.sink.upsert(self.items.name, [row])
            deadline = written + 30
            while time.time() < deadline:
                hits = await self.sink.search(self.items.name, vector[None, :], limit=1, vector_field=VECTOR_FIELD, consistency=self.settings.recall_consistency)
                if hits and hits[0] and hits[0][0].id == canary:
                    self.metrics.observe_item_freshness(time.time() - written, stage="searchable")
                    break
                await asyncio.sleep(0.05)
            await self.sink.delete(self.items.name, [canary])
            self.metrics.dependency_up.labels("milvus").set(1)
        except MilvusUnavailable as exc:
            self.metrics.dependency_errors.labels("milvus").inc()
            self.metrics.dependency_up.labels("milvus").set(0)
            logger.warning("freshness probe failed: %s", str(exc).splitlines()[0][:200])

    async def _upsert_each(self, spec: CollectionSpec, rows: list[dict[str, Any]]) -> dict[int, str]:
        """Upsert what Milvus accepts of `rows`; the refused ones by index, with the reason."""
        with self.metrics.timed(self.metrics.milvus_seconds.labels(spec.name)):
            return await self.sink.upsert_each(spec, rows)

    async def _wait_for_items(self, events: Sequence[Any]) -> None:
        """Park interactions whose item has no embedding yet on the retry topic, together."""
        first_seen = now_ms()
        records = []
        for event in events:
            message = event.message
            envelope = RetryEnvelope(
                original=event.value, source_topic=message.topic, partition=message.partition, offset=message.offset,
                attempts=0, first_seen_ms=first_seen, not_before_ms=first_seen + int(self.settings.item_retry_backoff_ms),
            )  # fmt: skip
            records.append((self.retry_topic, message.key, encode_retry(envelope)))
        await self.send_all(records, f"produce {self.topics.interactions_retry.name}")

    async def content_caught_up(self, since_ms: int) -> bool:
        """True once the group has processed every upload written up to `since_ms`. While the content
        agent is behind (a crash, Triton or Milvus down, a backlog) the item may still be on its way.
        Checked against Kafka at most once a second; unknown (Kafka unreachable) counts as behind."""
        checked = self._uploads_pending
        if checked is None or time.monotonic() - checked[0] > 1.0:
            try:
                pending = await asyncio.to_thread(oldest_pending, self.settings.kafka_bootstrap, self.settings.kafka_security(), self.settings.app_id, self.topics.uploads.name)
            except Exception as exc:  # noqa: BLE001 - kafka-python admin errors of every kind mean "unknown"
                logger.warning("cannot read the content agent's progress, the interaction keeps waiting: %s", str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
                return False
            checked = self._uploads_pending = (time.monotonic(), pending)
        return caught_up(checked[1], since_ms)

    async def handle_retry(self, event: Any) -> None:
        """An interaction whose item had no embedding: wait for its turn, then send it back to the
        interactions topic once the item exists, or dead-letter it once it has waited `item_wait_s`
        and the content agent has processed every upload written before the interaction was seen
        (so a crash or an outage upstream never turns a good interaction into a dead letter)."""
        await self.ensure_started()
        self.metrics.count_events("retry", 1)
        try:
            envelope = decode_retry(event.value, self.limits)
            interaction = decode_interaction(envelope.original, self.limits)
        except BadInput as exc:
            await self.dead_letter_event(event, exc.reason, exc.detail)
            return
        wait_ms = envelope.not_before_ms - now_ms()
        if wait_ms > 0:
            await self._unless_stopping(asyncio.sleep(wait_ms / 1000))
        key = interaction.user_id.encode()
        if interaction.item_id in await self.item_vectors([interaction.item_id]):
            await self.send(self.interactions_topic, key, envelope.original)
            return
        waited_s = (now_ms() - envelope.first_seen_ms) / 1000
        if waited_s >= self.settings.item_wait_s and await self.content_caught_up(envelope.first_seen_ms):
            source = (envelope.source_topic, envelope.partition, envelope.offset)
            await self.dead_letter(envelope.original, key, source, reasons.ITEM_NOT_FOUND, f"item {interaction.item_id} had no embedding after {waited_s:.1f}s, with every earlier upload processed")
            return
        backoff_ms = min(self.settings.item_retry_backoff_ms * 2 ** (envelope.attempts + 1), self.settings.retry_backoff_max_s * 1000)
        again = RetryEnvelope(
            original=envelope.original, source_topic=envelope.source_topic, partition=envelope.partition, offset=envelope.offset,
            attempts=envelope.attempts + 1, first_seen_ms=envelope.first_seen_ms, not_before_ms=now_ms() + int(backoff_ms),
        )  # fmt: skip
        await self.send(self.retry_topic, key, encode_retry(again))


def encode_request(upload: ContentUpload, cover: bytes | None, frames: tuple[bytes, ...], audio: bytes | None) -> EncodeRequest:
    """What the encoder is asked for an upload, once its media bytes are in hand."""
    return EncodeRequest(
        role="target", title=upload.title, ocr_text=upload.ocr_text, asr_text=upload.asr_text, author_nickname=upload.author_nickname,
        tags=upload.tags, cover=cover, frames=frames, audio=audio,
    )  # fmt: skip


def inline_request(upload: ContentUpload) -> EncodeRequest:
    """`encode_request` for an upload whose media are all inline (benchmarks, fault checks)."""
    cover, audio = (m.data if m is not None else None for m in (upload.cover, upload.audio))
    return encode_request(upload, cover, tuple(f.data for f in upload.frames if f.data is not None), audio)


def recent_items_field(state: Any) -> str:
    """The window's item ids, newest first, cut to the collection's VARCHAR limit (UTF-8 bytes;
    identifiers never contain the comma, see `topology.codec.ID_FORBIDDEN_CHARS`)."""
    ids = list(dict.fromkeys(s.item_id for s in sorted((*state.positives, *state.negatives), key=lambda s: s.order, reverse=True)))
    text = ",".join(ids)
    while len(text.encode()) > RECENT_ITEMS_CHARS and ids:
        ids.pop()
        text = ",".join(ids)
    return text


def _credentials(settings: Settings) -> Any:
    security = settings.kafka_security()
    context = None
    if security.protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=str(security.ssl_cafile) if security.ssl_cafile else None)
        if security.ssl_certfile:
            context.load_cert_chain(str(security.ssl_certfile), str(security.ssl_keyfile) if security.ssl_keyfile else None)
    if security.protocol.startswith("SASL_"):
        password = security.sasl_password.get_secret_value() if security.sasl_password else None
        return faust.SASLCredentials(username=security.sasl_username, password=password, mechanism=security.sasl_mechanism, ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


async def acknowledge(stream: Any, events: Sequence[Any]) -> None:
    """Acknowledge events whose effects are durable (Faust commits an offset once it is acked)."""
    for event in events:
        await stream.ack(event)


class SailApp(faust.App):
    """The Faust app, stopping the agents' retry loops before Faust waits for their batches.

    faust-streaming's stop first waits for every event handed to an agent to be acknowledged
    (`stream_wait_empty`); an agent retrying a down dependency never acknowledges, so a worker
    ignored SIGTERM for as long as the outage lasted. Here the retry loops end at once and their
    batches stay unacknowledged (uncommitted), to be redone by whoever owns the partition next.
    """

    before_stop: Callable[[], None] | None = None

    async def on_stop(self) -> None:
        if self.before_stop is not None:
            self.before_stop()
        self.conf.stream_wait_empty = False  # the unacknowledged batches are abandoned, not awaited
        await super().on_stop()


def worker_dir(settings: Settings) -> Path:
    """Faust's data folder for one worker (one per web port, so workers on a host do not collide)."""
    return (settings.state_dir / "faust" / f"{settings.app_id}-{settings.worker_web_port}").resolve()


def create_app(settings: Settings) -> tuple[faust.App, Updater]:
    """The Faust app with every agent wired to one `Updater`; nothing connects until the worker starts."""
    s = settings
    app = SailApp(
        s.app_id,
        broker=[f"kafka://{address.strip()}" for address in s.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(s),
        store="memory://",  # state is rebuilt from the table's changelog topic on start
        topic_partitions=s.topic_partitions,
        topic_replication_factor=s.topic_replication_factor,
        datadir=str(worker_dir(s)),
        web_enabled=True,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=s.worker_web_port,
        producer_max_request_size=s.max_message_bytes + 128 * 1024,
        consumer_max_fetch_size=s.max_message_bytes + 128 * 1024,
        broker_commit_interval=1.0,
        broker_session_timeout=s.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, s.kafka_session_timeout_s / 3),
        stream_buffer_maxsize=1024,
    )
    updater = Updater(s, app)
    app.before_stop = updater.begin_shutdown
    topics = s.topics()
    sources = [topics.uploads.name, topics.interactions.name, topics.interactions_retry.name]  # effects must be durable before a commit
    install_strict_commits(sources)
    uploads = app.topic(topics.uploads.name, key_serializer="raw", value_serializer="raw")
    interactions = app.topic(topics.interactions.name, key_serializer="raw", value_serializer="raw")
    embeddings = app.topic(topics.item_embeddings.name, key_serializer="raw", value_serializer="raw")
    retries = app.topic(topics.interactions_retry.name, key_serializer="raw", value_serializer="raw")
    # Keyed by user_id like the interactions topic; the producer's partitioner places each user's
    # changelog records in the partition of that user's interactions, as co-partitioning requires.
    interests = app.Table(
        "user-interest", default=None, partitions=s.topic_partitions, key_type=bytes, value_type=bytes, use_partitioner=True
    )

    # Every source agent acknowledges an event itself, after its effect is durable: Faust's take_events
    # and events() acknowledge in a `finally`, i.e. also when the body raised or was cancelled
    # (a shutdown or a rebalance mid-batch), which commits events whose effect never happened.
    # Uploads: up to `content_in_flight` batches at once (streams/inflight.py), stored and
    # acknowledged in order. A batch holds what is waiting, up to the model's max batch: one or two
    # uploads when idle, full batches once the in-flight slots are taken and a backlog builds.
    @app.agent(uploads)
    async def encode_uploads(stream: faust.StreamT) -> None:
        pipeline = updater.content
        try:
            async for events in stream.noack_take(updater.content_batch_max, within=s.content_batch_wait_ms / 1000):
                batch = list(events)
                await pipeline.submit(partial(updater.prepare_uploads, batch), updater.store_uploads, partial(acknowledge, stream, batch))
            await pipeline.drain()
        except (ShuttingDown, Abandoned):
            return  # unacknowledged: redone after the restart
        finally:
            await pipeline.cancel()  # what is still in flight is never acknowledged

    @app.agent(interactions)
    async def update_interests(stream: faust.StreamT) -> None:
        async for events in stream.noack_take(s.interest_batch_max, within=s.interest_batch_wait_ms / 1000):
            try:
                await updater.handle_interactions(events, interests)
            except ShuttingDown:
                return
            await acknowledge(stream, events)

    @app.agent(retries)
    async def retry_interactions(stream: faust.StreamT) -> None:
        manual = stream.noack()
        async for event in manual.events():
            try:
                await updater.handle_retry(event)
            except ShuttingDown:
                return
            await acknowledge(manual, [event])

    @app.agent(embeddings)
    async def cache_item_vectors(stream: faust.StreamT) -> None:
        async for event in stream.events():
            updater.cache_embedding(event.value)

    watch = LagWatch(
        s.kafka_bootstrap, s.kafka_security(), s.app_id,
        [topics.uploads.name, topics.interactions.name, topics.interactions_retry.name, topics.item_embeddings.name],
        window=max(3, int(120 / s.status_interval_s)),
    )  # fmt: skip
    thresholds = Thresholds(lag_seconds_degraded=s.lag_seconds_degraded, freshness_p99_slo_s=s.freshness_slo_s, stall_window_s=s.stall_window_s)

    def current_status() -> dict[str, object]:
        metrics = updater.metrics
        verdict = watch.verdict(dependency_states(metrics), metrics.freshness_percentiles().get("p99"), thresholds, metrics.saturation())
        return status_json(watch, metrics, verdict)

    @app.timer(s.status_interval_s)
    async def sample_lag() -> None:
        updater.sample_pipeline()
        try:
            await watch.sample(updater.metrics)
            updater.metrics.dependency_up.labels("kafka").set(1)
        except Exception as exc:  # noqa: BLE001 - a failed sample is reported, the worker goes on
            updater.metrics.dependency_up.labels("kafka").set(0)
            logger.warning("lag sample failed: %s", str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)

    @app.timer(max(s.status_interval_s, 5.0) * 3)
    async def probe_freshness() -> None:
        await updater.probe_freshness()

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:  # noqa: ARG001 - Faust view signature
        return web.bytes(updater.metrics.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/status")
    async def status_page(web: Any, request: Any) -> Any:  # noqa: ARG001
        return web.html(render_status(current_status(), f"sail-stream worker :{s.worker_web_port}", refresh_s=int(max(s.status_interval_s, 2))))

    @app.page("/status.json")
    async def status_data(web: Any, request: Any) -> Any:  # noqa: ARG001
        return web.json(current_status())

    repair = CommitRepair(lambda: app.consumer, [*sources, topics.item_embeddings.name], contiguous=sources)

    @app.timer(10.0)
    async def repair_commits() -> None:
        for fix in await repair.check():
            updater.metrics.commit_repairs.labels(fix.kind, fix.topic).inc()
            logger.warning("repaired a Faust offset-commit fault kind=%s tp=%s[%d]: %s", fix.kind, fix.topic, fix.partition, fix.detail)

    @app.timer(30.0)
    async def log_progress() -> None:
        logger.info("progress events_per_s=%s freshness=%s", updater.metrics.rates(), updater.metrics.freshness_percentiles())

    return app, updater


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run one worker until SIGINT/SIGTERM; several share the partitions of one consumer group."""
    worker_dir(settings).mkdir(parents=True, exist_ok=True)
    app, updater = create_app(settings)

    @app.on_before_shutdown.connect  # type: ignore[misc]
    async def close_clients(app: faust.App, **kwargs: Any) -> None:  # noqa: ARG001 - Faust signal signature
        await updater.stop()

    worker = faust.Worker(app, loglevel=loglevel)
    # Faust's terminal spinner, kept at warning level and above, sets the root logger to DEBUG so that it
    # spins on every record: every debug call of aiokafka, grpc and Faust then built a LogRecord (~5 %
    # of a busy worker's CPU). A worker's output is a log, not a terminal.
    worker.spinner = None
    # kafka-python (the lag sampler's admin client) logs every connection at INFO: keep its warnings only
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    logging.getLogger("kafka.net.sasl.plain").setLevel(logging.ERROR)  # "password in the clear" on every lag sample under SASL_PLAINTEXT
    worker.execute_from_commandline()
