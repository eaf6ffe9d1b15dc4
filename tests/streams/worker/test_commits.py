"""CommitRepair against a stand-in for Faust's consumer bookkeeping (the fault tests run the real one)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest

from streams.worker.commits import CommitRepair


class TP(NamedTuple):
    topic: str
    partition: int


@dataclass(eq=False)
class Message:
    tp: TP
    offset: int
    acked: bool = False


@dataclass
class Consumer:
    """The attributes of faust.transport.consumer.Consumer that CommitRepair reads, and its seek."""

    tps: list[TP]
    _acked: dict[TP, list[int]] = field(default_factory=dict)
    _committed_offset: dict[TP, int] = field(default_factory=dict)
    _read_offset: dict[TP, int] = field(default_factory=dict)
    _unacked_messages: set[Any] = field(default_factory=set)
    highwaters: dict[TP, int] = field(default_factory=dict)  # the partitions' end offsets as last fetched (unknown: absent)
    seeks: list[tuple[TP, int]] = field(default_factory=list)

    def assignment(self) -> set[TP]:
        return set(self.tps)

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters.get(tp)

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))
        self._read_offset[tp] = offset


TOPIC = TP("sail.interactions", 0)


def _repair(consumer: Consumer) -> CommitRepair:
    return CommitRepair(lambda: consumer, ["sail.interactions", "sail.item-embeddings"], contiguous=["sail.interactions"])


def test_duplicate_acked_offsets_are_removed() -> None:
    c = Consumer([TOPIC], _acked={TOPIC: [84, 85, 85, 86, 86, 87]}, _committed_offset={TOPIC: 84}, _read_offset={TOPIC: 88})
    repairs = asyncio.run(_repair(c).check())
    assert c._acked[TOPIC] == [84, 85, 86, 87]
    assert [r.kind for r in repairs] == ["dedup"] and not c.seeks


def test_a_head_gap_nobody_holds_is_re_read_from_the_committed_offset_on_the_second_check() -> None:
    c = Consumer([TOPIC], _acked={TOPIC: [40, 41, 42]}, _committed_offset={TOPIC: 24}, _read_offset={TOPIC: 204})
    repair = _repair(c)
    assert asyncio.run(repair.check()) == [] and not c.seeks  # first sighting: wait one interval
    repairs = asyncio.run(repair.check())
    assert c.seeks == [(TOPIC, 24)]
    assert [(r.kind, r.partition) for r in repairs] == [("seek", 0)]


def test_a_gap_whose_events_are_in_flight_is_left_alone() -> None:
    held = Message(TOPIC, 30)  # delivered to an agent that is still working on it (e.g. Milvus down)
    c = Consumer([TOPIC], _acked={TOPIC: [40]}, _committed_offset={TOPIC: 24}, _read_offset={TOPIC: 41}, _unacked_messages={held})
    repair = _repair(c)
    for _ in range(3):
        assert asyncio.run(repair.check()) == []
    assert not c.seeks


def test_a_gap_whose_events_wait_in_the_stream_queue_is_left_alone() -> None:
    """Faust tracks an event as unacked only when its stream takes it from the queue: while the agent
    retried a down encoder, the queue held offsets 5..41 of a partition and each check sought them
    back, adding duplicates to the queue (seen with the Triton outage of bench.faults)."""
    queued = SimpleNamespace(_queue=deque(SimpleNamespace(message=Message(TOPIC, o)) for o in range(5, 42)))
    c = Consumer([TOPIC], _acked={TOPIC: []}, _committed_offset={TOPIC: 5}, _read_offset={TOPIC: 41})
    repair = CommitRepair(lambda: c, ["sail.interactions"], contiguous=["sail.interactions"], queues=lambda tp: [queued])
    for _ in range(3):
        assert asyncio.run(repair.check()) == []
    assert not c.seeks
    queued._queue.clear()  # taken and dropped (a stale generation) without an ack: now a gap to re-read
    asyncio.run(repair.check())
    assert [r.kind for r in asyncio.run(repair.check())] == ["seek"] and c.seeks == [(TOPIC, 5)]


def test_no_gap_no_other_topic_and_a_moving_gap_need_nothing() -> None:
    other = TP("sail.item-embeddings", 0)
    c = Consumer(
        [TOPIC, other],
        _acked={TOPIC: [24, 25], other: [90]},
        _committed_offset={TOPIC: 24, other: 10},
        _read_offset={TOPIC: 26, other: 91},
    )
    repair = _repair(c)
    assert asyncio.run(repair.check()) == [] and asyncio.run(repair.check()) == []
    c._acked[TOPIC], c._committed_offset[TOPIC] = [30], 26  # a gap, but a different one on each check
    asyncio.run(repair.check())
    c._acked[TOPIC], c._committed_offset[TOPIC] = [31], 28
    assert asyncio.run(repair.check()) == [] and not c.seeks


def test_next_commit_only_covers_a_run_from_the_committed_offset() -> None:
    from streams.worker.commits import next_commit

    assert next_commit(24, [24, 25, 26, 30]) == (27, [30])
    assert next_commit(24, [25, 26]) == (None, [25, 26])  # 24 not acked: never committed over (Faust allowed a gap of one)
    assert next_commit(24, [40, 41]) == (None, [40, 41])
    assert next_commit(84, [84, 85, 85, 86, 86, 87]) == (88, [])  # duplicates do not break the run
    assert next_commit(10, [3, 9, 10]) == (11, [])  # already committed offsets are dropped


def test_a_gap_on_a_compacted_topic_is_never_re_read() -> None:
    compacted = TP("sail.item-embeddings", 0)  # offsets compacted away are holes for good
    c = Consumer([compacted], _acked={compacted: [40, 41]}, _committed_offset={compacted: 24}, _read_offset={compacted: 42})
    repair = _repair(c)
    for _ in range(3):
        assert asyncio.run(repair.check()) == []
    assert not c.seeks


def test_a_tail_gap_read_but_never_acked_is_re_read_on_the_second_check() -> None:
    """Offsets 24..30 were read, then dropped around a rebalance; nothing after them came: no ack at all."""
    c = Consumer([TOPIC], _acked={TOPIC: []}, _committed_offset={TOPIC: 24}, _read_offset={TOPIC: 30})
    repair = _repair(c)
    assert asyncio.run(repair.check()) == [] and not c.seeks
    repairs = asyncio.run(repair.check())
    assert c.seeks == [(TOPIC, 24)] and [r.kind for r in repairs] == ["seek"] and "24..30" in repairs[0].detail


def test_an_idle_partition_after_a_seek_to_its_committed_end_is_no_tail_gap() -> None:
    """Faust's seek to the committed offsets sets the read offset to the committed one (the next to
    read, not the last read): at the partition's end that looked like one dropped offset, and the
    same partition was sought back every 20 s for as long as it stayed quiet."""
    c = Consumer([TOPIC], _acked={TOPIC: []}, _committed_offset={TOPIC: 47}, _read_offset={TOPIC: 47}, highwaters={TOPIC: 47})
    repair = _repair(c)
    for _ in range(3):
        assert asyncio.run(repair.check()) == []
    assert not c.seeks
    c.highwaters[TOPIC] = 48  # record 47 exists, was read (read offset 47) and is not acked nor held: a real tail gap
    asyncio.run(repair.check())
    assert [r.kind for r in asyncio.run(repair.check())] == ["seek"] and c.seeks == [(TOPIC, 47)]


def test_records_fetched_past_the_committed_offset_and_never_delivered_are_re_read_on_the_second_check() -> None:
    """The flaky two-workers-one-killed stall, as its self-report caught it: aiokafka's position 40 is
    past the committed 34, nothing is acked, unacked or queued, and Faust's read offset (12, left from
    before the rebalance) sits below the committed one, so the tail-gap check (read + 1) saw nothing."""
    c = Consumer([TOPIC], _acked={TOPIC: []}, _committed_offset={TOPIC: 34}, _read_offset={TOPIC: 12}, highwaters={TOPIC: 40})
    positions = {TOPIC: 40}
    prefetched: set[TP] = set()
    repair = CommitRepair(
        lambda: c,
        ["sail.interactions"],
        contiguous=["sail.interactions"],
        position=lambda _, tp: positions.get(tp),
        prefetched=lambda _, tp: tp in prefetched,
    )
    prefetched.add(TOPIC)  # aiokafka still holds them: Faust will take them, nothing to do
    for _ in range(3):
        assert asyncio.run(repair.check()) == []
    prefetched.clear()
    assert asyncio.run(repair.check()) == [] and not c.seeks  # seen once
    (fix,) = asyncio.run(repair.check())
    assert c.seeks == [(TOPIC, 34)] and fix.kind == "seek"
    assert "offsets 34..39 were never acked" in fix.detail and "read offset 12 was stale" in fix.detail
    assert c._read_offset[TOPIC] == 34  # Faust's seek resets the read offset: the next check sees a plain tail


def test_records_fetched_and_never_delivered_since_the_assignment_are_re_read() -> None:
    """The 2-worker interest benchmark's stall on three brokers (static members joining): aiokafka had
    fetched the whole partition (position 12699), Faust had read nothing of it (no read offset),
    nothing was acked, unacked, prefetched or queued, and the committed offset stayed at 0."""
    c = Consumer([TOPIC], _acked={TOPIC: []}, _committed_offset={TOPIC: 0}, _read_offset={}, highwaters={TOPIC: 12699})
    repair = CommitRepair(
        lambda: c,
        ["sail.interactions"],
        contiguous=["sail.interactions"],
        position=lambda _, tp: 12699,
        prefetched=lambda _, tp: False,
    )
    assert asyncio.run(repair.check()) == [] and not c.seeks  # seen once
    (fix,) = asyncio.run(repair.check())
    assert (
        c.seeks == [(TOPIC, 0)]
        and "offsets 0..12698 were never acked" in fix.detail
        and "read nothing of the partition" in fix.detail
    )
    fresh = Consumer([TOPIC], _acked={TOPIC: []}, _committed_offset={TOPIC: 0}, _read_offset={}, highwaters={TOPIC: 12699})
    for position in (None, 0):  # just assigned: nothing fetched yet, nothing to repair
        repair = CommitRepair(
            lambda: fresh,
            ["sail.interactions"],
            contiguous=["sail.interactions"],
            position=lambda _, tp: position,
            prefetched=lambda _, tp: False,
        )
        for _ in range(3):
            assert asyncio.run(repair.check()) == []
    assert not fresh.seeks


def test_a_stale_read_offset_is_no_gap_while_nothing_was_fetched_past_the_committed_offset() -> None:
    c = Consumer([TOPIC], _acked={TOPIC: []}, _committed_offset={TOPIC: 34}, _read_offset={TOPIC: 12}, highwaters={TOPIC: 40})
    for position in (None, 34):  # unknown (not started, not assigned), or not fetched yet
        repair = CommitRepair(
            lambda: c,
            ["sail.interactions"],
            contiguous=["sail.interactions"],
            position=lambda _, tp: position,
            prefetched=lambda _, tp: False,
        )
        for _ in range(3):
            assert asyncio.run(repair.check()) == []
    assert not c.seeks


def test_kafka_position_reads_aiokafkas_subscription_state_under_fausts_consumer() -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.worker.commits import kafka_position, kafka_prefetched

    async def run() -> tuple[int | None, int | None, int | None, bool]:
        kafka = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", enable_auto_commit=False)  # never started: no broker needed
        tp = TopicPartition("sail.interactions", 1)
        kafka.assign([tp])
        faust_consumer = SimpleNamespace(
            _thread=SimpleNamespace(_ensure_consumer=lambda: kafka)
        )  # where Faust's aiokafka driver keeps it
        before = kafka_position(faust_consumer, tp)
        kafka._subscription.subscription.assignment.state_value(tp).seek(40)
        after = kafka_position(faust_consumer, tp)
        other = kafka_position(faust_consumer, TopicPartition("sail.interactions", 2))
        held = kafka_prefetched(faust_consumer, tp)  # no fetcher before start: unknown, assumed held
        await kafka.stop()
        return before, after, other, held

    assert asyncio.run(run()) == (None, 40, None, True)


def test_a_partition_behind_that_does_not_commit_is_reported_once_per_offset_with_its_fetch_state() -> None:
    now = [0.0]
    held = Message(TOPIC, 12)
    c = Consumer(
        [TOPIC], _committed_offset={TOPIC: 12}, _read_offset={TOPIC: 40}, _unacked_messages={held}, highwaters={TOPIC: 60}
    )
    repair = CommitRepair(lambda: c, ["sail.interactions"], contiguous=["sail.interactions"], clock=lambda: now[0])
    assert repair.stalls(after_s=30) == []  # first sight
    now[0] = 29.0
    assert repair.stalls(after_s=30) == []
    now[0] = 31.0
    (stall,) = repair.stalls(after_s=30)
    assert (stall.kind, stall.partition) == ("stall", 0)
    assert (
        "no commit for 31s at offset 12, 48 records behind" in stall.detail
        and "unacked=[12]" in stall.detail
        and "read=40" in stall.detail
    )
    now[0] = 90.0
    assert repair.stalls(after_s=30) == []  # reported once for this offset
    c._committed_offset[TOPIC] = 20  # progress: the clock starts again
    now[0] = 100.0
    assert repair.stalls(after_s=30) == []
    now[0] = 131.0
    assert [s.detail.split(",")[0] for s in repair.stalls(after_s=30)] == ["no commit for 31s at offset 20"]
    c._committed_offset[TOPIC] = 60  # caught up: nothing behind, nothing to report
    now[0] = 500.0
    assert repair.stalls(after_s=30) == [] and repair.stalls(after_s=30) == []
    del c.highwaters[TOPIC]  # never fetched: the end is unknown, which is itself worth saying after the window
    now[0] = 600.0
    assert repair.stalls(after_s=30) == []
    now[0] = 640.0
    (unknown,) = repair.stalls(after_s=30)
    assert "at offset 60, highwater unknown (nothing fetched yet)" in unknown.detail


def test_a_tail_in_flight_or_fully_committed_is_left_alone() -> None:
    held = Message(TOPIC, 27)  # an agent still works on it (a retry sleeping, a dependency down)
    busy = Consumer([TOPIC], _committed_offset={TOPIC: 24}, _read_offset={TOPIC: 30}, _unacked_messages={held})
    done = Consumer([TOPIC], _committed_offset={TOPIC: 31}, _read_offset={TOPIC: 30})  # everything read is committed
    for c in (busy, done):
        repair = _repair(c)
        for _ in range(3):
            assert asyncio.run(repair.check()) == []
        assert not c.seeks


def test_strict_commits_hold_on_fausts_real_consumer_and_leave_other_topics_to_faust() -> None:
    """The patch on the real class (faust.transport.drivers.aiokafka.Consumer, built by a real app
    that never connects): where Faust's own logic commits over an offset nobody acked, ours waits."""
    import faust
    from faust.types import TP as FaustTP

    from streams.worker.commits import install_strict_commits

    async def run() -> None:
        consumer = faust.App("commits-probe", broker="kafka://127.0.0.1:9", store="memory://", web_enabled=False).consumer
        assert type(consumer).__module__ == "faust.transport.drivers.aiokafka"

        def faust_new_offset_of(c: object, tp: FaustTP) -> int | None:
            from faust.transport.consumer import Consumer as FaustConsumer

            original = getattr(FaustConsumer._new_offset, "__wrapped_faust__", None)
            saved = list(c._acked[tp])  # type: ignore[attr-defined]
            result = original(c, tp) if original else None
            c._acked[tp][:] = saved  # type: ignore[attr-defined]
            c._acked_index[tp] = set(saved)  # type: ignore[attr-defined]
            return result  # type: ignore[no-any-return]

        def offer(tp: FaustTP, committed: int, acked: list[int]) -> int | None:
            consumer._committed_offset[tp] = committed
            consumer._acked[tp] = list(acked)
            consumer._acked_index[tp] = set(acked)
            return consumer._new_offset(tp)  # type: ignore[no-any-return]

        other = FaustTP("commits-probe-other", 0)
        assert offer(other, 10, [11, 12]) == 13  # Faust's own: over offset 10, which nobody acked
        install_strict_commits(["commits-probe-strict"])
        strict = FaustTP("commits-probe-strict", 0)
        assert offer(strict, 10, [11, 12]) is None  # ours: 10 is not acked, nothing is committed
        assert consumer._acked[strict] == [11, 12]
        consumer._acked[strict].append(10)
        assert consumer._new_offset(strict) == 13  # once 10 is acked, the whole run
        assert offer(FaustTP("commits-probe-other", 1), 10, [11, 12]) == 13  # other topics keep Faust's logic
        fresh = FaustTP("commits-probe-strict", 1)
        consumer._acked[fresh] = [4, 5, 6]  # a new group: Faust holds no committed offset (None, as for 0)
        consumer._acked_index[fresh] = {4, 5, 6}
        assert faust_new_offset_of(consumer, fresh) == 7  # Faust's own logic would commit over 0..3
        assert consumer._new_offset(fresh) is None  # ours waits for the base (CommitRepair.ensure_base)

    asyncio.run(run())


