"""Offset commits that follow effects, on faust-streaming 0.15.x.

`install_strict_commits` makes Faust commit the source topics only over a contiguous run of
acknowledged offsets (its own logic can jump over unprocessed ones after a rebalance: a two-worker kill
test lost uploads that way). `CommitRepair` heals two faults that the fault tests hit after a
rebalance (a worker killed, the survivor taking its partitions):

- **duplicates in the acked list**: the same offset acked twice after a re-delivery; Faust then
  commits one offset per commit interval, so the lag drains at 1 message/s;
- **a head gap**: offsets between the committed offset and the first acked one that no stream holds
  any more (delivered around the rebalance, then dropped without an ack); Faust never commits that
  partition again, its lag stays, the status page says "stalled", and a restart replays all of it;
- **a tail gap**: the same with nothing acked after the dropped offsets (they were the last ones
  read): the worker idles with lag for good (seen once in the worker-kill fault test).

Neither loses an effect (the agents already applied the later events, and every effect is
idempotent), but both break what operators watch. `CommitRepair.check()` runs on a timer in each
worker: it deduplicates the acked list, and when a head or tail gap is still there on the next check
with none of its offsets in flight, seeks the partition back to its committed offset, so the missing
events are delivered again and applied once. Faust's consumer internals (`_acked`,
`_committed_offset`, `_read_offset`, `_unacked_messages`, `_new_offset`) are used as of
faust-streaming 0.15.3, pinned exactly in pyproject.toml; `install_strict_commits` refuses to run on
any other version (`FaustVersionMismatch`), and `tests/streams/worker/test_commits.py` proves the
patch on Faust's real consumer class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

_STRICT_TOPICS: set[str] = set()
PROVEN_FAUST = "0.15.3"  # the faust-streaming release these patches were proven on (fault tests, test_commits.py)


class FaustVersionMismatch(RuntimeError):
    """The installed faust-streaming is not the release the commit patches were proven on."""


def check_faust_version(version: str | None = None) -> None:
    """Refuse to patch a faust-streaming other than `PROVEN_FAUST` (its private methods may differ).

    Raises:
        FaustVersionMismatch: with what to do about it.
    """
    if version is None:
        import faust

        version = faust.__version__
    if version != PROVEN_FAUST:
        raise FaustVersionMismatch(
            f"faust-streaming {version} is installed, but streams/worker/commits.py patches private methods of "
            f"faust-streaming {PROVEN_FAUST} only. Install faust-streaming=={PROVEN_FAUST} (pip install -c constraints.txt -e .), "
            "or prove the patch on the new release (tests/streams/worker/test_commits.py and the fault tests) and raise PROVEN_FAUST."
        )


@dataclass(frozen=True, slots=True)
class Repair:
    kind: str  # "dedup" or "seek"
    topic: str
    partition: int
    detail: str


class CommitRepair:
    """Watches the acked offsets of `topics` on one Faust consumer (`consumer()` returns it; Faust
    creates it when the worker starts). Duplicates are removed on every topic; a head gap is re-read
    only on `contiguous` topics: on a compacted topic missing offsets are legitimate (Faust tracks
    them itself), and seeking back would re-read the same hole for ever."""

    def __init__(self, consumer: Callable[[], Any], topics: Iterable[str], contiguous: Iterable[str]) -> None:
        self._consumer = consumer
        self._topics = frozenset(topics)
        self._contiguous = frozenset(contiguous)
        self._gaps: dict[Any, tuple[int, int]] = {}  # tp -> (committed, first acked) seen last check

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
            # the first offset past the gap: the first acked one (a head gap), or past the last one
            # read when nothing is acked (a tail gap: read, then dropped, and nothing came after)
            end = min(acked) if acked else (read + 1 if read is not None else None)
            if tp.topic not in self._contiguous or committed is None or end is None or end <= committed or read is None or read < min(acked, default=end - 1):
                self._gaps.pop(tp, None)
                continue
            in_flight = any(m.tp == tp and committed <= m.offset < end and not m.acked for m in list(c._unacked_messages))
            if in_flight:
                self._gaps.pop(tp, None)
                continue
            if self._gaps.get(tp) != (committed, end):
                self._gaps[tp] = (committed, end)  # seen once: give it one more interval
                continue
            await c.seek(tp, committed)
            self._gaps.pop(tp, None)
            kind = "a later one was" if acked else "nothing after them was"
            repairs.append(Repair("seek", tp.topic, tp.partition, f"offsets {committed}..{end - 1} were never acked ({kind}): re-reading from {committed}"))
        return repairs


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
        FaustVersionMismatch: faust-streaming is not `PROVEN_FAUST`.
    """
    check_faust_version()
    from faust.transport.consumer import Consumer

    _STRICT_TOPICS.update(topics)
    if getattr(Consumer._new_offset, "sail_strict", False):
        return
    faust_new_offset = Consumer._new_offset

    def _new_offset(self: Any, tp: Any) -> int | None:
        committed = self._committed_offset.get(tp)
        acked = self._acked[tp]
        if tp.topic not in _STRICT_TOPICS or not acked:
            return faust_new_offset(self, tp)  # type: ignore[no-any-return]
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

    _new_offset.sail_strict = True  # type: ignore[attr-defined]
    _new_offset.__wrapped_faust__ = faust_new_offset  # type: ignore[attr-defined]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
