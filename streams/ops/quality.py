"""Live recommendation quality for operators: a sampled online hit rate (issue 15).

For a share of positive interactions (`SAIL_ONLINE_HIT_SAMPLE`, picked by a hash of the event id,
so a replay samples the same events), the interest agent asks whether the item was among the
user's top `SAIL_ONLINE_HIT_K` items by the interest vectors the user had *before* the event (the
items of the user's window left out, as the recall API leaves them out): what a recall service
would have answered a moment earlier. A falling rate says the vectors stopped predicting what users
do next (a bad model version, stale item vectors, a broken interest path), which no latency metric
shows.

Per recall channel (issue 31): `dense` (the interest vectors, as above), `collab` (the user's
collaborative search vector before the event, from their recent positives' vectors as stored then;
`streams.collab.maths`) and `fused` (both lists scored as the recall API's fused channel scores its
candidates, an item missing from one list scoring 0 there), so an operator sees which channel is
earning its keep (`sail_online_hits_total{channel}` over `sail_online_hit_checks_total{channel}`).
A user with no collaborative vector yet is checked on dense and fused (the API's fallback) only.

The search runs beside the agent, one at a time: a batch's probes that find a search still running
are skipped and counted (`sail_online_hit_skipped_total`), so a slow Milvus never slows the stream
and a failed search is only a missed sample. At most `SAIL_ONLINE_HIT_MAX_PER_S` probes a second are
taken (a token bucket; a sampled event beyond it is not a probe): uncapped, the 2 % sample of 1,600
interactions/s cost 4 % of the worker's core (py-spy), and a hit rate needs no more than a few a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streams.collab.maths import CollabParams, fused_scores, search_vector, user_items
from streams.interest.maths import InterestParams, interest_vectors
from streams.ops.metrics import Metrics
from streams.ops.pacing import TokenBucket
from streams.sinks.milvus import Hit, MilvusSink, milvus_string
from topology.codec import event_id_hash
from topology.collections import CANARY, COLLAB_COPY, COLLAB_FIELD, VECTOR_FIELD, unpack_sparse
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
    exclude: frozenset[str]  # the items of the user's window (and of their collaborative vector)
    collab: tuple[tuple[str, float], ...] = ()  # the user's recent positives and weights (`user_items`); () without


def probe(
    event: Interaction,
    state: InterestState,
    vectors: Mapping[str, np.ndarray],
    params: InterestParams,
    share: float,
    collab: CollabParams | None = None,
) -> Probe | None:
    """A probe for `event` if it is a sampled positive and the user has interest vectors already."""
    if event.action.is_negative or not sampled(event.event_id, share):
        return None
    slots = interest_vectors(state, vectors, params)
    if slots is None:
        return None
    mine = tuple(user_items(state, collab)) if collab is not None else ()
    return Probe(event.item_id, slots, frozenset(state.item_ids()) | {i for i, _ in mine}, mine)


def best_scores(probes: Sequence[Probe], results: Sequence[Sequence[Hit]]) -> list[dict[str, float]]:
    """Each probe's items and their best slot's score: `results` holds one hit list per slot vector,
    probe after probe; the probe's excluded items left out (as in the recall API)."""
    out: list[dict[str, float]] = []
    at = 0
    for p in probes:
        best: dict[str, float] = {}
        for per_slot in results[at : at + len(p.vectors)]:
            for hit in per_slot:
                if hit.id not in p.exclude and best.get(hit.id, -np.inf) < hit.score:
                    best[hit.id] = hit.score
        at += len(p.vectors)
        out.append(best)
    return out


def in_top(item: str, scores: Mapping[str, float], k: int) -> bool:
    return item in sorted(scores, key=lambda i: (-scores[i], i))[:k]


def hits(probes: Sequence[Probe], results: Sequence[Sequence[Hit]], k: int) -> list[bool]:
    """Whether each probe's item is in its dense top-`k` (see `best_scores`)."""
    return [in_top(p.item_id, scores, k) for p, scores in zip(probes, best_scores(probes, results))]


class OnlineHitRate:
    """Runs the probes' searches (one at a time) and keeps the outcome of the latest `window` per channel."""

    def __init__(
        self,
        sink: MilvusSink,
        k: int,
        metrics: Metrics,
        window: int = 500,
        collab_items: str | None = None,
        content_weight: float = 0.1,
        channel: str = "dense",
        max_per_s: float = 0.0,
    ) -> None:
        self._sink = sink
        self._budget = TokenBucket(max_per_s, max(max_per_s, 1.0))  # a second's worth at once
        self._k = k
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._collab_items = collab_items  # the collab_items collection; None: dense only
        self._content_weight = content_weight
        self.channel = channel if collab_items is not None else "dense"  # the one the status page's trend follows
        channels = ("dense", "collab", "fused") if collab_items is not None else ("dense",)
        self.recent: dict[str, deque[bool]] = {c: deque(maxlen=window) for c in channels}

    @property
    def k(self) -> int:
        return self._k

    def take(self) -> bool:
        """Whether one more probe fits `max_per_s` now (then it counts against it)."""
        return self._budget.take()

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
            dense = best_scores(probes, results)
            collab = await self._collab(probes, limit) if self._collab_items is not None else [None] * len(probes)
        except Exception as exc:
            self._metrics.online_hit_skipped.inc(len(probes))
            logger.info("online hit-rate search skipped: %s", str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            return
        for p, content, together in zip(probes, dense, collab):
            self._record("dense", in_top(p.item_id, content, self._k))
            if self._collab_items is None:
                continue
            if together is not None:
                self._record("collab", in_top(p.item_id, together, self._k))
            self._record("fused", in_top(p.item_id, fused_scores(together or {}, content, self._content_weight), self._k))

    async def _collab(self, probes: list[Probe], limit: int) -> list[dict[str, float] | None]:
        """Each probe's collab channel scores (None: the user had no collaborative vector)."""
        assert self._collab_items is not None
        wanted = sorted({i for p in probes for i, _ in p.collab})
        rows = await self._sink.get(self._collab_items, wanted, ["item_id", COLLAB_COPY]) if wanted else []
        stored = {str(r["item_id"]): unpack_sparse(str(r[COLLAB_COPY])) for r in rows}
        queries = [search_vector([(w, stored[i]) for i, w in p.collab if i in stored]) for p in probes]
        asked = [n for n, q in enumerate(queries) if q]
        out: list[dict[str, float] | None] = [None] * len(probes)
        if asked:
            found = await self._sink.search(
                self._collab_items, [queries[n] for n in asked], limit=limit, vector_field=COLLAB_FIELD
            )
            for n, per_query in zip(asked, found):
                out[n] = {h.id: h.score for h in per_query if h.id not in probes[n].exclude}
        return out

    def _record(self, channel: str, hit: bool) -> None:
        self._metrics.online_hit_checks.labels(channel).inc()
        if hit:
            self._metrics.online_hits.labels(channel).inc()
        self.recent[channel].append(hit)

    def rate(self, channel: str | None = None) -> tuple[float | None, int]:
        """(hit rate over the latest checks of `channel` (None: the served default), how many checks); None before the first."""
        recent = self.recent[channel or self.channel]
        n = len(recent)
        return (sum(recent) / n if n else None), n

    def rates(self) -> dict[str, tuple[float | None, int]]:
        """Every channel's `rate`."""
        return {c: self.rate(c) for c in self.recent}

    async def drain(self) -> None:
        """Wait for the search in flight (tests, shutdown)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