def test_any_faust_or_aiokafka_release_but_the_proven_one_is_refused_with_what_to_do() -> None:
    from importlib.metadata import version

    from streams.worker.commits import PROVEN, ConsumerVersionMismatch, check_consumer_versions

    # the installed releases are the proven ones (pyproject.toml and constraints.txt pin them exactly)
    assert {name: version(name) for name in PROVEN} == PROVEN
    check_consumer_versions()
    with pytest.raises(ConsumerVersionMismatch, match=r"faust-streaming 0\.16\.0 installed.*faust-streaming==0\.15\.3"):
        check_consumer_versions({**PROVEN, "faust-streaming": "0.16.0"})
    with pytest.raises(ConsumerVersionMismatch, match=r"^aiokafka 0\.13\.0 installed.*aiokafka==0\.14\.0"):
        check_consumer_versions({**PROVEN, "aiokafka": "0.13.0"})


def test_ensure_base_gives_new_partitions_their_first_offset_and_leaves_the_rest() -> None:
    a, b, other = TP("uploads", 0), TP("uploads", 1), TP("embeddings", 0)
    consumer = Consumer([a, b, other], _committed_offset={b: 17})
    offsets = {a: 3, b: 0, other: 0}

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        return {tp: offsets[tp] for tp in tps}

    consumer.earliest_offsets = earliest_offsets  # type: ignore[attr-defined]
    repair = CommitRepair(lambda: consumer, ["uploads", "embeddings"], contiguous=["uploads"])
    assert asyncio.run(repair.ensure_base()) == 1
    assert consumer._committed_offset == {
        a: 3,
        b: 17,
    }  # the new one from its first offset; the committed one kept; not the compacted topic
    assert asyncio.run(repair.ensure_base()) == 0


