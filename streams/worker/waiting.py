"""Interactions whose item has no embedding yet: parked on the interactions-retry topic, then held
in the reading worker's memory, by item, until the item is stored; dead-lettered (`item.not_found`)
only once they have waited `item_wait_s` *and* the content agent has processed every upload written
before the interaction was seen, so a crash or an outage upstream never turns a good interaction into
a dead letter.

A parked record is read once and held unacknowledged (its offset uncommitted: a crash or a rebalance
redelivers it to whoever owns the partition next). Every `item_hold_poll_ms` the worker looks the held
items up at once and sends back what has its item, so an interaction follows its item within about
that. One held longer than `item_hold_s` is parked again (a new record, the old one acknowledged), so
a partition's commits move at least that often during a long outage and the topic is read about
once per `item_hold_s` per waiting interaction, never in a loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from streams.sinks.kafka import oldest_pending
from streams.worker.context import Context
from streams.worker.events import acknowledge, now_ms
from topology import reasons
from topology.codec import BadInput, decode_interaction, decode_retry, encode_retry
from topology.messages import Interaction, RetryEnvelope

logger = logging.getLogger(__name__)


def processed_until(oldest_pending_ms: Iterable[int | None]) -> float:
    """The moment (ms) before which every record was processed: the oldest unprocessed record's
    timestamp over all partitions; +inf with no lag anywhere, -inf when a partition with lag could
    not be read (None). An interaction seen at `t` has every earlier upload processed iff `t` is
    before it."""
    stamps = list(oldest_pending_ms)
    if any(stamp is None for stamp in stamps):
        return float("-inf")
    return float(min((stamp for stamp in stamps if stamp is not None), default=float("inf")))


@dataclass(slots=True)
class Held:
    """One parked record being held: the retry topic's event (acknowledged once settled), the
    stream that delivered it, its envelope and the interaction inside, and when it was read."""

    event: Any
    stream: Any
    envelope: RetryEnvelope
    interaction: Interaction
    read_ms: int

    @property
    def where(self) -> tuple[Any, int]:
        """The retry record's partition and offset: one held copy per record."""
        return (self.event.message.tp, self.event.message.offset)


class Lot:
    """Held interactions by item (pure bookkeeping, no I/O). A record delivered again (a rebalance
    back to this worker) replaces the copy held before."""

    def __init__(self) -> None:
        self._by_item: dict[str, dict[tuple[Any, int], Held]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, held: Held) -> None:
        group = self._by_item.setdefault(held.interaction.item_id, {})
        self._size += held.where not in group
        group[held.where] = held

    def items(self) -> list[str]:
        return list(self._by_item)

    def __iter__(self) -> Iterator[Held]:
        return (held for group in self._by_item.values() for held in group.values())

    def take(self, item_ids: Iterable[str]) -> list[Held]:
        """Remove and return everything held for these items."""
        out: list[Held] = []
        for item in item_ids:
            out += self._by_item.pop(item, {}).values()
        self._size -= len(out)
        return out

    def take_where(self, settle: Callable[[Held], bool]) -> list[Held]:
        """Remove and return every held interaction for which `settle` is true."""
        out: list[Held] = []
        for item in list(self._by_item):
            group = self._by_item[item]
            for where, held in list(group.items()):
                if settle(held):
                    out.append(group.pop(where))
            if not group:
                del self._by_item[item]
        self._size -= len(out)
        return out


