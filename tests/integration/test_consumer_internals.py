"""The private parts of faust-streaming and aiokafka that the worker reads and patches, on a real
Faust consumer in a real consumer group of the local broker.

`streams/worker/commits.py` (strict commits, `CommitRepair`, `fetch_state`) and `streams/worker/app.py`
(the stream queues behind `app.topics._tp_index`, the agents' actors, `stream_wait_empty`, the
idempotent producer) use attributes that neither library documents; they are proven on the exact
releases in `commits.PROVEN`. Most of those reads fail soft (`kafka_prefetched` answers True,
`fetch_state` writes `=?(...)`, `_queued` finds nothing), so an upgrade that moves one would not crash
the worker, only blind its repairs. This test reads each of them, with the values a known stream must
leave there, so that such an upgrade fails here instead.

One Faust app (the worker's `SailApp`) reads a two-partition topic of its own; its agent acknowledges every
event but the ones marked `hold`, which it keeps unacknowledged, as an agent retrying a down
dependency does.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.consumer import Consumer
from faust.types import TP

from streams.ops.waits import own_waits
from streams.sinks.kafka import ensure_topics, partition_offsets, producer
from streams.worker.app import SailApp, _batches, install_idempotent_producer, kafka_credentials
from streams.worker.commits import (
    CommitRepair,
    Repair,
    _aiokafka,
    _kafka_state,
    fetch_state,
    install_strict_commits,
    kafka_position,
    kafka_prefetched,
)
from streams.worker.events import acknowledge
from topology.settings import Settings
from topology.topics import TopicSpec

pytestmark = pytest.mark.integration

RECORDS = 8  # per partition, offsets 0..7
HELD = 5  # the offset of partition 0 the agent first holds unacknowledged
QUEUED = 20  # records sent to partition 1 while the agent is blocked
DEADLINE_S = 20.0


async def _until(what: str, condition: Callable[[], bool], timeout_s: float = DEADLINE_S) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f}s: {what}")
        await asyncio.sleep(0.05)


async def _until_async(what: str, condition: Callable[[], Awaitable[bool]], timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f}s: {what}")
        await asyncio.sleep(0.1)


def _send(settings: Settings, topic: str, records: list[tuple[int, bytes]]) -> None:
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
    try:
        for partition, value in records:
            p.send(topic, value=value, partition=partition)
        p.flush()
    finally:
        p.close()


def test_the_consumer_internals_the_worker_relies_on_hold_real_values(settings: Settings, tmp_path: Path) -> None:
    topic = f"{settings.topic_prefix}internals-{uuid.uuid4().hex[:8]}"
    spec = TopicSpec(
        topic, 2, key="item_id", retention_ms=3_600_000, compacted=False, max_message_bytes=settings.max_message_bytes
    )
    assert ensure_topics(settings.kafka_bootstrap, settings.kafka_security(), [spec]) == [topic]
    _send(
        settings,
        topic,
        [(p, b"hold" if (p, o) == (0, HELD) else f"{p}:{o}".encode()) for p in range(2) for o in range(RECORDS)],
    )
    install_strict_commits([topic])
    install_idempotent_producer()
    asyncio.run(_scenario(settings, topic, tmp_path))


async def _scenario(settings: Settings, topic: str, tmp_path: Path) -> None:
    group = f"internals-{uuid.uuid4().hex[:8]}"
    app = SailApp(
        group,
        broker=[f"kafka://{address.strip()}" for address in settings.kafka_bootstrap.split(",")],
        broker_credentials=kafka_credentials(settings),
        store="memory://",
        datadir=str(tmp_path / "faust"),
        web_enabled=False,
        topic_partitions=2,
        broker_commit_interval=600.0,  # commits only where the test asks for one
        stream_buffer_maxsize=1024,
        consumer_auto_offset_reset="earliest",
    )
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    delivered: list[tuple[int, int]] = []
    held: list[Any] = []
    gate = asyncio.Event()
    gate.set()

    @app.agent(source)
    async def hold_marked(stream: faust.StreamT) -> None:
        async for events in _batches(stream, 4, 50.0):
            for event in events:
                at = (event.message.partition, event.message.offset)
                first = at not in delivered
                delivered.append(at)
                if event.value == b"hold" and first:
                    held.append(event)
                else:
                    await acknowledge(stream, [event])
            await gate.wait()

    tp0, tp1 = TP(topic, 0), TP(topic, 1)
    await app.start()
    try:
        c: Any = app.consumer  # Faust's aiokafka consumer, read through its private parts
        await _until("both partitions assigned", lambda: {tp0, tp1} <= set(c.assignment()))
        await _until(
            "every record delivered and acknowledged but the held one",
            lambda: (
                sorted(c._acked.get(tp0) or []) == [o for o in range(RECORDS) if o != HELD]
                and sorted(c._acked.get(tp1) or []) == list(range(RECORDS))
                and len(held) == 1
            ),
        )
        await _until(
            "Faust's read offsets at the last records", lambda: c._read_offset.get(tp0) == c._read_offset.get(tp1) == RECORDS - 1
        )
        # read directly, not through kafka_prefetched, which answers True when `_records` is gone
        await _until("aiokafka holds no fetched records", lambda: not {tp0, tp1} & set(_aiokafka(c)._fetcher._records))

        def queues(tp: Any) -> list[Any]:
            """The stream queues `tp` feeds, found as app.py's `CommitRepair` finds them."""
            return [channel.queue for channel in app.topics._tp_index.get(tp, ())]  # type: ignore[attr-defined]

        _assert_consumed(app, c, queues, held[0], tp0, tp1)
        clock = [0.0]
        repair = CommitRepair(lambda: app.consumer, [topic], contiguous=[topic], queues=queues, clock=lambda: clock[0])
        await _assert_commits(settings, group, c, repair, clock, tp0, tp1)
        await _assert_seek_repair(c, repair, held, delivered, tp0)
        await _assert_queued(settings, topic, app, c, repair, queues, gate, tp1)

        await asyncio.to_thread(_send, settings, topic, [(0, b"hold")])  # offset RECORDS of partition 0: held through the stop
        await _until("the last record held", lambda: len(held) == 2 and held[1].message.offset == RECORDS)
        assert "stream_wait_empty" in type(app.conf).setting_names()
    finally:
        await _stop(app, held)
    assert app.conf.stream_wait_empty is False
    committed = await asyncio.to_thread(partition_offsets, settings.kafka_bootstrap, settings.kafka_security(), group, topic)
    assert committed == {0: (RECORDS, RECORDS + 1), 1: (RECORDS + QUEUED, RECORDS + QUEUED)}