def test_fausts_getmany_drops_the_rest_of_a_fetched_batch_on_a_generation_change_or_a_flow_stop_and_seeks_nothing() -> None:
    """The upstream behaviour behind the *undelivered fetch* that `CommitRepair` heals (RELIABILITY.md,
    "A stall after a crash loop"), on faust-streaming's real `Consumer.getmany`: it stops yielding a
    fetched batch when the consumer generation changes or the flow stops mid-batch, the records after
    that point are dropped, and nothing seeks back to them (aiokafka's position has moved past them).
    If a release changes this, this test fails and the repair can be reconsidered."""
    from types import SimpleNamespace

    import faust
    from faust.types import TP as FaustTP

    async def run() -> None:
        app = faust.App("getmany-probe", broker="kafka://127.0.0.1:9", store="memory://", web_enabled=False)
        c = app.consumer
        tp = FaustTP("getmany-probe", 0)
        fetched = {tp: [SimpleNamespace(offset=offset) for offset in range(5)]}  # what aiokafka handed over

        async def wait_next_records(timeout: float) -> tuple[dict[FaustTP, list[SimpleNamespace]], set[FaustTP]]:
            return fetched, {tp}

        sought: list[tuple[FaustTP, int]] = []

        async def seek(partition: FaustTP, offset: int) -> None:
            sought.append((partition, offset))

        c._wait_next_records = wait_next_records
        c._to_message = lambda partition, record: record.offset
        c.highwater = lambda partition: 5
        c.seek = seek
        seen: list[int] = []
        async for _, offset in c.getmany(1.0):
            seen.append(offset)
            if len(seen) == 2:
                app.consumer_generation_id += 1  # a rebalance completes while the batch is being read
        assert seen == [0, 1] and sought == []  # 2..4 fetched, never delivered, never sought back
        seen = []
        async for _, offset in c.getmany(1.0):
            seen.append(offset)
            if len(seen) == 3:
                c.stop_flow()  # a rebalance starts
        assert seen == [0, 1, 2] and sought == []

    asyncio.run(run())
