"""Faust events as the agents see them: when a record arrived, and acknowledging it once its effect
is durable (Faust commits an offset only over acknowledged events, `streams.worker.commits`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from topology.codec import Arrival


def now_ms() -> int:
    return int(time.time() * 1000)


def arrival(event: Any) -> Arrival:
    """The record's key and arrival time: its Kafka timestamp, never later than now (a producer
    cannot move the arrival into the future; a replay checks against the same time as the first read)."""
    message = event.message
    stamped_ms = int((message.timestamp or 0) * 1000)
    return Arrival(key=message.key, at_ms=min(stamped_ms, now_ms()) if stamped_ms > 0 else now_ms())


def source(event: Any) -> tuple[str, int, int]:
    """(topic, partition, offset) of the record the event carries."""
    return (event.message.topic, event.message.partition, event.message.offset)


async def acknowledge(stream: Any, events: Sequence[Any]) -> None:
    """Acknowledge events whose effects are durable."""
    for event in events:
        await stream.ack(event)
