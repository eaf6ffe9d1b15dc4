"""What the worker writes to Kafka besides its table: produced records acknowledged together, and
dead letters with their reason. Sends are retried while Kafka is down (only what it has not
acknowledged is sent again), so nothing is dropped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from streams.ops.metrics import Metrics
from streams.retry import Retry
from streams.worker.events import now_ms, source
from topology.codec import encode_dead_letter
from topology.messages import DeadLetter

logger = logging.getLogger(__name__)

Record = tuple[Any, bytes | None, bytes]  # (Faust topic, key, value)
Letter = tuple[bytes, bytes | None, tuple[str, int, int], str, str]  # (original, key, (topic, partition, offset), reason, detail)


class Outbox:
    def __init__(self, retry: Retry, metrics: Metrics, dead_letter_topic: Any) -> None:
        self.retry = retry
        self.metrics = metrics
        self.dead_letter_topic = dead_letter_topic

    async def send_all(self, records: Sequence[Record], what: str) -> None:
        """Produce (topic, key, value) records together and wait for Kafka's acknowledgement of all of
        them; while Kafka is down, only the records it has not acknowledged are sent again."""
        pending = list(records)

        async def once() -> None:
            nonlocal pending
            # Straight to the producer, not through Faust's topic.send: no per-record message objects and
            # no task per record (hundreds of records per batch); the same bytes, partitioned by key.
            deliveries = []
            for topic, key, value in pending:
                try:
                    deliveries.append(
                        await topic.app.producer.send(
                            topic.get_topic_name(), key, value, partition=None, timestamp=None, headers=None
                        )
                    )
                except Exception as exc:
                    failed = asyncio.get_running_loop().create_future()
                    failed.set_exception(exc)
                    deliveries.append(failed)
            outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
            pending = [record for record, outcome in zip(pending, outcomes) if isinstance(outcome, BaseException)]
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome

        if pending:
            await self.retry.retrying("kafka", what, once)

    async def write_table(self, table: Any, values: dict[bytes, bytes]) -> None:
        """Set keys of a Faust table and wait until Kafka acknowledged their changelog records.

        What `table[key] = value` and a producer flush do, but sent together: Faust's own path queues
        each changelog record in its producer buffer, which sends one record per event-loop turn
        (~100 ms for a batch's 240 states here, with the agent waiting). The records are the same:
        raw bytes (Faust serialises no bytes value), partitioned by key as Faust's `use_partitioner`
        tables are.
        """
        for key, value in values.items():
            table.data[key] = value
        changelog = table.changelog_topic
        await self.send_all([(changelog, key, value) for key, value in values.items()], f"write {changelog.get_topic_name()}")

    async def send(self, topic: Any, key: bytes | None, value: bytes) -> None:
        """Produce one record and wait for Kafka's acknowledgement (retried while Kafka is down)."""
        await self.send_all([(topic, key, value)], f"produce {topic.get_topic_name()}")

    async def dead_letters(self, letters: Sequence[Letter]) -> None:
        """Send (original, key, (topic, partition, offset), reason, detail) to the dead-letter topic together."""
        records = []
        for original, key, (topic, partition, offset), reason, detail in letters:
            letter = DeadLetter(
                original=original,
                source_topic=topic,
                partition=partition,
                offset=offset,
                reason=reason,
                detail=detail[:4000],
                key=key,
                failed_at_ms=now_ms(),
            )
            records.append((self.dead_letter_topic, key, encode_dead_letter(letter)))
        await self.send_all(records, "produce dead letters")
        for _, _, (topic, partition, offset), reason, detail in letters:
            self.metrics.dead_letters.labels(reason, topic).inc()
            logger.warning("dead-letter reason=%s tp=%s[%d]@%d detail=%s", reason, topic, partition, offset, detail[:200])

    async def dead_letter_events(self, refused: Sequence[tuple[Any, str, str]]) -> None:
        """Dead-letter (event, reason, detail) triples together."""
        await self.dead_letters([(e.value, e.message.key, source(e), r, d) for e, r, d in refused])