class ItemWait:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.retry_topic = ctx.topic(ctx.topics.interactions_retry.name)
        self.interactions_topic = ctx.topic(ctx.topics.interactions.name)
        self.lot = Lot()
        self._uploads_pending: tuple[float, list[int | None]] | None = None  # (checked at, oldest pending upload per partition)

    async def park(self, events: Sequence[tuple[Any, bytes]]) -> None:
        """Put interactions whose item has no embedding yet on the retry topic, together: each as
        (the record it came in, its own bytes as a single-event record)."""
        first_seen = now_ms()
        records = []
        for event, original in events:
            message = event.message
            envelope = RetryEnvelope(
                original=original,
                source_topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                attempts=0,
                first_seen_ms=first_seen,
                not_before_ms=first_seen,
            )
            records.append((self.retry_topic, message.key, encode_retry(envelope)))
        await self.ctx.outbox.send_all(records, f"produce {self.ctx.topics.interactions_retry.name}")
        self.ctx.metrics.parked.inc(len(records))

    async def uploads_processed_until(self) -> float:
        """`processed_until` of the uploads topic for the group: every upload written before it was
        processed (stored). While the content agent is behind (a crash, Triton or Milvus down, a backlog)
        an item may still be on its way. Read from Kafka at most once a second; unknown (Kafka
        unreachable) is -inf: nothing counts as processed."""
        s = self.ctx.settings
        checked = self._uploads_pending
        if checked is None or time.monotonic() - checked[0] > 1.0:
            try:
                pending = await asyncio.to_thread(
                    oldest_pending, s.kafka_bootstrap, s.kafka_security(), s.app_id, self.ctx.topics.uploads.name
                )
            except Exception as exc:
                logger.warning(
                    "cannot read the content agent's progress, the interaction keeps waiting: %s",
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                )
                return float("-inf")
            checked = self._uploads_pending = (time.monotonic(), pending)
        return processed_until(checked[1])

    async def hold(self, stream: Any, events: Sequence[Any]) -> None:
        """Take one batch of the retry topic into the lot (malformed records are dead-lettered and
        acknowledged at once). Waits while the lot is full (`item_hold_max`): the topic then waits in
        Kafka, unread."""
        ctx = self.ctx
        await ctx.ensure_started()
        ctx.metrics.count_events("retry", len(events))
        bad: list[tuple[Any, str, str]] = []
        read = now_ms()
        for event in events:
            try:
                envelope = decode_retry(event.value, ctx.limits)
                held = Held(event, stream, envelope, decode_interaction(envelope.original, ctx.limits), read)
            except BadInput as exc:
                bad.append((event, exc.reason, exc.detail))
                continue
            self.lot.add(held)
        ctx.metrics.waiting.set(len(self.lot))
        if bad:
            await ctx.outbox.dead_letter_events(bad)
            await acknowledge(stream, [event for event, _, _ in bad])
        while len(self.lot) >= ctx.settings.item_hold_max:
            await ctx.retry.unless_stopping(asyncio.sleep(ctx.settings.item_hold_poll_ms / 1000))

    async def run(self) -> None:
        """Settle the lot every `item_hold_poll_ms` until the worker stops (a stop leaves what is held
        unacknowledged: redelivered after the restart)."""
        pause_s = self.ctx.settings.item_hold_poll_ms / 1000
        while True:
            await self.ctx.retry.unless_stopping(asyncio.sleep(pause_s))
            try:
                await self.settle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ShuttingDown included: the caller ends the loop on it
                if self.ctx.retry.stopping.is_set():
                    raise
                logger.exception("settling the waiting interactions failed, trying again: %s", exc)

    async def settle(self) -> None:
        """Send back what has its item now, dead-letter what waited long enough with every earlier
        upload processed, park again what was held past `item_hold_s`; drop (unacknowledged) what
        sits on a partition this worker no longer owns."""
        ctx, lot = self.ctx, self.lot
        s = ctx.settings
        if not len(lot):
            return
        assigned = set(ctx.app.consumer.assignment())
        lot.take_where(lambda h: h.event.message.tp not in assigned)  # the new owner reads them again
        now = now_ms()
        wait_ms, hold_ms = s.item_wait_s * 1000, s.item_hold_s * 1000
        # The content agent's progress is read before the items are looked up, never after: an item
        # stored while Kafka is being read (seconds, with a broker down) is then found by the lookup,
        # where a lookup made first would miss it and the progress read after it would count its upload
        # as processed, dead-lettering a good interaction (the soak's loss, 2026-12-03).
        # Only what was looked up is judged: `hold` adds to the lot while this waits on Kafka and Milvus, and
        # a record added meanwhile (a restarted worker's redelivered backlog, first seen long ago) would
        # otherwise count as "not found" without a lookup (the soak's CI failure, 2026-12-03).
        waited = any(now - h.envelope.first_seen_ms >= wait_ms for h in lot)
        horizon = await self.uploads_processed_until() if waited else float("-inf")
        asked = lot.items()
        vectors = await ctx.vectors.get(asked, (await ctx.live()).items)
        ready = lot.take(vectors)
        looked_up = set(asked)
        due = lot.take_where(
            lambda h: (
                h.interaction.item_id in looked_up and (now - h.envelope.first_seen_ms >= wait_ms or now - h.read_ms >= hold_ms)
            )
        )
        letters, dead, again, kept = [], [], [], []
        for held in due:
            envelope, key = held.envelope, held.interaction.user_id.encode()
            waited_s = (now - envelope.first_seen_ms) / 1000
            if now - envelope.first_seen_ms >= wait_ms and envelope.first_seen_ms < horizon:
                where = (envelope.source_topic, envelope.partition, envelope.offset)
                detail = (
                    f"item {held.interaction.item_id} had no embedding after {waited_s:.1f}s, with every earlier upload processed"
                )
                letters.append((envelope.original, key, where, reasons.ITEM_NOT_FOUND, detail))
                dead.append(held)
            elif now - held.read_ms >= hold_ms:
                again.append(held)
            else:
                kept.append(held)  # waited long enough, but uploads before it are still being processed
        for held in kept:
            lot.add(held)
        records: list[tuple[Any, bytes | None, bytes]] = [
            (self.interactions_topic, h.interaction.user_id.encode(), h.envelope.original) for h in ready
        ]
        for held in again:
            e = held.envelope
            renewed = RetryEnvelope(e.original, e.source_topic, e.partition, e.offset, e.attempts + 1, e.first_seen_ms, now)
            records.append((self.retry_topic, held.interaction.user_id.encode(), encode_retry(renewed)))
        if records:
            await ctx.outbox.send_all(records, "produce interactions back and re-parked")
        if letters:
            await ctx.outbox.dead_letters(letters)
        for held in ready + again + dead:
            await acknowledge(held.stream, [held.event])
        for held in ready:
            ctx.metrics.waited_seconds.observe(max(now - held.envelope.first_seen_ms, 0) / 1000)
        ctx.metrics.waiting.set(len(lot))
