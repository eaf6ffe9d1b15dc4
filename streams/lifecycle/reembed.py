"""Moving a live deployment to a new model without downtime (issue 17): backfill, follow, swap, rollback.

1. **Register** the new version as the *shadow* in the model-version registry (`topology.versions`), with
   its own collections `<items>__<version>` and `<users>__<version>` and the Triton that encodes for it.
2. **Backfill**, in two phases. Each reads one topic from its start up to the end offsets seen when
   the phase began, under a consumer group of its own, and commits each batch after its effect:
   - items: the compacted item-content topic (the latest stored upload of every item, as it arrived):
     decode, resolve media under the worker's policy, encode through the *new* Triton, upsert;
   - users, once the items phase is complete: the workers' table changelog (every user's state): the
     newest state per user, its interest vectors by the worker's own maths over the new item vectors.
   A killed run restarts where its last commit was: nothing committed is done again, at most one batch is.
3. **Follow**: the same groups read on to the topics' new ends, round after round, until a round finds
   little new. This is the dual write. The workers keep writing the live version at full speed, and each
   upload they store and each state they change reaches item-content and the changelog, which the re-embed
   encodes into the new version as well. Fresh uploads keep their priority: the workers encode them first,
   and the re-embed's share of the encoder is capped at `max_rate` items/s (a token bucket).
4. **Count and swap**: the new version must hold at least the rows the live one held before the last
   round. Then the swap:
   - the live version's own groups are committed at the topics' current ends, to be read on from there
     by a rollback;
   - one upsert of the registry row names the new version live and the old one *previous*, kept until
     `keep_s` from now;
   - workers and recall APIs switch within SAIL_VERSION_REFRESH_S (their next batch or request);
   - the re-embed follows the new version for `grace_s` more, for the batches the workers had in
     flight under the old version.
5. **Rollback** (`rollback`): read the previous version's groups on from the swap's marks, through its
   own Triton, then swap back the same way. **Retire** (`retire`): drop the previous version's
   collections once its window is over.
"""

from __future__ import annotations

import asyncio
import logging
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
from streams.lifecycle.registry import Versions
from streams.ops.metrics import Metrics
from streams.ops.pacing import TokenBucket
from streams.retry import Retry
from streams.sinks.kafka import consumer
from streams.sinks.media import MediaResolver
from streams.sinks.milvus import MilvusSink, check_milvus, drop_collections, ensure_collections, milvus_string
from topology.codec import BadInput, Limits, decode_interest_state, decode_upload
from topology.collections import CANARY, VECTOR_FIELD, CollectionSpec, item_row
from topology.messages import EncodeRequest
from topology.settings import Settings
from topology.topics import table_changelog
from topology.versions import Registry, Version, shadow, version_slug

logger = logging.getLogger(__name__)

PROBE = EncodeRequest(role="target", title="sail-stream re-embed: version probe")
Say = Callable[[str], None]


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


@dataclass(frozen=True, slots=True)
class Counts:
    """Rows of the live collections (read first) and of the new version's (read after a last follow
    round), canaries left out."""

    live_items: int
    new_items: int
    live_users: int
    new_users: int

    @property
    def complete(self) -> bool:
        """The new version holds at least what the live one held: what arrived meanwhile may add rows."""
        return self.new_items >= self.live_items and self.new_users >= self.live_users

    def explain(self) -> str:
        """One line on what the counts say, for the operator deciding on the swap."""
        line = (
            f"items: {self.live_items:,} live, {self.new_items:,} new; "
            f"user rows: {self.live_users:,} live, {self.new_users:,} new"
        )
        if self.complete:
            return line + ": complete"
        return line + (
            ": the new version lacks rows (items the new encoder refused, users none of whose items it has, "
            "or uploads arriving faster than the re-embed follows)"
        )


@dataclass(frozen=True, slots=True)
class Swap:
    """A registry swap: from which version to which, how long the registry write took, and what the
    grace period read afterwards (batches the workers had in flight under the old version)."""

    from_version: str
    to_version: str
    write_s: float
    grace_records: int