async def _stop(app: faust.App, held: list[Any], timeout_s: float = 30.0) -> None:
    """Stop the app with an event held: `SailApp` turns `stream_wait_empty` off, so Faust must not wait
    for it. Where it still waits, the held events are let go, so that the test fails instead of hanging
    (Faust's wait swallows the cancellation of a timeout)."""
    stopping = asyncio.ensure_future(app.stop())
    done, _ = await asyncio.wait({stopping}, timeout=timeout_s)
    if not done:
        for event in held:
            event.ack()
        app.consumer._unacked_messages.clear()  # type: ignore[attr-defined]
        await stopping
        raise AssertionError(f"the app's stop waited {timeout_s:.0f}s for held events: stream_wait_empty no longer reaches Faust")
    stopping.result()


def _assert_consumed(app: faust.App, c: Any, queues: Callable[[Any], list[Any]], hold: Any, tp0: TP, tp1: TP) -> None:
    """Faust's and aiokafka's bookkeeping after everything was delivered, one event held, nothing committed."""
    assert getattr(type(c)._new_offset, "sail_strict", False) is True
    assert type(c)._new_offset is Consumer._new_offset
    producer_settings = app.producer._settings_extra()  # type: ignore[attr-defined]
    assert producer_settings["acks"] == "all" and producer_settings["enable_idempotence"] is True
    assert app.producer._producer._txn_manager is not None  # type: ignore[attr-defined]  # aiokafka built it idempotent

    for tp in (tp0, tp1):
        assert c._committed_offset.get(tp) is None  # a new group: nothing committed, no base yet
        assert c._read_offset.get(tp) == RECORDS - 1
        assert c.highwater(tp) == RECORDS
        assert kafka_position(c, tp) == RECORDS
        assert kafka_prefetched(c, tp) is False
        assert _kafka_state(c, tp)._position == RECORDS
        assert _kafka_state(c, tp).paused is False
        assert isinstance(_aiokafka(c)._fetcher._records, dict)
        assert c.flow_active is True
        assert tp in c._active_partitions and tp not in c._paused_partitions
        assert isinstance(c._buffered_partitions, set)
        assert not c._gap.get(tp)
        assert queues(tp), "no stream queue found for the partition in app.topics._tp_index"
        for queue in queues(tp):
            assert isinstance(queue._queue, deque) and len(queue._queue) == queue.qsize() == 0
            assert isinstance(queue._pending_pressure_drop_callbacks, set)
    assert c._acked[tp0] == [0, 1, 2, 3, 4, 6, 7] and c._acked_index[tp0] == {0, 1, 2, 3, 4, 6, 7}
    assert sorted(c._acked[tp1]) == list(range(RECORDS)) and c._acked_index[tp1] == set(range(RECORDS))
    assert hold.message in c._unacked_messages
    assert {(m.tp, m.offset) for m in list(c._unacked_messages) if m.tp in (tp0, tp1) and not m.acked} == {(tp0, HELD)}

    state = fetch_state(c, tp0, queues)
    assert "=?(" not in state, state
    for part in (
        "flow_active=True",
        "active=True",
        "paused=False",
        f"read={RECORDS - 1}",
        "acked=[0, 1, 2, 3, 4, 6, 7]",
        f"unacked=[{HELD}]",
        f"kafka_position={RECORDS}",
        "kafka_paused=False",
        "prefetched=False",
        "queues=[(0, 0)]",
    ):
        assert f" {part}" in f" {state}", (part, state)

    actors = {
        f"agent {agent.name}[{i}]": actor.it for agent in app.agents.values() for i, actor in enumerate(list(agent._actors))
    }
    assert actors and {name.rsplit("[", 1)[0] for name in actors} == {f"agent {agent.name}" for agent in app.agents.values()}
    for it in actors.values():
        assert inspect.iscoroutine(it) or inspect.isasyncgen(it), type(it)
    lines = [line for line in own_waits(coroutines=actors) if line.startswith("agent ")]
    assert len(lines) == len(actors) and all("hold_marked (" in line for line in lines), lines


