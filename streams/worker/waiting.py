"""Interactions whose item has no embedding yet: parked on the interactions-retry topic, sent back
once the item exists, or dead-lettered (`item.not_found`) once they have waited `item_wait_s` *and*
the content agent has processed every upload written before the interaction was seen, so a crash or
an outage upstream never turns a good interaction into a dead letter."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from streams.retry import backoff_s
from streams.sinks.kafka import oldest_pending
from streams.worker.context import Context
from streams.worker.events import now_ms
from topology import reasons
from topology.codec import BadInput, decode_interaction, decode_retry, encode_retry
from topology.messages import RetryEnvelope

logger = logging.getLogger(__name__)


def caught_up(oldest_pending_ms: Iterable[int | None], since_ms: int) -> bool:
    """True when no partition still holds an unprocessed record written at or before `since_ms`.
    A partition with lag whose oldest record could not be read (None) counts as not caught up."""
    return all(stamp is not None and stamp > since_ms for stamp in oldest_pending_ms)


class ItemWait:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.retry_topic = ctx.topic(ctx.topics.interactions_retry.name)
        self.interactions_topic = ctx.topic(ctx.topics.interactions.name)
        self._uploads_pending: tuple[float, list[int | None]] | None = None  # (checked at, oldest pending upload per partition)

    async def park(self, events: Sequence[Any]) -> None:
        """Put interactions whose item has no embedding yet on the retry topic, together."""
        s = self.ctx.settings
        first_seen = now_ms()
        records = []
        for event in events:
            message = event.message
            envelope = RetryEnvelope(
                original=event.value,
                source_topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                attempts=0,
                first_seen_ms=first_seen,
                not_before_ms=first_seen + int(s.item_retry_backoff_ms),
            )
            records.append((self.retry_topic, message.key, encode_retry(envelope)))
        await self.ctx.outbox.send_all(records, f"produce {self.ctx.topics.interactions_retry.name}")

    async def content_caught_up(self, since_ms: int) -> bool:
        """True once the group has processed every upload written up to `since_ms`. While the content
        agent is behind (a crash, Triton or Milvus down, a backlog) the item may still be on its way.
        Checked against Kafka at most once a second; unknown (Kafka unreachable) counts as behind."""
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
                return False
            checked = self._uploads_pending = (time.monotonic(), pending)
        return caught_up(checked[1], since_ms)

    async def handle(self, events: Sequence[Any]) -> None:
        """One batch of the retry topic: wait until its earliest record is due, look every item up at
        once, then send back what has its item, dead-letter what has waited long enough with every
        earlier upload processed, and park the rest again (unchanged if not due yet, else with a
        longer pause, at most `item_retry_backoff_max_ms`, so a late item's interactions follow it
        within about that)."""
        ctx = self.ctx
        s = ctx.settings
        await ctx.ensure_started()
        ctx.metrics.count_events("retry", len(events))
        parked: list[tuple[Any, RetryEnvelope, Any]] = []
        bad: list[tuple[Any, str, str]] = []
        for event in events:
            try:
                envelope = decode_retry(event.value, ctx.limits)
                parked.append((event, envelope, decode_interaction(envelope.original, ctx.limits)))
            except BadInput as exc:
                bad.append((event, exc.reason, exc.detail))
        if bad:
            await ctx.outbox.dead_letter_events(bad)
        if not parked:
            return
        wait_ms = min(envelope.not_before_ms for _, envelope, _ in parked) - now_ms()
        if wait_ms > 0:
            await ctx.retry.unless_stopping(asyncio.sleep(wait_ms / 1000))
        vectors = await ctx.vectors.get({interaction.item_id for _, _, interaction in parked}, (await ctx.live()).items)
        now = now_ms()
        records: list[tuple[Any, bytes | None, bytes]] = []
        letters = []
        for _, envelope, interaction in parked:
            key = interaction.user_id.encode()
            if interaction.item_id in vectors:
                records.append((self.interactions_topic, key, envelope.original))
                continue
            if envelope.not_before_ms > now:  # not its turn yet: back in the queue as it was
                records.append((self.retry_topic, key, encode_retry(envelope)))
                continue
            waited_s = (now - envelope.first_seen_ms) / 1000
            if waited_s >= s.item_wait_s and await self.content_caught_up(envelope.first_seen_ms):
                where = (envelope.source_topic, envelope.partition, envelope.offset)
                detail = f"item {interaction.item_id} had no embedding after {waited_s:.1f}s, with every earlier upload processed"
                letters.append((envelope.original, key, where, reasons.ITEM_NOT_FOUND, detail))
                continue
            pause_s = backoff_s(envelope.attempts + 1, s.item_retry_backoff_ms / 1000, s.item_retry_backoff_max_ms / 1000)
            again = RetryEnvelope(
                original=envelope.original,
                source_topic=envelope.source_topic,
                partition=envelope.partition,
                offset=envelope.offset,
                attempts=envelope.attempts + 1,
                first_seen_ms=envelope.first_seen_ms,
                not_before_ms=now + int(pause_s * 1000),
            )
            records.append((self.retry_topic, key, encode_retry(again)))
        await ctx.outbox.send_all(records, "produce interactions back and re-parked")
        if letters:
            await ctx.outbox.dead_letters(letters)
