"""Re-embedding the catalogue with a new encoder into shadow collections (issue 17, the backfill).

Two phases, each reading one topic from its start up to the end offsets seen when the phase began,
under a consumer group of its own, and committing each batch after its effect:
1. items: the compacted item-content topic (the latest stored upload of every item, as it arrived):
   decode, resolve media under the worker's policy, encode through the *target* Triton, upsert into
   `<items>__<version>`;
2. users, once the items phase is complete: the workers' table changelog (every user's state): the
   newest state per user, its interest vectors by the same pure maths the worker uses
   (`streams.interest.maths`) over the new item vectors, upserted into `<users>__<version>` with
   the version on every row.
A killed run restarts where its last commit was: nothing committed is done again, at most one batch is.

The target's `model_version` comes from a probe request before anything is read, and names the groups
and the shadow collections. Encoding is capped at `max_rate` items/s (a token bucket), so the live
content agent keeps the rest of a shared encoder. An upload the new encoder cannot take (its media
gone, a refusal) is named in the result, and the run goes on. At the end the live and new collections'
rows are counted. Not done here yet: what arrives after a phase began (dual writes) and the swap
(issue 17's next parts).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from encoders.client import EncoderClient
from streams.interest.maths import InterestParams
from streams.ops.metrics import Metrics
from streams.sinks.kafka import consumer
from streams.sinks.media import MediaResolver
from streams.sinks.milvus import MilvusSink, check_milvus, ensure_collections, milvus_string
from streams.worker.retry import Retry
from topology.codec import BadInput, Limits, decode_interest_state, decode_upload
from topology.collections import CANARY, VECTOR_FIELD, CollectionSpec, item_row
from topology.messages import EncodeRequest
from topology.settings import Settings
from topology.topics import table_changelog

logger = logging.getLogger(__name__)

PROBE = EncodeRequest(role="target", title="sail-stream re-embed: version probe")


def version_slug(model_version: str) -> str:
    """`model_version` as a Milvus name part and a consumer group suffix (letters, digits, '_')."""
    slug = re.sub(r"[^A-Za-z0-9_]", "_", model_version).strip("_")
    if not slug:
        raise ValueError(f"model version {model_version!r} has no letter or digit to name a collection after")
    return slug[:120]


def shadow(spec: CollectionSpec, model_version: str, dim: int) -> CollectionSpec:
    """`spec`'s collection for `model_version`, beside the live one: `<name>__<version>`, `dim` wide."""
    return replace(
        spec, name=f"{spec.name}__{version_slug(model_version)}", fields=tuple(replace(f, dim=dim) if f.name == spec.vector_field else f for f in spec.fields)
    )