async def _assert_commits(
    settings: Settings, group: str, c: Any, repair: CommitRepair, clock: list[float], tp0: TP, tp1: TP
) -> None:
    """ensure_base, the strict commit over the contiguous run, dedup and the stall report."""
    c._acked[tp1].append(3)  # a re-delivered offset acknowledged twice
    assert await repair.check() == [Repair("dedup", tp1.topic, 1, "1 duplicate acked offsets removed")]
    assert c._acked[tp1] == list(range(RECORDS))

    assert await c.commit() is False  # no base yet: the strict commit waits
    assert c._acked[tp0] == [0, 1, 2, 3, 4, 6, 7]
    assert await repair.ensure_base() == 2
    assert c._committed_offset[tp0] == c._committed_offset[tp1] == 0
    assert await repair.ensure_base() == 0
    assert repair.stalls(after_s=10.0) == []  # first sighting of both partitions

    c._gap[tp1].addi(2, 3)  # a gap Faust recorded below the commit point: chopped by the strict commit
    assert await c.commit() is True
    assert c._committed_offset[tp0] == HELD and c._committed_offset[tp1] == RECORDS
    assert c._acked[tp0] == [6, 7] and c._acked_index[tp0] == {6, 7}
    assert c._acked[tp1] == [] and c._acked_index[tp1] == set()
    assert not c._gap[tp1]
    broker = await asyncio.to_thread(partition_offsets, settings.kafka_bootstrap, settings.kafka_security(), group, tp0.topic)
    assert broker == {0: (HELD, RECORDS), 1: (RECORDS, RECORDS)}

    assert await repair.check() == [] and await repair.check() == []  # the gap at HELD is in flight: left alone
    assert repair.stalls(after_s=10.0) == []  # partition 0 committed since: seen anew; partition 1 is caught up
    clock[0] = 11.0
    stalls = repair.stalls(after_s=10.0)
    assert [(s.kind, s.partition) for s in stalls] == [("stall", 0)], stalls
    assert stalls[0].detail.startswith(f"no commit for 11s at offset {HELD}, {RECORDS - HELD} records behind: "), stalls[0]
    assert f"unacked=[{HELD}]" in stalls[0].detail and "=?(" not in stalls[0].detail, stalls[0]
    clock[0] = 30.0
    assert repair.stalls(after_s=10.0) == []  # reported once per committed offset