@dataclass
class Backfill:
    """What one run did (see the module's steps)."""

    model_version: str
    items_collection: str
    users_collection: str
    group: str
    items: Phase
    users: Phase | None = None  # None: nothing to do (the target's version is already live)
    followed: int = 0  # records read after the two phases (what arrived while they ran)
    encoded: int = 0  # item rows this run stored
    # user states this run wrote: each batch's newest per user (a user whose newer state came in a later
    # batch counts again; one with only negatives so far has no vector to write)
    users_written: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # item, user or offset -> why it was not re-embedded
    pending: dict[str, Any] = field(
        default_factory=dict
    )  # user -> newest state, written while an item of it had no new vector yet: rewritten once it has
    counts: Counts | None = None  # live against new, once both phases are complete
    swap: Swap | None = None
    not_swapped: str = ""  # why there was no swap


def eta(done: int, total: int, rate: float) -> str:
    """`1m39s`-style time left at `rate` items/s ("?" before there is a rate)."""
    if rate <= 0:
        return "?"
    left = max(total - done, 0) / rate
    return f"{int(left // 60)}m{int(left % 60):02d}s" if left >= 60 else f"{left:.0f}s"


def group_for(settings: Settings, version: Version) -> str:
    """The consumer group that writes `version` from item-content (its users phase: `+ ".users"`)."""
    return f"{settings.app_id}.reembed.{version_slug(version.model_version)}"


class Writer:
    """Writes one version from the two topics: item-content -> its items, the changelog -> its users."""

    def __init__(
        self,
        s: Settings,
        version: Version,
        encoder: EncoderClient,
        sink: MilvusSink,
        media: MediaResolver,
        retry: Retry,
        result: Backfill,
        max_rate: float,
        batch: int,
    ) -> None:
        self.s, self.version, self.encoder, self.sink, self.media, self.retry, self.result, self.batch = (
            s,
            version,
            encoder,
            sink,
            media,
            retry,
            result,
            batch,
        )
        self.items, self.users = version.specs(*s.collections())
        self.group = group_for(s, version)
        self.bucket = TokenBucket(max_rate, batch)
        self.params = InterestParams.for_settings(s)

    async def _encode(self, records: list[Any]) -> None:
        await asyncio.sleep(self.bucket.wait_s(len(records)))
        await _encode_and_store(
            records, self.s.limits(), self.encoder, self.media, self.sink, self.items, self.result, self.retry
        )

    async def _recompute(self, records: list[Any]) -> None:
        await _recompute_users(
            records,
            self.s.limits(),
            self.params,
            self.sink,
            self.items,
            self.users,
            self.version.model_version,
            self.result,
            self.retry,
        )

    def changelog_ends(self) -> dict[Any, int]:
        """The changelog's end offsets now. Taken *before* an items phase begins, they bound the users
        phase after it: every state up to them was written after its items were stored, so their
        item-content records are (all but always) within the items phase."""
        return _end_offsets(self.s, table_changelog(self.s.app_id))

    async def items_phase(self, phase: Phase, progress: Say) -> None:
        await _drain(
            self.s, phase, self.group, self.batch, self._encode, progress, f"-> {self.items.name} ({self.version.model_version})"
        )
        if self.result.pending:  # users written before an item of theirs had its new vector: rewritten now that it may have
            pending, self.result.pending = self.result.pending, {}
            await _write_users(
                pending, self.params, self.sink, self.items, self.users, self.version.model_version, self.result, self.retry
            )

    async def users_phase(self, phase: Phase, progress: Say, ends: dict[Any, int]) -> None:
        # the workers' interest batch, not the encoder's: no encoder here, and a user's many changelog records fold into one write
        batch = max(self.batch, self.s.interest_batch_max)
        await _drain(self.s, phase, f"{self.group}.users", batch, self._recompute, progress, f"-> {self.users.name}", ends=ends)

    async def round(self) -> int:
        """Items, then users, each up to the ends seen now; the records read."""
        topics = self.s.topics()
        items, users = Phase(topics.item_content.name), Phase(table_changelog(self.s.app_id))
        ends = await asyncio.to_thread(self.changelog_ends)
        await self.items_phase(items, _quiet)
        await self.users_phase(users, _quiet, ends)
        return items.processed + users.processed

    async def catch_up(self, progress: Say, rounds: int = 20) -> int:
        """Rounds until one reads less than a batch (what arrives meanwhile is little); the records read."""
        total = 0
        for n in range(rounds):
            got = await self.round()
            total += got
            if got < self.batch:
                break
            progress(f"reembed: follow round {n + 1} read {got:,} records that arrived meanwhile")
        return total

    async def follow_for(self, seconds: float) -> int:
        """Rounds for `seconds`; the records read."""
        total, until = 0, time.monotonic() + seconds
        while time.monotonic() < until:
            total += await self.round()
            await asyncio.sleep(0.5)
        return total


