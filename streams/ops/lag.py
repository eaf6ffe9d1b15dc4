"""Consumer lag in messages and in seconds, per group and partition, from Kafka alone.

Messages behind = log-end offset - committed offset. Seconds behind = how old the oldest unprocessed
record is: now - timestamp of the record at the committed offset (0 when nothing is behind). Both
come from the admin API and a short read, so they are right even when every worker is down.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from streams.sinks.kafka import pending_records
from topology.settings import KafkaSecurity


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group_id: str
    topic: str
    partition: int
    committed: int
    end: int
    messages_behind: int
    seconds_behind: float


def lag_of(committed: int, end: int, oldest_unprocessed_ms: int | None, now_ms: int) -> tuple[int, float]:
    """(messages behind, seconds behind) of one partition; pure, `now_ms` passed in."""
    behind = max(end - committed, 0)
    if behind == 0 or oldest_unprocessed_ms is None:
        return behind, 0.0
    return behind, max(now_ms - oldest_unprocessed_ms, 0) / 1000.0


def read_lag(bootstrap: str, security: KafkaSecurity, group_id: str, topics: Iterable[str], now_ms: int) -> list[PartitionLag]:
    """Lag of `group_id` on each partition of `topics`."""
    offsets, stamps = pending_records(bootstrap, security, group_id, topics)
    rows = []
    for topic, parts in offsets.items():
        for partition, (done, end) in sorted(parts.items()):
            messages, seconds = lag_of(done, end, stamps.get((topic, partition)), now_ms)
            rows.append(PartitionLag(group_id, topic, partition, done, end, messages, round(seconds, 3)))
    return rows


def format_table(rows: Sequence[PartitionLag]) -> str:
    """Per-partition rows, then one total per topic (messages summed, seconds the worst)."""
    table = [("GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG (MSGS)", "LAG (S)")]
    for r in rows:
        table.append(
            (
                r.group_id,
                r.topic,
                str(r.partition),
                str(r.committed),
                str(r.end),
                str(r.messages_behind),
                f"{r.seconds_behind:.1f}",
            )
        )
    for topic in dict.fromkeys(r.topic for r in rows):
        mine = [r for r in rows if r.topic == topic]
        table.append(
            (
                mine[0].group_id,
                topic,
                "all",
                "",
                "",
                str(sum(r.messages_behind for r in mine)),
                f"{max(r.seconds_behind for r in mine):.1f}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)


def format_json(rows: Sequence[PartitionLag]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)
