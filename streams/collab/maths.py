"""Pure maths of the collaborative vectors: who engages with what together, kept fresh per event.

No clock, no table, no network. The vectors are sparse, over two namespaces of dimensions that
every item owns (`dimension`: a stable hash of its id; `identity`: the same with the top bit set):

- an item's vector x_j holds, on the plain dimensions, how often each other item i was among the
  previous positives (`collab_pairs`) of a user who then liked j (F_j[i]), and on its own identity
  dimension 1; all of it divided by j's positives to the power `item_norm`;
- a user's vector u holds their last `user_items` positives, on the plain dimensions, the newest
  weighing 1 and each older one `user_decay` of the next;
- the search vector of a user is `swap(sum_i u_i x_i)` (plain and identity namespaces exchanged)
  over the items of u, with their vectors as stored *now*, so that for every item j
      x_j . swap(sum_i u_i x_i) = sum_i u_i (F_j[i] + F_i[j]) / (n_i n_j) ** item_norm,
  the online item-to-item co-occurrence score (item-kNN) of the user's recent positives, which
  each interaction moves within one write: one item row (the liked item) and one user row.

Replay-safe as the interest maths are: an item's vector is a sum over its co-engagements (order
does not matter while it holds at most `max_pairs` pairs; beyond, the heaviest are kept), each
applied once (the newest `dedup` event ids remembered, older ones count as applied); a user's vector
is a function of their own applied positives in the order they were applied.

Cold start: an upload begins with a prior, its `prior_items` nearest items by content as pairs of
weight `prior_weight` x similarity, so it is in the collaborative space from its first row and its
own positives outweigh the prior as they come.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Final

from streams.interest.maths import remember
from topology.codec import event_id_hash
from topology.messages import CoEngagement, InterestState, ItemCollabState
from topology.settings import Settings

SPACE: Final = 2**31 - 1  # plain dimensions 0..SPACE-1; identity ones add IDENTITY (Milvus: below 2**32 - 1)
IDENTITY: Final = 1 << 31

Sparse = dict[int, float]


@lru_cache(maxsize=1 << 18)
def dimension(item_id: str) -> int:
    """The plain dimension of an item (stable across processes and runs). Cached: a hash per id was
    the collaborative path's largest pure cost (every co-engagement names up to `pairs` items)."""
    return event_id_hash(item_id) % SPACE


def identity(item_id: str) -> int:
    return dimension(item_id) | IDENTITY


@dataclass(frozen=True, slots=True)
class CollabParams:
    pairs: int = 50
    user_items: int = 20
    user_decay: float = 0.9
    item_norm: float = 0.3
    max_pairs: int = 1024
    dedup: int = 256
    prior_items: int = 10
    prior_weight: float = 1.0

    @classmethod
    def for_settings(cls, settings: Settings) -> CollabParams:
        s = settings
        return cls(
            pairs=s.collab_pairs,
            user_items=s.collab_user_items,
            user_decay=s.collab_user_decay,
            item_norm=s.collab_item_norm,
            max_pairs=s.collab_max_pairs,
            dedup=s.collab_dedup,
            prior_items=s.collab_prior_items,
            prior_weight=s.collab_prior_weight,
        )


def co_engagement(
    before: InterestState, event_id: str, user_id: str, item_id: str, timestamp_ms: int, pairs: int
) -> CoEngagement:
    """The co-engagement of a positive applied to a user's state `before`: their previous positives,
    newest first, the liked item itself left out."""
    previous = [i for i in reversed(before.history) if i != item_id]
    return CoEngagement(event_id, user_id, item_id, timestamp_ms, tuple(dict.fromkeys(previous))[:pairs])


def _heaviest(weights: Mapping[int, float], bound: int) -> tuple[tuple[int, float], ...]:
    """The `bound` heaviest (dimension, weight) pairs (ties: the lower dimension), by dimension."""
    if len(weights) <= bound:  # all of them: one sort by dimension (an item's map is sorted again at every batch)
        return tuple(sorted(weights.items()))
    kept = sorted(weights.items(), key=lambda p: (-p[1], p[0]))[:bound]
    return tuple(sorted(kept))


def apply_co_engagement(state: ItemCollabState, event: CoEngagement, params: CollabParams) -> ItemCollabState:
    """The item's state after one more positive; a replayed one changes nothing."""
    return apply_co_engagements(state, [event], params)