def _quiet(line: str) -> None:
    return None


def _end_offsets(s: Settings, topic: str) -> dict[Any, int]:
    reader = consumer(s.kafka_bootstrap, s.kafka_security())
    try:
        return dict(reader.end_offsets([TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]))
    finally:
        reader.close()


def mark_ends(s: Settings, version: Version) -> None:
    """Commit `version`'s groups at the topics' current ends: a later writer of it reads on from here."""
    group = group_for(s, version)
    for group_id, topic in ((group, s.topics().item_content.name), (f"{group}.users", table_changelog(s.app_id))):
        _commit_ends(s, group_id, topic)


def _commit_ends(s: Settings, group: str, topic: str) -> None:
    reader = consumer(s.kafka_bootstrap, s.kafka_security(), group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        reader.assign(partitions)
        reader.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in reader.end_offsets(partitions).items()})
    finally:
        reader.close()


class Session:
    """The clients one command needs: Milvus, media, the registry, the retry policy."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.retry = Retry(Metrics(), settings.retry_backoff_max_s)
        self.sink = MilvusSink.for_settings(settings)
        self.media = MediaResolver(
            max_bytes=settings.max_image_bytes, timeout_s=settings.media_fetch_timeout_s, policy=settings.media_policy()
        )
        spec, default = settings.registry()
        self.registry_spec = spec
        self.versions = Versions(self.sink, spec, default)

    async def __aenter__(self) -> Session:
        ensure_collections(
            self.s.milvus_uri, self.s.milvus_token_value, [self.registry_spec], self.s.milvus_backend, tls=self.s.milvus_tls()
        )
        await self.sink.start()
        await self.media.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.media.close()
        await self.sink.close()

    async def registry(self) -> Registry:
        return await self.retry.retrying("milvus", "read the model-version registry", self.versions.read)

    async def write(self, registry: Registry) -> float:
        """Write the registry row; the seconds the write took."""
        began = time.perf_counter()
        await self.retry.retrying("milvus", "write the model-version registry", lambda: self.versions.write(registry))
        return time.perf_counter() - began

    async def probe(self, encoder: EncoderClient, what: str) -> tuple[str, int]:
        """(model_version, dim) of the encoder behind `encoder`."""
        (probe,) = await self.retry.retrying("triton", f"{what} version probe", lambda: encoder.encode([PROBE]))
        if probe.vector is None:
            raise RuntimeError(f"the {what} encoder refused the version probe: {probe.error}")
        return probe.model_version, len(probe.vector)

    async def counts(self, live: Version, new: Version, before_new: Callable[[], Awaitable[object]]) -> Counts:
        item_rows, user_rows = (
            f"creator_id != {milvus_string(CANARY)}",
            f"user_id != {milvus_string(CANARY)}",
        )  # not the workers' canaries

        async def count(name: str, where: str) -> int:
            return await self.retry.retrying("milvus", f"count {name}", partial(self.sink.count, name, where))

        live_items, live_users = await count(live.items, item_rows), await count(live.users, user_rows)
        await before_new()
        return Counts(live_items, await count(new.items, item_rows), live_users, await count(new.users, user_rows))

    async def previous(self, purpose: str) -> tuple[Registry, Version]:
        """The registry and its previous version.

        Raises:
            RuntimeError: the registry names no previous version.
        """
        registry = await self.registry()
        if registry.previous is None:
            raise RuntimeError(f"the model-version registry names no previous version to {purpose}")
        return registry, registry.previous

    async def swap(self, writer: Writer, old: Version, keep_s: float, grace_s: float, progress: Say) -> Swap:
        """Mark the old version's ends, name `writer`'s version live in one registry write, then follow
        it for `grace_s` (the workers' batches in flight under the old version)."""
        await asyncio.to_thread(mark_ends, self.s, old)
        registry = await self.registry()
        write_s = await self.write(registry.swapped_to(writer.version, int(time.time() * 1000), int(keep_s * 1000)))
        progress(
            f"reembed: swapped: {writer.version.model_version} is live ({writer.items.name}, {writer.users.name}); "
            f"{old.model_version} kept for a rollback; following the new version {grace_s:.0f}s for batches in flight"
        )
        grace = await writer.follow_for(grace_s)
        return Swap(old.model_version, writer.version.model_version, write_s, grace)


async def reembed(
    settings: Settings,
    target: EncoderClient,
    max_rate: float,
    batch: int = 32,
    progress: Say = print,
    target_url: str = "",
    swap: bool = True,
    grace_s: float = 15.0,
    keep_s: float = 86400.0,
    live_encoder: EncoderClient | None = None,
) -> Backfill:
    """Register, backfill, follow, count and (with `swap`) swap to `target`'s version (the module's steps).

    `target_url`: where the workers reach `target` after the swap (the registry keeps it). `live_encoder`:
    the workers' encoder, probed to name the live version when the registry has not named it yet.
    Triton and Milvus being down are waited for (the worker's retry policy, backing off); Kafka
    errors end the run, which a rerun resumes.
    """
    s = settings
    async with Session(s) as session:
        version, dim = await session.probe(target, "target")
        registry = await session.registry()
        live = registry.live
        if (
            not live.model_version and live_encoder is not None
        ):  # a deployment from before the registry: name what its workers run
            live = replace(live, model_version=(await session.probe(live_encoder, "live"))[0])
        items, users = shadow(s.collections()[0], version, dim), shadow(s.collections()[1], version, dim)
        new = Version(version, items.name, users.name, dim, target_url)
        result = Backfill(version, items.name, users.name, group_for(s, new), Phase(s.topics().item_content.name))
        if version == live.model_version:
            result.not_swapped = f"{version} is already live"
            progress(f"reembed: {result.not_swapped}: nothing to do")
            return result
        if registry.shadow is not None and registry.shadow.model_version != version:
            progress(f"reembed: replacing the registered shadow {registry.shadow.model_version} with {version}")
        ensure_collections(s.milvus_uri, s.milvus_token_value, [items, users], s.milvus_backend, tls=s.milvus_tls())
        if registry.shadow != new or registry.live != live:
            await session.write(replace(registry.with_shadow(new), live=live))
        writer = Writer(s, new, target, session.sink, session.media, session.retry, result, max_rate, batch)
        changelog_ends = await asyncio.to_thread(writer.changelog_ends)
        await writer.items_phase(result.items, progress)
        result.users = Phase(table_changelog(s.app_id))
        await writer.users_phase(result.users, progress, changelog_ends)
        result.followed = await writer.catch_up(progress)
        missing = {live.items, live.users} - set(
            await asyncio.to_thread(check_milvus, s.milvus_uri, s.milvus_token_value, tls=s.milvus_tls())
        )
        if missing:
            result.not_swapped = (
                f"no live collection {', '.join(sorted(missing))} to compare with (SAIL_MILVUS_COLLECTION_PREFIX?)"
            )
            progress(f"reembed: {result.not_swapped}")
            return result

        async def last_round() -> None:
            result.followed += await writer.round()

        result.counts = await session.counts(live, new, last_round)
        progress(f"reembed: {result.counts.explain()}")
        if result.pending:
            progress(
                f"reembed: {len(result.pending):,} users' vectors lack an item the new encoder has no vector for (refused or "
                f"still to come): e.g. {next(iter(result.pending))}"
            )
        if not result.counts.complete:
            result.not_swapped = "the new version lacks rows"
        elif not live.model_version:
            result.not_swapped = (
                "the live version has no name to keep it under for a rollback (the workers' encoder was not probed)"
            )
        elif result.refused:
            result.not_swapped = f"{len(result.refused)} items or users were refused"
        elif not swap:
            result.not_swapped = "asked not to swap"
        else:
            result.swap = await session.swap(writer, live, keep_s, grace_s, progress)
        if result.not_swapped:
            progress(f"reembed: not swapped: {result.not_swapped}")
    return result


async def rollback(
    settings: Settings, encoder: Callable[[Version], EncoderClient], progress: Say = print, grace_s: float = 15.0, batch: int = 32
) -> Swap:
    """Bring the previous version up to date from the swap's marks (through `encoder(previous)`), then
    swap back to it; the version rolled back from becomes the previous one, kept as long as before.

    Raises:
        RuntimeError: the registry names no previous version.
    """
    s = settings
    async with Session(s) as session:
        registry, previous = await session.previous("roll back to")
        client = encoder(previous)
        await client.start()
        try:
            result = Backfill(
                previous.model_version,
                previous.items,
                previous.users,
                group_for(s, previous),
                Phase(s.topics().item_content.name),
            )
            writer = Writer(s, previous, client, session.sink, session.media, session.retry, result, 0, batch)
            progress(f"reembed --rollback: bringing {previous.model_version} up to date from the swap's marks")
            read = await writer.catch_up(progress)
            progress(f"reembed --rollback: {read:,} records read, {result.encoded:,} items re-encoded")
            if result.refused:
                raise RuntimeError(
                    f"{len(result.refused)} items or users could not be brought up to date, e.g. "
                    f"{next(iter(result.refused.items()))}"
                )
            keep_s = max(registry.keep_until_ms / 1000 - time.time(), 0.0)
            return await session.swap(writer, registry.live, keep_s, grace_s, progress)
        finally:
            await client.close()


async def retire(settings: Settings, progress: Say = print, force: bool = False) -> list[str]:
    """Drop the previous version's collections (its rollback window over, or `force`); the names dropped.

    Raises:
        RuntimeError: no previous version, or its window is not over.
    """
    s = settings
    async with Session(s) as session:
        registry, previous = await session.previous("retire")
        left_s = registry.keep_until_ms / 1000 - time.time()
        if left_s > 0 and not force:
            raise RuntimeError(
                f"{previous.model_version} is kept for a rollback {left_s / 3600:.1f} h more (--force drops it now)"
            )
        await session.write(registry.retired())
        keep = {registry.live.items, registry.live.users}
        dropped = drop_collections(
            s.milvus_uri, s.milvus_token_value, [n for n in (previous.items, previous.users) if n not in keep], tls=s.milvus_tls()
        )
        progress(f"reembed --retire: {previous.model_version} retired; dropped {', '.join(dropped) or 'nothing'}")
        return dropped


async def _drain(
    s: Settings,
    phase: Phase,
    group: str,
    batch: int,
    handle: Callable[[list[Any]], Awaitable[None]],
    progress: Callable[[str], None],
    what: str,
    ends: dict[Any, int] | None = None,
) -> None:
    """Read `phase.topic` from the group's committed offsets up to the end offsets seen now (or `ends`),
    `batch` records at a time: `handle` them, then commit them. A rerun starts where the last commit was."""
    reader = consumer(
        s.kafka_bootstrap,
        s.kafka_security(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch,
        max_partition_fetch_bytes=s.max_message_bytes + 128 * 1024,
    )
    try:
        partitions = [TopicPartition(phase.topic, p) for p in sorted(reader.partitions_for_topic(phase.topic) or ())]
        reader.assign(partitions)
        ends = {tp: ends[tp] for tp in partitions} if ends is not None else reader.end_offsets(partitions)
        starts = reader.beginning_offsets(partitions)
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
                progress(
                    f"reembed: {phase.topic} {done:,} / {phase.total:,} ({100 * done / max(phase.total, 1):.0f} %), "
                    f"{phase.rate:.1f} records/s, ETA {eta(done, phase.total, phase.rate)}"
                )
        phase.complete = True
        phase.seconds = time.monotonic() - began
    finally:
        reader.close()


async def _encode_and_store(
    records: list[Any],
    limits: Limits,
    target: EncoderClient,
    media: MediaResolver,
    sink: MilvusSink,
    spec: CollectionSpec,
    result: Backfill,
    retry: Retry,
) -> None:
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
            rows.append(
                item_row(upload.item_id, upload.creator_id, upload.created_at_ms, encoded_at, done.model_version, done.vector)
            )
    refused = await retry.retrying("milvus", f"upsert {spec.name}", lambda: sink.upsert_each(spec, rows))
    for index, why in refused.items():
        result.refused[str(rows[index]["item_id"])] = f"refused by Milvus: {why}"
    result.encoded += len(rows) - len(refused)


async def _recompute_users(
    records: list[Any],
    limits: Limits,
    params: InterestParams,
    sink: MilvusSink,
    items: CollectionSpec,
    users: CollectionSpec,
    version: str,
    result: Backfill,
    retry: Retry,
) -> None:
    """Each user's newest state in `records` (changelog records, in offset order) -> `_write_users`."""
    newest = {r.key.decode(): r for r in records if r.key is not None and r.value is not None}  # a later record of a user wins
    states = {}
    for user, r in newest.items():
        try:
            states[user] = decode_interest_state(r.value, limits)
        except BadInput as exc:
            result.refused[f"{r.topic}[{r.partition}]@{r.offset}"] = f"{exc.reason}: {exc.detail}"
    await _write_users(states, params, sink, items, users, version, result, retry)


async def _write_users(
    states: dict[str, Any],
    params: InterestParams,
    sink: MilvusSink,
    items: CollectionSpec,
    users: CollectionSpec,
    version: str,
    result: Backfill,
    retry: Retry,
) -> None:
    """The users' interest vectors over the new item vectors -> rows of the new users collection, named
    with `version`. A user with an item the new collection lacks is written with what it has and kept
    in `result.pending`, to be written again after the next items phase."""
    from streams.worker.interest import user_rows

    needed = sorted({item for state in states.values() for item in state.item_ids()})
    found = (
        await retry.retrying("milvus", f"read {items.name}", lambda: sink.get(items.name, needed, [VECTOR_FIELD]))
        if needed
        else []
    )
    vectors = {str(row[items.primary_key]): np.asarray(row[VECTOR_FIELD], dtype=np.float32) for row in found}
    for user, state in states.items():
        if state.item_ids() - vectors.keys():
            result.pending[user] = state
        else:
            result.pending.pop(user, None)
    rows = [row for mine in user_rows(states, vectors, params, version).values() for row in mine]
    refused = await retry.retrying("milvus", f"upsert {users.name}", lambda: sink.upsert_each(users, rows)) if rows else {}
    for index, why in refused.items():
        result.refused[str(rows[index]["user_id"])] = f"refused by Milvus: {why}"
    result.users_written += len({row["user_id"] for row in rows}) - len({rows[i]["user_id"] for i in refused})