async def _assert_seek_repair(c: Any, repair: CommitRepair, held: list[Any], delivered: list[tuple[int, int]], tp0: TP) -> None:
    """A held event dropped without an ack (a head gap): the second check seeks back, Faust re-delivers it."""
    c._unacked_messages.discard(held[0].message)
    assert await repair.check() == []  # first sighting
    repairs = await repair.check()
    assert repairs == [
        Repair("seek", tp0.topic, 0, f"offsets {HELD}..{HELD} were never acked (a later one was): re-reading from {HELD}")
    ]
    await _until("the held offset re-delivered", lambda: delivered.count((0, HELD)) == 2)
    await _until_async("the partition committed to its end", lambda: _committed_to(c, tp0, RECORDS))
    assert c._acked[tp0] == [] and c._read_offset[tp0] == RECORDS - 1


async def _committed_to(c: Any, tp: TP, offset: int) -> bool:
    await c.commit()
    return bool(c._committed_offset.get(tp) == offset)


async def _assert_queued(
    settings: Settings,
    topic: str,
    app: faust.App,
    c: Any,
    repair: CommitRepair,
    queues: Callable[[Any], list[Any]],
    gate: asyncio.Event,
    tp1: TP,
) -> None:
    """Records delivered to the stream queue while the agent is blocked: seen in the queue's `_queue`."""
    gate.clear()
    await asyncio.to_thread(_send, settings, topic, [(1, f"1:{o}".encode()) for o in range(RECORDS, RECORDS + QUEUED)])
    actors = {agent.name: actor.it for agent in app.agents.values() for actor in list(agent._actors)}

    def agent_waits() -> str:
        (line,) = [line for line in own_waits(coroutines=actors) if " hold_marked (" in line]
        return line

    await _until(
        "the agent blocked with records left in its stream queue",
        lambda: "wait (locks.py:" in agent_waits() and sum(q.qsize() for q in queues(tp1)) > 0,
    )
    assert f"hold_marked ({Path(__file__).name}:" in agent_waits(), agent_waits()
    offsets = [item.message.offset for q in queues(tp1) for item in list(q._queue)]
    assert offsets and set(offsets) <= set(range(RECORDS, RECORDS + QUEUED)), offsets
    assert repair._queued(tp1, RECORDS, RECORDS + QUEUED) is True
    assert repair._queued(tp1, 0, RECORDS) is False
    assert f"queues=[({len(offsets)}, 0)]" in fetch_state(c, tp1, queues)
    gate.set()
    await _until_async("the queued records committed", lambda: _committed_to(c, tp1, RECORDS + QUEUED))
