"""Offset commits that follow effects, on faust-streaming 0.15.x.

`install_strict_commits` makes Faust commit the source topics only over a contiguous run of
acknowledged offsets (its own logic can jump over unprocessed ones after a rebalance: a two-worker kill
test lost uploads that way). `CommitRepair` heals four faults that the fault tests hit after a
rebalance (a worker killed, the survivor taking its partitions), and reports a fifth state it cannot
heal, a stall:

- **duplicates in the acked list**: the same offset acked twice after a re-delivery; Faust then
  commits one offset per commit interval, so the lag drains at 1 message/s;
- **a head gap**: offsets between the committed offset and the first acked one that no stream holds
  any more (delivered around the rebalance, then dropped without an ack); Faust never commits that
  partition again, its lag stays, the status page says "stalled", and a restart replays all of it;
- **a tail gap**: the same with nothing acked after the dropped offsets (they were the last ones
  read): the worker idles with lag for good (seen once in the worker-kill fault test);
- **an undelivered fetch**: aiokafka fetched past the committed offset, Faust's getmany dropped the
  records (a flow stop or a generation change mid-batch) and no seek followed; Faust's read offset,
  left from before the rebalance, sits below the committed one (the flaky two-workers-one-killed stall).

None loses an effect (the agents already applied the later events, and every effect is
idempotent), but each breaks what operators watch. `CommitRepair.check()` runs on a timer in each
worker: it deduplicates the acked list (a `dedup` repair), and when a gap or an undelivered fetch is
still there on the next check with none of its offsets in flight, seeks the partition back to its
committed offset (a `seek`), so the missing events are delivered again and applied once. A partition
with lag whose commits do not move for other reasons is reported (a `stall`, with what is in the way:
a dependency being retried, an agent holding its batch, records that never reached it) and left
alone. Faust's consumer internals (`_acked`, `_committed_offset`, `_read_offset`,
`_unacked_messages`, `_new_offset`) are used as of faust-streaming 0.15.3, pinned exactly in
pyproject.toml with aiokafka 0.14.0 (whose fetcher state `fetch_state` reads); the worker refuses
any other release of either (`ConsumerVersionMismatch`). `tests/streams/worker/test_commits.py` proves
the patch on Faust's real consumer class, and `tests/integration/test_consumer_internals.py` every
private part read here on a real consumer on the local Kafka.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

_STRICT_TOPICS: set[str] = set()
# The releases these patches and reads were proven on (fault tests, test_commits.py, test_consumer_internals.py):
# faust-streaming's consumer methods and aiokafka's fetcher and subscription state, both private.
PROVEN: dict[str, str] = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}
PROVEN_FAUST = PROVEN["faust-streaming"]


class ConsumerVersionMismatch(RuntimeError):
    """The installed faust-streaming or aiokafka is not the release the commit patches were proven on."""


def check_consumer_versions(installed: dict[str, str] | None = None) -> None:
    """Refuse a faust-streaming or aiokafka other than `PROVEN` (their private parts may differ).

    Raises:
        ConsumerVersionMismatch: naming each release that differs, and what to do about it.
    """
    if installed is None:
        from importlib.metadata import version

        installed = {name: version(name) for name in PROVEN}
    wrong = [f"{name} {installed.get(name)}" for name, proven in PROVEN.items() if installed.get(name) != proven]
    if wrong:
        wanted = " ".join(f"{name}=={proven}" for name, proven in PROVEN.items())
        raise ConsumerVersionMismatch(
            f"{', '.join(wrong)} installed, but streams/worker/commits.py reads and patches private parts of {wanted} "
            f"only. Install those (pip install -c constraints.txt -e .), or prove the patches on the new releases "
            "(tests/streams/worker/test_commits.py, tests/integration/test_consumer_internals.py and the fault tests) "
            "and raise PROVEN."
        )


RepairKind = Literal["dedup", "seek", "stall"]  # the metric label sail_commit_repairs_total{kind}


@dataclass(frozen=True, slots=True)
class Repair:
    kind: RepairKind
    topic: str
    partition: int
    detail: str


class CommitRepair:
    """Watches the acked offsets of `topics` on one Faust consumer (`consumer()` returns it; Faust
    creates it when the worker starts). Duplicates are removed on every topic; a head gap is re-read
    only on `contiguous` topics: on a compacted topic missing offsets are legitimate (Faust tracks
    them itself), and seeking back would re-read the same hole for ever."""

    def __init__(
        self,
        consumer: Callable[[], Any],
        topics: Iterable[str],
        contiguous: Iterable[str],
        queues: Callable[[Any], list[Any]] = lambda tp: [],
        clock: Callable[[], float] = time.monotonic,
        position: Callable[[Any, Any], int | None] | None = None,
        prefetched: Callable[[Any, Any], bool] | None = None,
    ) -> None:
        self._consumer = consumer
        self._topics = frozenset(topics)
        self._contiguous = frozenset(contiguous)
        self._gaps: dict[Any, tuple[int, int]] = {}  # tp -> (committed, first acked) seen last check
        self._sought: dict[Any, tuple[int, int]] = {}  # tp -> the gap of its last seek
        self._queues = queues
        self._clock = clock
        self._position = position or kafka_position  # aiokafka's next fetch offset for a partition
        self._prefetched = prefetched or kafka_prefetched  # whether aiokafka holds fetched records not yet taken
        self._since: dict[Any, tuple[int | None, float]] = {}  # tp -> (committed, when it was first seen)
        self._reported: dict[Any, int | None] = {}  # tp -> the committed offset its stall was reported at

    async def ensure_base(self) -> int:
        """Give every assigned `contiguous` partition without a committed offset (a new group, or
        Faust's None for offset 0) its base: the partition's first offset, where such a group starts
        reading. Until then the strict commit waits. Returns how many bases were set."""
        c = self._consumer()
        missing = [tp for tp in list(c.assignment()) if tp.topic in self._contiguous and c._committed_offset.get(tp) is None]
        if not missing:
            return 0
        earliest = await c.earliest_offsets(*missing)
        for tp in missing:
            if tp in earliest and c._committed_offset.get(tp) is None:
                c._committed_offset[tp] = earliest[tp]
        return len(missing)

    async def check(self) -> list[Repair]:
        c = self._consumer()
        repairs: list[Repair] = []
        for tp in list(c.assignment()):
            if tp.topic not in self._topics:
                continue
            acked = c._acked.get(tp) or []
            if len(set(acked)) != len(acked):
                before = len(acked)
                acked[:] = sorted(set(acked))
                repairs.append(Repair("dedup", tp.topic, tp.partition, f"{before - len(acked)} duplicate acked offsets removed"))
            committed = c._committed_offset.get(tp)
            read = c._read_offset.get(tp)
            end, kind = self._gap_end(c, tp, acked, committed, read)
            if tp.topic not in self._contiguous or end is None or committed is None or end <= committed:
                self._gaps.pop(tp, None)
                continue
            in_flight = any(
                m.tp == tp and committed <= m.offset < end and not m.acked for m in list(c._unacked_messages)
            ) or self._queued(tp, committed, end)
            if in_flight:
                self._gaps.pop(tp, None)
                continue
            if self._gaps.get(tp) != (committed, end):
                self._gaps[tp] = (committed, end)  # seen once: give it one more interval
                continue
            again = self._sought.get(tp) == (committed, end)
            note = f"; the last seek did not bring them back: {fetch_state(c, tp, self._queues)}" if again else ""
            await c.seek(tp, committed)
            self._gaps.pop(tp, None)
            self._sought[tp] = (committed, end)
            repairs.append(
                Repair(
                    "seek",
                    tp.topic,
                    tp.partition,
                    f"offsets {committed}..{end - 1} were never acked ({kind}): re-reading from {committed}{note}",
                )
            )
        return repairs

    def _gap_end(self, c: Any, tp: Any, acked: list[int], committed: int | None, read: int | None) -> tuple[int | None, str]:
        """The first offset past a gap that starts at `committed`, and what the gap is; None: no gap.

        - a head gap: the first acked offset (a later one was acked);
        - a tail gap: past the last offset read, when nothing is acked (read, dropped, nothing came after);
        - an undelivered fetch: aiokafka's fetch position, when Faust's read offset sits *below* the
          committed one (left from before a rebalance) or is unset (nothing read since the assignment)
          and nothing is acked: Faust's getmany took the records from aiokafka and dropped them on a
          flow stop or a generation change, and no seek followed (self-reported in a two-worker kill
          test: position 40, committed 34, read 12; and in the 2-worker interest benchmark on three
          brokers: position 12699, committed 0, nothing read)."""
        if committed is None:
            return None, ""
        if acked:
            return (min(acked), "a later one was") if read is not None and read >= min(acked) else (None, "")
        if not _beyond(c, tp, committed):
            return None, ""  # Faust sets the read offset to the committed one when it seeks: nothing past it exists yet
        if read is not None and read >= committed:
            return read + 1, "nothing after them was"
        position = self._position(c, tp)
        if position is None or position <= committed or self._prefetched(c, tp):
            return None, ""
        stale = (
            f"Faust's read offset {read} was stale"
            if read is not None
            else "Faust read nothing of the partition since its assignment"
        )
        return position, f"fetched up to {position - 1}, never delivered to a stream; {stale}"

    def _queued(self, tp: Any, low: int, high: int) -> bool:
        """Whether a stream queue fed by `tp` holds one of its offsets in [low, high): delivered, not
        taken by the agent yet (Faust tracks an event as unacked only once its stream takes it; while an
        agent retries a down dependency, its queue holds the rest of the fetched records)."""
        for queue in self._queues(tp):
            for item in list(getattr(queue, "_queue", ())):
                message = getattr(item, "message", None)
                if message is not None and message.tp == tp and low <= message.offset < high:
                    return True
        return False

    def stalls(self, after_s: float) -> list[Repair]:
        """Partitions of `contiguous` topics with records past their committed offset that have not
        committed for `after_s` seconds, each reported once per committed offset with what stands in
        the way (`fetch_state`): a dependency being retried, an agent holding its batch, or records
        that never reached the agent. A report, not a repair."""
        c = self._consumer()
        now = self._clock()
        found: list[Repair] = []
        assigned = [tp for tp in list(c.assignment()) if tp.topic in self._contiguous]
        for tp in list(self._since):
            if tp not in assigned:
                self._since.pop(tp, None)
                self._reported.pop(tp, None)
        for tp in assigned:
            committed = c._committed_offset.get(tp)
            if not _beyond(c, tp, committed or 0):
                self._since.pop(tp, None)
                continue
            seen, since = self._since.get(tp, (None, now))
            if seen != committed or tp not in self._since:
                self._since[tp] = (committed, now)
                continue
            if now - since >= after_s and self._reported.get(tp, -1) != committed:
                self._reported[tp] = committed
                high = _highwater(c, tp)
                behind = (
                    f"{high - (committed or 0)} records behind" if high is not None else "highwater unknown (nothing fetched yet)"
                )
                found.append(
                    Repair(
                        "stall",
                        tp.topic,
                        tp.partition,
                        f"no commit for {now - since:.0f}s at offset {committed}, {behind}: {fetch_state(c, tp, self._queues)}",
                    )
                )
        return found


def _highwater(c: Any, tp: Any) -> int | None:
    try:
        value = c.highwater(tp)
    except Exception:
        return None
    return int(value) if value is not None and value >= 0 else None


def _beyond(c: Any, tp: Any, offset: int | None) -> bool:
    """Whether the partition holds records at or past `offset` (unknown highwater: assumed so)."""
    high = _highwater(c, tp)
    return high is None or offset is None or high > offset


def _aiokafka(c: Any) -> Any:
    """The aiokafka consumer under Faust's consumer (aiokafka 0.14.0: `PROVEN`)."""
    return c._thread._ensure_consumer()


def _kafka_state(c: Any, tp: Any) -> Any:
    """aiokafka's subscription state of `tp`."""
    return _aiokafka(c)._subscription.subscription.assignment.state_value(tp)


def kafka_position(c: Any, tp: Any) -> int | None:
    """aiokafka's fetch position of `tp` (the next offset it will fetch); None when unknown."""
    try:
        position = _kafka_state(c, tp)._position
    except Exception:
        return None
    return int(position) if position is not None else None


def kafka_prefetched(c: Any, tp: Any) -> bool:
    """Whether aiokafka holds fetched records of `tp` that Faust has not taken yet (unknown: assumed so)."""
    try:
        return tp in _aiokafka(c)._fetcher._records
    except Exception:
        return True


def fetch_state(c: Any, tp: Any, queues: Callable[[Any], list[Any]]) -> str:
    """What stands between a partition's fetch and its agent, for a log line: Faust's flow and
    partition sets, aiokafka's position and pause flag, and the size of the stream queues it feeds."""
    parts: list[str] = []

    def add(label: str, read: Callable[[], object]) -> None:
        try:
            parts.append(f"{label}={read()}")
        except Exception as exc:
            parts.append(f"{label}=?({type(exc).__name__})")

    add("flow_active", lambda: c.flow_active)
    add("active", lambda: tp in c._active_partitions)
    add("paused", lambda: tp in c._paused_partitions)
    add("buffered", lambda: tp in c._buffered_partitions)
    add("read", lambda: c._read_offset.get(tp))
    add("acked", lambda: sorted(c._acked.get(tp) or [])[:8])
    add("unacked", lambda: sorted(m.offset for m in list(c._unacked_messages) if m.tp == tp)[:8])
    add("kafka_position", lambda: _kafka_state(c, tp)._position)
    add("kafka_paused", lambda: _kafka_state(c, tp).paused)
    add("prefetched", lambda: tp in _aiokafka(c)._fetcher._records)
    add("queues", lambda: [(q.qsize(), len(q._pending_pressure_drop_callbacks)) for q in queues(tp)])
    return " ".join(parts)


def next_commit(committed: int, acked: Sequence[int]) -> tuple[int | None, list[int]]:
    """The offset to commit after `committed` (the next offset to process) given the acked offsets,
    and the acked offsets left over: only a run that starts exactly at `committed` counts, so an
    offset nobody acked is never committed over. Duplicates and offsets below `committed` go."""
    pending = sorted({offset for offset in acked if offset >= committed})
    run = 0
    while run < len(pending) and pending[run] == committed + run:
        run += 1
    return (committed + run if run else None), pending[run:]


def install_strict_commits(topics: Iterable[str]) -> None:
    """Make Faust commit `topics` only over offsets that were acknowledged, one contiguous run from
    the committed offset (`next_commit`). faust-streaming 0.15's own `_new_offset` lets a commit jump
    over unacknowledged offsets in some rebalance paths (it skips its head-gap check when the
    committed offset is unknown or 0, tolerates a gap of one, and counts its recorded offset "gaps"
    as acknowledged): in a two-worker kill test the survivor committed past 121 uploads it never
    processed. These topics are not compacted and carry no transactions, so their offsets are
    contiguous and nothing legitimate is in between. Idempotent; other topics keep Faust's logic.

    Raises:
        ConsumerVersionMismatch: faust-streaming or aiokafka is not the release in `PROVEN`.
    """
    check_consumer_versions()
    from faust.transport.consumer import Consumer

    _STRICT_TOPICS.update(topics)
    if getattr(Consumer._new_offset, "sail_strict", False):
        return
    faust_new_offset = Consumer._new_offset

    def _new_offset(self: Any, tp: Any) -> int | None:
        committed = self._committed_offset.get(tp)
        acked = self._acked[tp]
        if tp.topic not in _STRICT_TOPICS or not acked:
            return faust_new_offset(self, tp)
        if committed is None:
            # Faust records a committed offset of 0, and "nothing committed yet" (a new group), as
            # None, and its own logic then commits the first run of acked offsets wherever it starts:
            # a two-worker test committed uploads 0..3 that no worker had stored. Wait for the base
            # (`CommitRepair.ensure_base`, the partition's first offset) instead.
            return None
        new, rest = next_commit(committed, acked)
        acked[:] = rest
        if new is not None:
            self._acked_index[tp].difference_update(range(committed, new))
            gaps = self._gap.get(tp)
            if gaps:
                gaps.chop(0, new)
        return new

    # the patch itself (faust-streaming 0.15.3 exactly): marker attributes on the function, and the
    # consumer's private method replaced on the class, which a type checker rightly flags
    _new_offset.sail_strict = True  # type: ignore[attr-defined]
    _new_offset.__wrapped_faust__ = faust_new_offset  # type: ignore[attr-defined]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