def apply_co_engagements(state: ItemCollabState, events: Iterable[CoEngagement], params: CollabParams) -> ItemCollabState:
    """The item's state after a micro-batch of its positives, in order; replayed ones change nothing.
    The same as applying them one by one while the item holds at most `max_pairs` pairs (beyond, the
    heaviest are kept once per batch rather than once per event)."""
    weights: dict[int, float] | None = None
    recent, floor, likes, updated = state.recent, state.floor_ms, state.likes, state.updated_at_ms
    for event in events:
        key = event_id_hash(event.event_id)
        if event.timestamp_ms < floor or any(h == key for _, h in recent):
            continue  # applied already (or older than every remembered one: counted as applied)
        if weights is None:
            weights = dict(state.pairs)
        for item in event.before[: params.pairs]:
            d = dimension(item)
            weights[d] = weights.get(d, 0.0) + 1.0
        recent, floor = remember(recent, floor, (event.timestamp_ms, key), params.dedup)
        likes += 1
        updated = max(updated, event.timestamp_ms)
    if weights is None:
        return state
    return replace(
        state, pairs=_heaviest(weights, params.max_pairs), likes=likes, recent=recent, floor_ms=floor, updated_at_ms=updated
    )


def with_prior(state: ItemCollabState, neighbours: Iterable[tuple[str, float]], params: CollabParams) -> ItemCollabState:
    """An upload's content-mapped start: its nearest items (id, similarity) as pairs. Set once: an
    item that has a prior or a positive keeps its state (a re-embedding does not move it)."""
    if state.prior or state.likes:
        return state
    weights: dict[int, float] = {}
    for item, similarity in list(neighbours)[: params.prior_items]:
        if similarity > 0:
            d = dimension(item)
            weights[d] = max(weights.get(d, 0.0), params.prior_weight * float(similarity))
    return replace(state, prior=_heaviest(weights, params.max_pairs))


def item_vector(item_id: str, state: ItemCollabState, params: CollabParams) -> Sparse:
    """x_j: the item's pairs (and prior) and its identity dimension, over its positives ** item_norm."""
    scale = max(state.likes, 1) ** -params.item_norm
    vector: Sparse = {}
    for d, w in (*state.pairs, *state.prior):
        vector[d] = vector.get(d, 0.0) + w * scale
    vector[identity(item_id)] = scale
    return vector


def user_items(state: InterestState, params: CollabParams) -> list[tuple[str, float]]:
    """(item id, weight) of the user's last `user_items` positives, newest first (repeats summed)."""
    weights: dict[str, float] = {}
    for age, item in enumerate(reversed(state.history[-params.user_items :])):
        weights[item] = weights.get(item, 0.0) + params.user_decay**age
    return list(weights.items())


def user_vector(state: InterestState, params: CollabParams, items: list[tuple[str, float]] | None = None) -> Sparse:
    """u: the user's recent positives on their plain dimensions (what the users row stores);
    `items`: their `user_items`, when the caller has them already."""
    return {dimension(item): w for item, w in (user_items(state, params) if items is None else items)}


def swap(vector: Mapping[int, float]) -> Sparse:
    """Plain and identity namespaces exchanged."""
    return {d ^ IDENTITY: w for d, w in vector.items()}


def search_vector(weighted: Sequence[tuple[float, Mapping[int, float]]]) -> Sparse:
    """swap(sum_i u_i x_i) over (u_i, x_i): the sparse vector a user's (or, with one item of weight
    1, an item's) collaborative search sends; empty when none of the items has a vector."""
    total: Sparse = {}
    for weight, vector in weighted:
        for d, w in vector.items():
            total[d] = total.get(d, 0.0) + weight * w
    return swap(total)


def dot(a: Mapping[int, float], b: Mapping[int, float]) -> float:
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return sum(w * large.get(d, 0.0) for d, w in small.items())


def fused_scores(collab: Mapping[str, float], content: Mapping[str, float], content_weight: float) -> dict[str, float]:
    """The fused channel's score of every item in either mapping: its collaborative score over the
    best one (0 where it has none), plus `content_weight` x its content score (0 where it has none)."""
    top = max(collab.values(), default=0.0)
    scale = 1.0 / top if top > 0 else 1.0
    return {i: collab.get(i, 0.0) * scale + content_weight * content.get(i, 0.0) for i in dict.fromkeys([*collab, *content])}
