"""Live recommendation quality for operators: a sampled online hit rate (issue 15).

For a share of positive interactions (`SAIL_ONLINE_HIT_SAMPLE`, picked by a hash of the event id,
so a replay samples the same events), the interest agent asks whether the item was among the
user's top `SAIL_ONLINE_HIT_K` items by the interest vectors the user had *before* the event (the
items of the user's window left out, as the recall API leaves them out): what a recall service
would have answered a moment earlier. A falling rate says the vectors stopped predicting what users
do next (a bad model version, stale item vectors, a broken interest path), which no latency metric
shows.

The search runs beside the agent, one at a time: a batch's probes that find a search still running
are skipped and counted (`sail_online_hit_skipped_total`), so a slow Milvus never slows the stream
and a failed search is only a missed sample.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streams.interest.maths import InterestParams, interest_vectors
from streams.ops.metrics import Metrics
from streams.sinks.milvus import Hit, MilvusSink, milvus_string
from topology.codec import event_id_hash
from topology.collections import CANARY, VECTOR_FIELD
from topology.messages import Interaction, InterestState

logger = logging.getLogger(__name__)

_SCALE = 1 << 20


def sampled(event_id: str, share: float) -> bool:
    """Whether `event_id` is in the sampled `share` (the same answer on every worker and replay)."""
    return share > 0 and event_id_hash(event_id) % _SCALE < share * _SCALE


@dataclass(frozen=True, slots=True)
class Probe:
    """One sampled positive event and what the user's vectors were before it."""

    item_id: str
    vectors: np.ndarray  # (slots, dim)
    exclude: frozenset[str]  # the items of the user's window


def probe(
    event: Interaction, state: InterestState, vectors: Mapping[str, np.ndarray], params: InterestParams, share: float
) -> Probe | None:
    """A probe for `event` if it is a sampled positive and the user has interest vectors already."""
    if event.action.is_negative or not sampled(event.event_id, share):
        return None
    slots = interest_vectors(state, vectors, params)
    return None if slots is None else Probe(event.item_id, slots, frozenset(state.item_ids()))


def hits(probes: Sequence[Probe], results: Sequence[Sequence[Hit]], k: int) -> list[bool]:
    """Whether each probe's item is in its top-`k`: `results` holds one hit list per slot vector,
    probe after probe; an item's score is its best slot's (as in the recall API)."""
    out: list[bool] = []
    at = 0
    for p in probes:
        best: dict[str, float] = {}
        for per_slot in results[at : at + len(p.vectors)]:
            for hit in per_slot:
                if hit.id not in p.exclude and best.get(hit.id, -np.inf) < hit.score:
                    best[hit.id] = hit.score
        at += len(p.vectors)
        top = sorted(best, key=lambda i: (-best[i], i))[:k]
        out.append(p.item_id in top)
    return out


class OnlineHitRate:
    """Runs the probes' searches (one at a time) and keeps the outcome of the latest `window`."""

    def __init__(self, sink: MilvusSink, k: int, metrics: Metrics, window: int = 500) -> None:
        self._sink = sink
        self._k = k
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self.recent: deque[bool] = deque(maxlen=window)

    @property
    def k(self) -> int:
        return self._k

    def submit(self, probes: Sequence[Probe], items: str) -> None:
        """Search `items` (the collection of the version the probes' vectors are of) for `probes`."""
        if not probes:
            return
        if self._task is not None and not self._task.done():
            self._metrics.online_hit_skipped.inc(len(probes))
            return
        self._task = asyncio.create_task(self._check(list(probes), items))

    async def _check(self, probes: list[Probe], items: str) -> None:
        limit = self._k + max(len(p.exclude) for p in probes)
        try:
            results = await self._sink.search(
                items,
                np.concatenate([p.vectors for p in probes]),
                limit=limit,
                vector_field=VECTOR_FIELD,
                filter_expr=f"creator_id != {milvus_string(CANARY)}",
            )
        except Exception as exc:
            self._metrics.online_hit_skipped.inc(len(probes))
            logger.info("online hit-rate search skipped: %s", str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            return
        for hit in hits(probes, results, self._k):
            self._metrics.online_hit_checks.inc()
            if hit:
                self._metrics.online_hits.inc()
            self.recent.append(hit)

    def rate(self) -> tuple[float | None, int]:
        """(hit rate over the latest checks, how many checks); None before the first."""
        n = len(self.recent)
        return (sum(self.recent) / n if n else None), n

    async def drain(self) -> None:
        """Wait for the search in flight (tests, shutdown)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