@dataclass
class Phase:
    """One topic read up to the end offsets seen when the phase began; counts of this run."""

    topic: str
    total: int = 0  # offsets up to those end offsets (on a compacted topic, its holes count too)
    already_done: int = 0  # of those, committed by earlier runs
    processed: int = 0  # records this run handled and committed
    seconds: float = 0.0
    complete: bool = False  # every partition read up to its end offset (by this run or earlier ones)

    @property
    def rate(self) -> float:
        """Records processed per second in this run."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Backfill:
    """What one run did: the items phase (item-content re-encoded), then, once it is complete, the users
    phase (every user's table state on the changelog, recomputed over the new item vectors)."""

    model_version: str
    items_collection: str
    users_collection: str
    group: str
    items: Phase
    users: Phase | None = None  # None: the items phase did not complete in this run
    encoded: int = 0  # item rows this run stored
    users_written: int = 0  # user states this run wrote: each batch's newest per user (a user whose newer state came in a later batch counts again; one with only negatives so far has no vector to write)
    refused: dict[str, str] = field(default_factory=dict)  # item, user or offset -> why it was not re-embedded
    counts: Counts | None = None  # live against new, once both phases are complete


@dataclass(frozen=True, slots=True)
class Counts:
    """Rows of the live collections and of the new version's, canaries left out."""

    live_items: int
    new_items: int
    live_users: int
    new_users: int

    @property
    def equal(self) -> bool:
        return (self.live_items, self.live_users) == (self.new_items, self.new_users)

    def explain(self) -> str:
        """One line on what the counts say, for the operator deciding on the swap."""
        line = f"items: {self.live_items:,} live, {self.new_items:,} new; user rows: {self.live_users:,} live, {self.new_users:,} new"
        if self.equal:
            return line + ": complete"
        return line + (": the new version lacks rows (uploads or users that arrived after the run began, which a rerun picks up; "
                       "items the new encoder refused; users none of whose items it has)")  # fmt: skip


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
    """Re-encode every item of the item-content topic into the shadow items collection of `target`'s
    version; then recompute every user's interest vectors from their table state over those vectors,
    into the shadow users collection.

    `stop_after`: end the items phase once this run has processed that many records (a test's crash
    point). Triton and Milvus being down are waited for (the worker's retry policy, backing off); Kafka
    errors end the run, which a rerun resumes.
    """
    s = settings
    retry = Retry(Metrics(), s.retry_backoff_max_s)
    (probe,) = await retry.retrying("triton", "version probe", lambda: target.encode([PROBE]))
    if probe.vector is None:
        raise RuntimeError(f"the target encoder refused the version probe: {probe.error}")
    version = probe.model_version
    live_items, live_users = s.collections()
    items, users = shadow(live_items, version, len(probe.vector)), shadow(live_users, version, len(probe.vector))
    ensure_collections(s.milvus_uri, s.milvus_token_value, [items, users], s.milvus_backend, tls=s.milvus_tls())
    group = f"{s.app_id}.reembed.{version_slug(version)}"
    result = Backfill(version, items.name, users.name, group, Phase(s.topics().item_content.name))
    sink = MilvusSink.for_settings(s)
    media = MediaResolver(max_bytes=s.max_image_bytes, timeout_s=s.media_fetch_timeout_s, policy=s.media_policy())
    await sink.start()
    await media.start()
    try:
        bucket = TokenBucket(max_rate, batch)

        async def encode(records: list[Any]) -> None:
            await asyncio.sleep(bucket.wait_s(len(records)))
            await _encode_and_store(records, s.limits(), target, media, sink, items, result, retry)

        await _drain(s, result.items, group, batch, encode, progress, f"-> {items.name} ({version})", stop_after)
        if result.items.complete:
            result.users = Phase(table_changelog(s.app_id))
            params = InterestParams.for_settings(s)

            async def recompute(records: list[Any]) -> None:
                await _recompute_users(records, s.limits(), params, sink, items, users, version, result, retry)

            await _drain(s, result.users, f"{group}.users", batch, recompute, progress, f"-> {users.name}")
            missing = {live_items.name, live_users.name} - set(check_milvus(s.milvus_uri, s.milvus_token_value, tls=s.milvus_tls()))
            if missing:
                progress(f"reembed: no live collection {', '.join(sorted(missing))} to compare with (SAIL_MILVUS_COLLECTION_PREFIX?)")
            elif result.users.complete:
                item_rows, user_rows = f"creator_id != {milvus_string(CANARY)}", f"user_id != {milvus_string(CANARY)}"  # not the workers' canaries
                counted = []
                for name, where in ((live_items.name, item_rows), (items.name, item_rows), (live_users.name, user_rows), (users.name, user_rows)):
                    counted.append(await retry.retrying("milvus", f"count {name}", partial(sink.count, name, where)))
                result.counts = Counts(*counted)
                progress(f"reembed: {result.counts.explain()}")
    finally:
        await media.close()
        await sink.close()
    return result


async def _drain(
    s: Settings, phase: Phase, group: str, batch: int, handle: Callable[[list[Any]], Awaitable[None]], progress: Callable[[str], None], what: str,
    stop_after: int | None = None,
) -> None:  # fmt: skip
    """Read `phase.topic` from the group's committed offsets up to the end offsets seen now, `batch`
    records at a time: `handle` them, then commit them. A rerun starts where the last commit was."""
    reader = consumer(s.kafka_bootstrap, s.kafka_security(), group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
                      max_poll_records=batch, max_partition_fetch_bytes=s.max_message_bytes + 128 * 1024)  # fmt: skip
    try:
        partitions = [TopicPartition(phase.topic, p) for p in sorted(reader.partitions_for_topic(phase.topic) or ())]
        reader.assign(partitions)
        ends, starts = reader.end_offsets(partitions), reader.beginning_offsets(partitions)
        committed = {tp: reader.committed(tp) for tp in partitions}
        for tp in partitions:
            reader.seek(tp, committed[tp] if committed[tp] is not None else starts[tp])
        phase.total = sum(ends[tp] - starts[tp] for tp in partitions)
        phase.already_done = sum((committed[tp] if committed[tp] is not None else starts[tp]) - starts[tp] for tp in partitions)
        progress(f"reembed: {phase.total:,} records on {phase.topic} {what}; {phase.already_done:,} done by an earlier run")
        began = last_report = time.monotonic()
        while any(reader.position(tp) < ends[tp] for tp in partitions):
            polled = await asyncio.to_thread(reader.poll, 1000, batch)
            records = [r for tp, rs in polled.items() for r in rs if r.offset < ends[tp]]
            if not records:
                continue
            await handle(records)
            offsets: dict[Any, int] = {}
            for r in records:
                tp = TopicPartition(r.topic, r.partition)
                offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
            await asyncio.to_thread(reader.commit, {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
            phase.processed += len(records)
            phase.seconds = time.monotonic() - began
            if time.monotonic() - last_report >= 5.0:
                last_report = time.monotonic()
                done = phase.already_done + phase.processed
                progress(f"reembed: {phase.topic} {done:,} / {phase.total:,} ({100 * done / max(phase.total, 1):.0f} %), "
                         f"{phase.rate:.1f} records/s, ETA {eta(done, phase.total, phase.rate)}")  # fmt: skip
            if stop_after is not None and phase.processed >= stop_after:
                break
        else:
            phase.complete = True
        phase.seconds = time.monotonic() - began
    finally:
        reader.close()


async def _encode_and_store(
    records: list[Any], limits: Limits, target: EncoderClient, media: MediaResolver, sink: MilvusSink, spec: CollectionSpec, result: Backfill, retry: Retry
) -> None:  # fmt: skip
    from streams.worker.content import resolve_request

    ready = []
    for r in records:
        try:
            upload = decode_upload(r.value, limits)
            ready.append((upload, await resolve_request(media, upload)))
        except BadInput as exc:
            result.refused[f"{r.topic}[{r.partition}]@{r.offset}"] = f"{exc.reason}: {exc.detail}"
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


async def _recompute_users(
    records: list[Any], limits: Limits, params: InterestParams, sink: MilvusSink, items: CollectionSpec, users: CollectionSpec, version: str,
    result: Backfill, retry: Retry,
) -> None:  # fmt: skip
    """Each user's newest state in `records` (changelog records, in offset order) -> their interest
    vectors over the new item vectors -> rows of the shadow users collection, named with `version`."""
    from streams.worker.interest import user_rows

    newest = {r.key.decode(): r for r in records if r.key is not None and r.value is not None}  # a later record of a user wins
    states = {}
    for user, r in newest.items():
        try:
            states[user] = decode_interest_state(r.value, limits)
        except BadInput as exc:
            result.refused[f"{r.topic}[{r.partition}]@{r.offset}"] = f"{exc.reason}: {exc.detail}"
    needed = sorted({item for state in states.values() for item in state.item_ids()})
    found = await retry.retrying("milvus", f"read {items.name}", lambda: sink.get(items.name, needed, [VECTOR_FIELD])) if needed else []
    vectors = {str(row[items.primary_key]): np.asarray(row[VECTOR_FIELD], dtype=np.float32) for row in found}
    rows = [row for user, state in states.items() for row in user_rows(user, state, vectors, params, version)]
    refused = await retry.retrying("milvus", f"upsert {users.name}", lambda: sink.upsert_each(users, rows)) if rows else {}
    for index, why in refused.items():
        result.refused[str(rows[index]["user_id"])] = f"refused by Milvus: {why}"
    result.users_written += len({row["user_id"] for row in rows}) - len({rows[i]["user_id"] for i in refused})
