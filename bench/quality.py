"""Recommendation quality on MovieLens: real-time user vectors against daily refresh and the classic
baselines, on one time-ordered stream (issue 15).

    python -m bench.quality                       # the whole ml-latest-small log (100,004 ratings)
    python -m bench.quality --ratings 20000       # the first 20,000 ratings in time order
    python -m bench.quality --encoder sail-tiny   # another encoder preset (default: the stack's default)
    python -m bench.quality --sid --only realtime-weighted-K1   # semantic IDs (issue 18): sid and mixed vs dense

1. The stream runs through the real pipeline: the local stack (Kafka KRaft, Milvus Lite, Triton
   serving the encoder) and one worker: every movie as an upload (one backlog for the encoder),
   then every rating as an interaction in log order (`deploy.datasets.movielens.replay`, a backlog).
2. Once every event is processed, every movie's vector is read back from Milvus: what the encoder
   made of its title, year and genres.
3. The protocol walks the same log in time order. For every positive held-out event (a like:
   rating >= 4), *before* it is applied, each method ranks every movie already uploaded that the
   user has not rated yet; the rank of the liked movie gives HitRate@10/@50 and NDCG@10; the
   top-10 lists give catalogue coverage. A user a method cannot serve yet (no positives, or none
   before today for the daily refresh) counts as a miss.
   - `realtime-mean10`: the mean of the user's last 10 positives (the SAIL report's recipe);
   - `realtime-weighted K=1|3`: the worker's own interest maths (`streams.interest.maths`, action
     and recency weights, negatives pushed away, K interest slots, an item's score its best slot);
   - `daily-*`: the same vectors frozen at the start of each UTC day of the log (a nightly job);
   the standard baselines (`bench.baselines`, issue 31):
   - `popularity-1d|7d|30d|all`: most positive interactions in the last 1, 7, 30 days, or ever;
   - `item-knn`: co-occurrence nearest neighbours (cosine over users' positive pairs, each new
     positive paired with the user's previous 50) of the user's last 10 positives, updated online;
   - `als-nightly`: `implicit`'s ALS retrained at each midnight of the log on every positive before
     it, serving the day from its factors; `als-foldin`: the same item factors with the user folded
     in at request time from every positive so far;
   the stream's collaborative channels (issue 31), through the worker's own pure maths:
   - `collab`: the sparse co-engagement vectors (`streams.collab.maths`; an arriving item's prior from
     its nearest arrived items by content), each user's search vector from their recent positives;
   - `fused`: what the recall API serves by default, collab over its best plus a weight x the dense
     (K = 1) content score (`Fusion`, as `streams.recall.query` scores its candidates).
   Every method's knobs (ALS, item-kNN, collab, the fusion weight) are tuned (`tune`) on the log before
   the test period only, the same way.
   Only the likes after `--test-from` (default: the second half of the log) are ranked; the first
   half streams through every method's state. Reported three ways: over every ranked like, over the
   likes of users who had a positive before that day (`served_*`: the ones a nightly job can serve
   at all, so the gain is not only the cold start), and over the likes of items in their first 7
   days after upload (`fresh_*`; an item's upload is its first rating here).
   The user vectors come from the worker's own pure maths over the log with its original times
   (a 6 h half-life means 6 h of the log); the recall API's answers are checked against the same
   computation for a sample of users at the end (step 4).
4. Agreement: for up to 20 users, the recall API's top-10 (HTTP, excluding everything they rated)
   per channel (dense, collab, fused) is compared with the same channel computed from the vectors the
   worker stored; and every movie's stored positives count with the log's. The worker's own counters
   give the collaborative path's cost (CPU µs and Milvus rows per co-engagement, freshness), and the
   same ratings go through a second worker without collaborative vectors: the interest path's
   throughput with and without them, in the same run.
5. With `--sid` (issue 18): after step 2, `sail-stream sid fit --backfill`'s code fits a codebook
   over the stored movie vectors and gives every movie its semantic ID; the IDs are read back from
   Milvus and step 3 adds `sid` and `mixed` (see `evaluate`); then `--sid-fresh` movies are uploaded
   again under new ids and the worker's own counters give the assignment's cost per item against
   its encoder time per item (each copy shares its original's codes: every one takes the collision
   path, a suffix read from Milvus).
A benchmark, never a test: the figures go to bench/results/quality[-sid][-Nratings].json with the
machine and date (`bench.results`), shaped as issue 31 names (`methods` keyed by name, with `hr10`,
`hr50`, `ndcg10`, `coverage10`, `fresh_hr10`, `fresh_hr50`, `served_hr10`; `default_method`,
`baselines`, `realtime_vs_nightly`), from which `python -m bench.report` renders BENCHMARKS.md.
Not through the recall HTTP API for every like: each like must be ranked against the state just
before it, which over HTTP means a drain and a request per like (24,104 of them); the API is checked
against the protocol per channel for a sample of users at the end (step 4).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bench.baselines import DAY_S, AlsParams, NightlyAls, Popularity
from bench.results import scratch_dir, write_result
from deploy.datasets.movielens import MovieLens, Rating, interaction_for
from streams.collab.maths import CollabParams, apply_co_engagement, co_engagement, dimension, user_items, with_prior
from streams.interest.maths import InterestParams, apply_interaction, interest_vectors, l2_normalise
from streams.sid.maths import sid_scores
from topology.messages import Action, InterestState, ItemCollabState

DEFAULT_ALS = AlsParams()
DEFAULT_COLLAB = CollabParams()


@dataclass
class Score:
    """One method's figures over the held-out positives."""

    method: str
    hits10: int = 0
    hits50: int = 0
    ndcg10: float = 0.0
    served: int = 0  # queries the method could answer (the user had a vector / history)
    queries: int = 0
    recommended: set[int] = field(default_factory=set)

    def add(self, rank: float, top10: Iterable[int]) -> None:
        self.queries += 1
        self.served += 1
        self.hits10 += rank < 10
        self.hits50 += rank < 50
        self.ndcg10 += 1.0 / math.log2(rank + 2) if rank < 10 else 0.0
        self.recommended.update(top10)

    def miss(self) -> None:
        self.queries += 1

    def summary(self, catalogue: int) -> dict[str, float | int | str]:
        q = max(self.queries, 1)
        return {
            "method": self.method,
            "queries": self.queries,
            "served": self.served,
            "hit_rate_10": round(self.hits10 / q, 4),
            "hit_rate_50": round(self.hits50 / q, 4),
            "ndcg_10": round(self.ndcg10 / q, 4),
            "coverage_10": round(len(self.recommended) / max(catalogue, 1), 4),
        }


def rank_and_top(scores: np.ndarray, target: int, excluded: Iterable[int], arrived: int) -> tuple[float, list[int]]:
    """(0-based rank of `target` among the arrived, not excluded items, the top 10) for one query.

    `scores` covers every item in arrival order; items from `arrived` on do not exist yet. Ties
    are broken by arrival order (older first), which is deterministic and favours no method.
    """
    row = scores[:arrived].astype(np.float64, copy=True)
    gone = [i for i in excluded if i < arrived]
    if gone:
        row[gone] = -np.inf
    s = row[target]
    rank = (
        float(np.count_nonzero(row > s) + np.count_nonzero(row[:target] == s)) if np.isfinite(s) else math.inf
    )  # -inf: not in the method's list
    k = min(10, arrived)
    top = np.argpartition(-row, k - 1)[:k] if k else np.array([], dtype=np.int64)
    return rank, [int(i) for i in top if np.isfinite(row[i])]


@dataclass(frozen=True)
class Fusion:
    """The recall API's fused channel (`streams.recall.query`): the collaborative score over the best one
    among the items the user may be shown, plus `content` x the content score (the user's best interest
    slot of `slots`); a user with no collaborative vector gets the content score alone (the API's dense
    fallback), one with neither is a miss."""

    content: float = 0.1
    slots: int = 1

    def row(self, collab: np.ndarray | None, content: np.ndarray | None, allowed: np.ndarray) -> np.ndarray | None:
        if collab is None:
            return content
        shown = collab[allowed]
        top = float(shown.max()) if shown.size and shown.max() > 0 else 1.0
        return collab / top + (self.content * content if content is not None else 0.0)


@dataclass(frozen=True)
class KnnParams:
    """Item-kNN's knobs: a new positive is paired with the user's previous `pairs` positives; a user is
    scored from their last `history` positives."""

    history: int = 10
    pairs: int = 50


class Collab:
    """The stream's collaborative vectors (`streams.collab.maths`) over the log, scored in dense form.

    Every positive goes through the worker's own pure functions (`co_engagement`, then
    `apply_co_engagement` on the liked item's state; an arriving item gets `with_prior` from its
    nearest arrived items by content). For speed the scores are computed from a dense copy of the
    states' pairs (row j: the plain-dimension weights of x_j before its norm), which is exactly
    x_j . swap(sum_i u_i x_i) for every item j at once; `check` compares it with the sparse maths.
    """

    def __init__(self, ids: list[str], params: CollabParams) -> None:
        self.params = params
        self.ids = ids
        self.column = {dimension(item): k for k, item in enumerate(ids)}
        if len(self.column) != len(ids):
            raise ValueError("two items share a collaborative dimension (a hash collision): the dense form would merge them")
        self.of = {item: k for k, item in enumerate(ids)}
        self.states = [ItemCollabState() for _ in ids]
        self.weights = np.zeros((len(ids), len(ids)), dtype=np.float32)
        self.likes = np.zeros(len(ids), dtype=np.float64)

    def _store(self, k: int) -> None:
        state = self.states[k]
        row = self.weights[k]
        row[:] = 0.0
        for d, w in (*state.pairs, *state.prior):
            row[self.column[d]] += w
        self.likes[k] = state.likes

    def arrive(self, k: int, content: np.ndarray, arrived: int) -> None:
        """Item k's upload: the prior from its nearest items among the `arrived` before it."""
        if not self.params.prior_items or arrived <= 1:
            return
        similarity = content[:arrived] @ content[k]
        similarity[k] = -np.inf
        top = np.argsort(-similarity, kind="stable")[: self.params.prior_items]
        self.states[k] = with_prior(self.states[k], [(self.ids[i], float(similarity[i])) for i in top], self.params)
        self._store(k)

    def positive(self, before: InterestState, event_id: str, user_id: str, k: int, timestamp_ms: int) -> None:
        engagement = co_engagement(before, event_id, user_id, self.ids[k], timestamp_ms, self.params.pairs)
        self.states[k] = apply_co_engagement(self.states[k], engagement, self.params)
        self._store(k)

    def row(self, state: InterestState) -> np.ndarray | None:
        mine = user_items(state, self.params)
        if not mine:
            return None
        index = np.array([self.of[i] for i, _ in mine])
        scale = np.maximum(self.likes, 1.0) ** -self.params.item_norm
        a = np.array([w for _, w in mine]) * scale[index]
        return scale * (self.weights[:, index] @ a + a @ self.weights[index, :])


@dataclass
class User:
    state: InterestState = field(default_factory=InterestState)
    seen: list[int] = field(default_factory=list)
    positives: list[int] = field(default_factory=list)
    day: int = -1  # the log day of the user's latest event
    daily_state: InterestState = field(default_factory=InterestState)  # the state at the start of `day`
    daily_positives: list[int] = field(default_factory=list)


def evaluate(
    data: MovieLens,
    vectors: dict[str, np.ndarray],
    params: InterestParams = InterestParams(),
    slots: tuple[int, ...] = (1, 3),
    progress: Callable[[str], None] = lambda line: None,
    score_from_s: float = float("-inf"),
    item_groups: dict[str, set[str]] | None = None,
    only: tuple[str, ...] | None = None,
    sids: dict[str, tuple[int, ...]] | None = None,
    sid_positives: int = 10,
    fused_k: int = 50,
    als: AlsParams = DEFAULT_ALS,
    als_foldin: AlsParams | None = None,
    popularity_days: tuple[int | None, ...] = (1, 7, 30, None),
    sample_days: int = 1,
    fresh_days: int = 7,
    collab: CollabParams = DEFAULT_COLLAB,
    fusion: Fusion | None = None,
    knn_params: KnnParams | None = None,
) -> dict[str, object]:
    """Every method's figures on `data`'s log, time-ordered: each like is ranked before it is applied.

    `vectors` maps every rated movie's item id to its unit vector (from Milvus). Pure: no I/O.
    `score_from_s`: likes before this log time are applied but not ranked (a held-out test period).
    `item_groups`: name -> item ids; each group also gets the figures over the likes of its items
    (`groups` in the result), e.g. cold and warm items of a time split. `only`: these methods alone.
    `sids`: item id -> semantic-ID codes (as stored by the backfill); adds the recall API's channels:
    `sid` (`sid_scores` of every item against the user's last `sid_positives` positives, ties to the
    newest, as the API breaks them) and `mixed` (reciprocal-rank fusion of realtime-weighted-K1's and
    sid's top `fused_k`, as the API fuses each channel's top k; outside both lists: a miss).
    `als`: the knobs of `als-nightly`, and of `als-foldin` unless `als_foldin` gives its own
    (`bench.baselines`); `popularity_days`: a
    `popularity-Nd` method per window (None: `popularity-all`). `sample_days`: rank the likes of every
    Nth log day only (the tuning pass: fewer nightly trainings). `fresh_days`: the `fresh` table holds
    the likes of items within this many days of their arrival (their first rating: the upload).
    """
    order: list[int] = []  # movie ids in arrival order (first rating)
    index: dict[int, int] = {}
    for r in data.ratings:
        if r.movie_id not in index:
            index[r.movie_id] = len(order)
            order.append(r.movie_id)
    ids = [data.movies[m].item_id for m in order]
    missing = [i for i in ids if i not in vectors]
    if missing:
        raise ValueError(f"{len(missing)} rated movies have no vector (e.g. {missing[:3]}): the pipeline did not store them")
    matrix = l2_normalise(np.stack([np.asarray(vectors[i], dtype=np.float32) for i in ids]))
    n = len(ids)
    users: dict[int, User] = {}
    variants = {f"realtime-weighted-K{k}": replace(params, slots=k) for k in slots}
    popular = {f"popularity-{d}d" if d else "popularity-all": Popularity(n, d * DAY_S if d else None) for d in popularity_days}
    methods = [
        "realtime-mean10",
        *variants,
        "daily-mean10",
        *(v.replace("realtime", "daily") for v in variants),
        *popular,
        "item-knn",
        "als-nightly",
        "als-foldin",
        "collab",
        "fused",
    ]
    if sids is not None:
        missing_sid = [i for i in ids if i not in sids]
        if missing_sid:
            raise ValueError(
                f"{len(missing_sid)} rated movies have no semantic ID (e.g. {missing_sid[:3]}): the backfill did not reach them"
            )
        codes = np.asarray([sids[i] for i in ids], dtype=np.int32)
        methods += ["sid", "mixed"]
    if only is not None:
        methods = [m for m in methods if m in only]
    scores = {m: Score(m) for m in methods}
    warm = {m: Score(m) for m in methods}  # only likes by users with a positive before that day: where a nightly job has a vector
    fresh = {m: Score(m) for m in methods}  # only likes of items within `fresh_days` of their arrival
    grouped = {g: {m: Score(m) for m in methods} for g in item_groups or {}}
    n_users = max(r.user for r in data.ratings) + 1
    nightly = NightlyAls(n_users, n, als)
    folding = nightly if als_foldin in (None, als) else NightlyAls(n_users, n, als_foldin)
    nightlies = [nightly] if folding is nightly else [nightly, folding]
    arrived_at = np.zeros(n, dtype=np.int64)  # log time of each item's first rating
    log_day = None
    cooc = np.zeros((n, n), dtype=np.float32)
    item_pos = np.zeros(n, dtype=np.float64)
    arrived = 0
    began = time.monotonic()
    next_report = began + 15
    vectors_by_id = {i: matrix[k] for k, i in enumerate(ids)}
    together = Collab(ids, collab)
    fuse = fusion or Fusion()
    neighbours = knn_params or KnnParams()

    def dense(query: np.ndarray | None) -> np.ndarray | None:
        return None if query is None else (query @ matrix.T).max(axis=0)  # (slots, n) -> each item's best slot

    def mean10(positives: list[int]) -> np.ndarray | None:
        return l2_normalise(matrix[positives[-10:]].mean(axis=0))[None, :] if positives else None

    def sid_row(positives: list[int]) -> np.ndarray | None:
        if not positives:
            return None
        return (
            sid_scores(codes, codes[positives[-sid_positives:]]) + np.arange(n, dtype=np.float64) * 1e-9
        )  # ties: the newest first

    def mixed_row(dense_row: np.ndarray | None, sid: np.ndarray | None, excluded: list[int]) -> np.ndarray | None:
        if dense_row is None or sid is None:
            return None
        fused = np.full(n, -np.inf)
        for row in (dense_row, sid):
            masked = row[:arrived].astype(np.float64, copy=True)
            masked[[i for i in excluded if i < arrived]] = -np.inf
            top = np.argpartition(-masked, min(fused_k, arrived) - 1)[: min(fused_k, arrived)]
            top = top[np.lexsort((top, -masked[top]))]  # best first, ties to the older (as rank_and_top breaks them)
            top = top[np.isfinite(masked[top])]
            fused[top] = np.where(np.isfinite(fused[top]), fused[top], 0.0) + 1.0 / (60 + np.arange(len(top)) + 1)
        return fused

    def allowed(excluded: list[int], arrived: int) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        mask[:arrived] = True
        mask[[i for i in excluded if i < arrived]] = False
        return mask

    def knn(positives: list[int]) -> np.ndarray | None:
        if not positives:
            return None
        last = positives[-neighbours.history :]
        norm = np.sqrt(np.maximum(item_pos, 1.0))
        return (cooc[last] / norm[last][:, None]).sum(axis=0) / norm

    for step, rating in enumerate(data.ratings):
        item = index[rating.movie_id]
        if item >= arrived:
            arrived_at[item] = rating.timestamp_s
            together.arrive(item, matrix, item + 1)
        arrived = max(arrived, item + 1)
        user = users.setdefault(rating.user, User())
        day = rating.timestamp_s // DAY_S
        if day != log_day:  # midnight of the log: the nightly job would train on everything before it
            for job in nightlies:
                job.end_of_day()
            log_day = day
        if day != user.day:  # a new day for this user: the nightly job has seen everything before it
            user.daily_state = user.state
            user.daily_positives = list(user.positives)
            user.day = day
        event = interaction_for(rating, rating.timestamp_s * 1000)  # the protocol's clock is the log's
        now = rating.timestamp_s
        if event.action is Action.LIKE and now >= score_from_s and day % sample_days == 0:
            excluded = user.seen
            into = [scores, warm] if user.daily_positives else [scores]
            if now - arrived_at[item] <= fresh_days * DAY_S:
                into.append(fresh)
            into += [grouped[g] for g, members in (item_groups or {}).items() if rating.item_id in members]
            makers: dict[str, Callable[[], np.ndarray | None]] = {
                "realtime-mean10": lambda: dense(mean10(user.positives)),
                "daily-mean10": lambda: dense(mean10(user.daily_positives)),
                "item-knn": lambda: knn(user.positives),
                "als-nightly": lambda: nightly.row(rating.user, arrived),
                "als-foldin": lambda: folding.fold_in_row(rating.user, user.positives, arrived),
                "collab": lambda: together.row(user.state),
                "fused": lambda: fuse.row(
                    together.row(user.state),
                    dense(interest_vectors(user.state, vectors_by_id, replace(params, slots=fuse.slots))),
                    allowed(excluded, arrived),
                ),
            }
            for name, counts in popular.items():
                makers[name] = lambda counts=counts: counts.row(now, arrived)  # type: ignore[misc]
            for name, p in variants.items():
                makers[name] = lambda p=p: dense(interest_vectors(user.state, vectors_by_id, p))  # type: ignore[misc]
                makers[name.replace("realtime", "daily")] = lambda p=p: dense(
                    interest_vectors(user.daily_state, vectors_by_id, p)
                )  # type: ignore[misc]
            if sids is not None:
                k1 = replace(params, slots=1)
                memo: dict[
                    str, np.ndarray | None
                ] = {}  # the K1 and sid rows, computed once per like for both channels and their fusion

                def once(key: str, make: Callable[[], np.ndarray | None]) -> np.ndarray | None:
                    if key not in memo:
                        memo[key] = make()
                    return memo[key]

                k1_row = lambda: once("k1", lambda: dense(interest_vectors(user.state, vectors_by_id, k1)))  # noqa: E731
                sid_now = lambda: once("sid", lambda: sid_row(user.positives))  # noqa: E731
                if "realtime-weighted-K1" in makers:
                    makers["realtime-weighted-K1"] = k1_row
                makers["sid"] = sid_now
                makers["mixed"] = lambda: mixed_row(k1_row(), sid_now(), excluded)
            rows = {name: makers[name]() for name in scores}  # only the methods asked for are computed
            for name, row in rows.items():
                ranked = rank_and_top(row, item, excluded, arrived) if row is not None else None
                for table in into:
                    if ranked is None:
                        table[name].miss()
                    else:
                        table[name].add(*ranked)
        # apply the event: every method's state moves past it
        before = user.state
        user.state = apply_interaction(user.state, event, params)
        if not event.action.is_negative and user.state is not before:
            together.positive(before, event.event_id, event.user_id, item, event.timestamp_ms)
        user.seen.append(item)
        if not event.action.is_negative:
            if user.positives:
                prev = user.positives[-neighbours.pairs :]
                cooc[prev, item] += 1.0
                cooc[item, prev] += 1.0
            item_pos[item] += 1.0
            user.positives.append(item)
            for counts in popular.values():
                counts.observe(item, now)
            for job in nightlies:
                job.observe(rating.user, item)
        if time.monotonic() >= next_report:
            progress(
                f"quality: {step + 1:,} of {len(data.ratings):,} events "
                f"({next(iter(scores.values())).queries:,} held-out likes ranked)"
            )
            next_report += 15
    return {
        "events": len(data.ratings),
        "likes": next(iter(scores.values())).queries,
        "movies": n,
        "users": len(users),
        "seconds": round(time.monotonic() - began, 1),
        "methods": [scores[m].summary(n) for m in methods],
        "warm_methods": [warm[m].summary(n) for m in methods],
        "fresh_methods": [fresh[m].summary(n) for m in methods],
        "als": {
            "nightly": dataclasses.asdict(als),
            "foldin": dataclasses.asdict(folding.params),
            "trainings": sum(job.trainings for job in nightlies),
        },
        "groups": {g: [table[m].summary(n) for m in methods] for g, table in grouped.items()},
    }


def realtime_gain(result: dict[str, object]) -> dict[str, float | None]:
    """HitRate@10 and @50 of each real-time variant over its daily refresh (ratio; None if daily is 0)."""
    by = {m["method"]: m for m in result["methods"]}  # type: ignore[index,union-attr]
    out: dict[str, float | None] = {}
    for name, m in by.items():
        if name.startswith("realtime-") and name.replace("realtime", "daily") in by:  # --only may leave the daily one out
            daily = by[name.replace("realtime", "daily")]
            for k in ("hit_rate_10", "hit_rate_50"):
                out[f"{name} {k}"] = round(m[k] / daily[k], 2) if daily[k] else None
    return out


ALS_GRID = {  # searched one knob at a time from `AlsParams()`, in this order, on the tuning period only
    "alpha": (1.0, 5.0, 10.0, 20.0, 40.0),
    "regularization": (0.01, 0.05, 0.2, 1.0, 5.0),
    "factors": (32, 64, 128, 256),
}
KNN_GRID = {"history": (5, 10, 20, 50), "pairs": (10, 20, 50, 100)}
COLLAB_GRID = {"user_items": (10, 20, 50), "user_decay": (0.7, 0.8, 0.9, 1.0), "item_norm": (0.2, 0.3, 0.5), "pairs": (20, 50)}
FUSION_GRID = {"content": (0.0, 0.05, 0.1, 0.2, 0.5)}
TUNING_PASSES = 2  # coordinate descent goes over every knob twice (a knob's best can move after another's)


def best_recorded(trials: list[dict[str, object]], method: str) -> AlsParams:
    """The ALS knobs of the recorded trial with the best HitRate@10 for `method` (ties: the earlier)."""
    scored = [(float(t["hit_rate_10"][method]), -n, t["params"]) for n, t in enumerate(trials) if method in t["hit_rate_10"]]  # type: ignore[index,operator]
    if not scored:
        raise ValueError(f"no recorded ALS trial scores {method}")
    return AlsParams(**max(scored, key=lambda x: (x[0], x[1]))[2])  # type: ignore[arg-type]


@dataclass(frozen=True)
class Tuned:
    """Every tuned method's knobs, chosen on the log before the test period."""

    als_nightly: AlsParams = DEFAULT_ALS
    als_foldin: AlsParams = DEFAULT_ALS
    knn: KnnParams = KnnParams()
    collab: CollabParams = DEFAULT_COLLAB
    fusion: Fusion = Fusion()


def tune(
    data: MovieLens,
    vectors: dict[str, np.ndarray],
    test_from: int,
    sample_days: int = 12,
    progress: Callable[[str], None] = lambda line: None,
    als_trials: list[dict[str, object]] | None = None,
) -> tuple[Tuned, dict[str, object]]:
    """The knobs a team would pick for each method, on the log before the test period only.

    The tuning log is the first `test_from` ratings; its likes from the middle of it on (every
    `sample_days`th log day) are ranked as the protocol ranks them. Coordinate descent, one knob at a
    time over its grid, `TUNING_PASSES` times, each kept at its best HitRate@10 (ties: the earlier
    value): `ALS_GRID` separately for `als-nightly` and `als-foldin` (one trial scores both),
    `KNN_GRID` for `item-knn`, `COLLAB_GRID` for `collab`, then `FUSION_GRID` for `fused` over the
    tuned collab. `als_trials`: the ALS trials of an earlier tuning on the same log (`--als-from`), whose
    best per method is taken instead of searching again (an ALS trial takes about a minute here).
    Returns the chosen knobs and the record of the tuning (every trial's figures).
    """
    tuning = data.first(test_from)
    validate_from = tuning.ratings[len(tuning.ratings) // 2].timestamp_s
    trials: list[dict[str, object]] = []
    seen: dict[tuple[str, object], dict[str, float]] = {}

    def trial(methods: tuple[str, ...], knobs: object, **kwargs: object) -> dict[str, float]:
        key = (methods[0], knobs)
        if key not in seen:
            result = evaluate(tuning, vectors, only=methods, score_from_s=validate_from, sample_days=sample_days, **kwargs)  # type: ignore[arg-type]
            by = {m["method"]: m for m in result["methods"]}  # type: ignore[index,union-attr]
            seen[key] = {name: float(by[name]["hit_rate_10"]) for name in methods}  # type: ignore[arg-type]
            trials.append(
                {
                    "methods": list(methods),
                    "params": dataclasses.asdict(knobs),
                    "likes": result["likes"],
                    "hit_rate_10": seen[key],
                }
            )  # type: ignore[call-overload]
            progress(f"tuning {'/'.join(methods)}: {knobs}: HitRate@10 " + ", ".join(f"{v:.4f}" for v in seen[key].values()))
        return seen[key]

    def descend(
        start: object, grid: dict[str, tuple[object, ...]], method: str, run: Callable[[object], dict[str, float]]
    ) -> object:
        best = start
        for _ in range(TUNING_PASSES):
            for knob, values in grid.items():
                candidates = [replace(best, **{knob: v}) for v in values]  # type: ignore[type-var]
                figures = [run(c)[method] for c in candidates]
                best = candidates[int(np.argmax(figures))]
        return best

    als = ("als-nightly", "als-foldin")
    if als_trials:  # the ALS knobs of an earlier tuning on the same log: its best trial per method
        nightly, foldin = (best_recorded(als_trials, name) for name in als)
    else:
        nightly = descend(DEFAULT_ALS, ALS_GRID, "als-nightly", lambda p: trial(als, p, als=p))
        foldin = descend(DEFAULT_ALS, ALS_GRID, "als-foldin", lambda p: trial(als, p, als=p))
    knn = descend(KnnParams(), KNN_GRID, "item-knn", lambda p: trial(("item-knn",), p, knn_params=p))
    collab = descend(
        DEFAULT_COLLAB,
        COLLAB_GRID,
        "collab",
        lambda p: trial(("collab",), p, collab=p, params=InterestParams(history=max(p.pairs, InterestParams().history))),  # type: ignore[attr-defined]
    )
    fusion = descend(Fusion(), FUSION_GRID, "fused", lambda p: trial(("fused",), p, collab=collab, fusion=p))
    chosen = Tuned(nightly, foldin, knn, collab, fusion)  # type: ignore[arg-type]
    return chosen, {
        "ratings": test_from,
        "validate_from_s": validate_from,
        "sample_days": sample_days,
        "passes": TUNING_PASSES,
        "als_trials_reused": als_trials or None,
        "chosen": {
            name: dataclasses.asdict(getattr(chosen, name)) for name in ("als_nightly", "als_foldin", "knn", "collab", "fusion")
        },
        "trials": trials,
    }


# ---------------------------------------------------------------------------------------------
# The run on the real stack


def _run(args: argparse.Namespace) -> dict[str, object]:
    from bench.interest import _prefixed
    from deploy.datasets.movielens import load_movielens, replay, send_uploads
    from deploy.local.stack import Stack, free_ports
    from deploy.local.workers import start_worker, wait_for_group
    from streams.sinks.kafka import group_offsets
    from streams.sinks.milvus import MilvusSink
    from tests.support.metrics import histogram_quantile, sample, scrape
    from tests.support.stack import local_settings
    from tests.support.streaming import stored_items

    def progress(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    data = load_movielens().first(args.ratings)
    progress(f"MovieLens: {len(data.ratings):,} ratings, {len(data.movies):,} movies")
    state = str(scratch_dir("sail-bench-quality-"))
    extra = {"encoder": args.encoder} if args.encoder else {}
    settings = local_settings(Path(state), f"q{os.getpid()}.", topic_partitions=4, **extra)
    stack = Stack(settings, progress=progress)
    try:
        stack.up()
        mine = _prefixed(settings, f"q{os.getpid()}ml")
        ports = free_ports(1)
        procs = [start_worker(mine, port, stack.state_dir / "workers", loglevel="warning") for port in ports]
        sid_result: dict[str, object] | None = None
        sids: dict[str, tuple[int, ...]] | None = None
        try:
            wait_for_group(mine, procs)
            topics = mine.topics()

            def drain(what: str, began: float | None = None) -> float:
                """Seconds from `began` (default: now) until the group has committed every record of the
                input topics, polled every 0.5 s (the workers commit every second, so the end is read at
                most ~1.5 s late); progress every 10 s."""
                began = time.monotonic() if began is None else began
                said = began
                while True:
                    offsets = group_offsets(
                        mine.kafka_bootstrap,
                        mine.kafka_security(),
                        mine.app_id,
                        [
                            topics.uploads.name,
                            topics.interactions.name,
                            topics.interactions_retry.name,
                            topics.co_engagements.name,
                        ],
                    )
                    behind = sum(e - c for parts in offsets.values() for c, e in parts.values())
                    if behind == 0:
                        return time.monotonic() - began
                    if time.monotonic() - said >= 10:
                        said = time.monotonic()
                        progress(f"{what}: {behind:,} records behind")
                    time.sleep(0.5)

            # Movies first, as one backlog through the encoder, then the ratings as a backlog: sent
            # together, ratings would outrun the encoder by minutes and wait for their movies far
            # past SAIL_ITEM_WAIT_S. The protocol replays the arrival order itself (step 3).
            # Each clock starts before its first record is sent (the workers apply while the rest is
            # being sent) and stops when the last is committed. (An earlier version started the
            # ratings' clock after the replay had ended and polled every 10 s: its 2,440/s is withdrawn.)
            began = time.monotonic()
            send_uploads(mine, data)
            encode_s = drain("encoding the movies", began)
            began = time.monotonic()
            sent = replay(mine, data, speedup=0, progress=progress, uploads_sent=True)
            apply_s = drain("applying the ratings", began)
            progress(
                f"{len(data.movies):,} movies encoded and stored in {encode_s:.0f}s, "
                f"{sent.interactions:,} ratings applied in {apply_s:.0f}s"
            )

            page = scrape(f"http://127.0.0.1:{ports[0]}/metrics")
            applied = sample(page, "sail_collab_applied")
            collab_cost = {
                "co_engagements_applied": int(applied),
                "interactions_applied": int(sample(page, "sail_interest_applied")),
                "cpu_us_per_interaction": round(sample(page, "sail_collab_seconds") / max(applied, 1) * 1e6, 1),
                "item_rows_per_interaction": round(sample(page, "sail_collab_rows", kind="item") / max(applied, 1), 4),
                "user_rows_per_interaction": round(sample(page, "sail_collab_rows", kind="user") / max(applied, 1), 4),
                "freshness_p50_s": histogram_quantile(page, "sail_collab_freshness_seconds", 0.5),
                "freshness_p99_s": histogram_quantile(page, "sail_collab_freshness_seconds", 0.99),
            }
            ids = list(data.labels())
            vectors = {k: v for start in range(0, len(ids), 500) for k, v in stored_items(mine, ids[start : start + 500]).items()}
            if args.sid:
                sid_result, sids = _semantic_ids(mine, data, ids, ports[0], drain, args, progress)

            async def check() -> dict[str, object]:
                sink = MilvusSink.for_settings(mine)
                await sink.start()
                try:
                    return await agreement(mine, sink, data, vectors, sent.sent)
                finally:
                    await sink.close()

            agree = asyncio.run(check())
        finally:
            for proc in procs:
                proc.stop()
        if not args.sid:  # the same ratings through a worker without collaborative vectors: the interest path's cost
            collab_cost["apply_s_with"] = round(apply_s, 1)
            collab_cost["apply_s_without"] = round(_without_collab(settings, stack, data, progress), 1)
            collab_cost["throughput_ratio"] = round(collab_cost["apply_s_without"] / apply_s, 3) if apply_s else None
    finally:
        stack.down()
    progress(f"{len(vectors):,} movie vectors read back; running the protocol")
    only = tuple(args.only.split(",")) + (("sid", "mixed") if args.sid else ()) if args.only else None
    test_from = int(len(data.ratings) * args.test_from)
    score_from_s = data.ratings[test_from].timestamp_s if test_from else float("-inf")
    tuned: dict[str, object] | None = None
    chosen = Tuned()
    if args.tune and test_from and only is None:
        progress(f"tuning the baselines and the stream's channels on the first {test_from:,} ratings (before the test period)")
        chosen, tuned = tune(data, vectors, test_from, progress=progress, als_trials=_als_trials(args.als_from))
    result = evaluate(
        data,
        vectors,
        progress=progress,
        sids=sids,
        only=only,
        score_from_s=score_from_s,
        als=chosen.als_nightly,
        als_foldin=chosen.als_foldin,
        knn_params=chosen.knn,
        collab=chosen.collab,
        fusion=chosen.fusion,
    )
    result["test_from"] = {"ratings": test_from, "log_time_s": score_from_s if test_from else None}
    if tuned is not None:
        result["tuning"] = tuned
    if sid_result is not None:
        result["semantic_ids"] = sid_result
    result.update(
        {
            "encode_s": round(encode_s, 1),
            "apply_s": round(apply_s, 1),
            "applied_per_s": round(sent.interactions / apply_s, 1) if apply_s else None,
            "encoder": settings.encoder,
            "agreement": agree,
            "collab_cost": collab_cost,
            "realtime_gain": realtime_gain(result),
            "machine": {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
        }
    )
    return result


def _als_trials(path: str | None) -> list[dict[str, object]] | None:
    """The ALS trials recorded in an earlier results file (its `tuning` or `als_tuning`), or None."""
    if not path:
        return None
    payload = json.loads(Path(path).read_text())
    summary = payload["summary"]
    record = summary.get("tuning") or summary.get("als_tuning") or {}
    if record.get("ratings") is None:
        raise SystemExit(f"{path}: no ALS tuning recorded")
    trials = [
        t for t in [*(record.get("als_trials_reused") or []), *record.get("trials", [])] if "als-nightly" in t["hit_rate_10"]
    ]
    return [{**t, "measured": t.get("measured") or payload.get("date")} for t in trials] or None


def _without_collab(settings, stack, data: MovieLens, progress) -> float:  # type: ignore[no-untyped-def]
    """Seconds to apply the ratings (first send to last commit) through one worker that keeps no
    collaborative vectors (SAIL_COLLAB_PAIRS=0), on topics and collections of its own."""
    from bench.interest import _prefixed
    from deploy.datasets.movielens import replay, send_uploads
    from deploy.local.stack import free_ports
    from deploy.local.workers import start_worker, wait_for_group
    from streams.sinks.kafka import group_offsets

    off = _prefixed(settings.model_copy(update={"collab_pairs": 0}), f"q{os.getpid()}off")
    (port,) = free_ports(1)
    proc = start_worker(off, port, stack.state_dir / "workers", loglevel="warning")
    try:
        wait_for_group(off, [proc])
        topics = off.topics()

        def drain() -> None:
            while True:
                offsets = group_offsets(
                    off.kafka_bootstrap,
                    off.kafka_security(),
                    off.app_id,
                    [topics.uploads.name, topics.interactions.name, topics.interactions_retry.name],
                )
                if not sum(e - c for parts in offsets.values() for c, e in parts.values()):
                    return
                time.sleep(0.5)

        progress("the ratings again, through a worker without collaborative vectors (the interest path before)")
        send_uploads(off, data)
        drain()
        began = time.monotonic()
        replay(off, data, speedup=0, progress=progress, uploads_sent=True)
        drain()
        return time.monotonic() - began
    finally:
        proc.stop()


def _semantic_ids(
    mine, data: MovieLens, ids: list[str], port: int, drain, args: argparse.Namespace, progress
) -> tuple[dict[str, object], dict[str, tuple[int, ...]]]:  # type: ignore[no-untyped-def]
    """Fit the codebook and backfill through `streams.sid.jobs` (what `sail-stream sid fit --backfill`
    runs), read every movie's semantic ID back from Milvus, then measure the assignment in the stream:
    `--sid-fresh` movies uploaded again under new ids, and the worker's own counters (codes: the
    quantiser's CPU time; lookup: the Milvus read of the buckets) against its encoder time per item."""
    from deploy.datasets.movielens import upload_for
    from streams.sid.jobs import backfill_sids, fit_codebook
    from streams.sid.maths import parse_sid
    from tests.support.metrics import sample, scrape
    from tests.support.streaming import milvus_rows, send
    from topology.codec import encode_upload

    fitted = asyncio.run(fit_codebook(mine, args.sid_levels, args.sid_codes, seed=0, progress=progress))
    filled = asyncio.run(backfill_sids(mine, progress=progress))
    items = mine.collections()[0].name
    sids = {
        k: parse_sid(str(r["sid_codes"]))
        for start in range(0, len(ids), 500)
        for k, r in milvus_rows(mine, items, ids[start : start + 500], ["sid_codes"]).items()
    }
    time.sleep(2 * mine.version_refresh_s)  # the worker reads the registry: the codebook is live for it
    page = f"http://127.0.0.1:{port}/metrics"
    triton = f"http://127.0.0.1:{mine.triton_metrics_port}/metrics"
    before, triton_before = scrape(page, timeout_s=10), scrape(triton, timeout_s=10)
    began = time.monotonic()
    now_ms = int(time.time() * 1000)
    movies = list(data.movies.values())[: args.sid_fresh]
    send(
        mine,
        [
            (
                mine.topics().uploads.name,
                f"{m.item_id}-again".encode(),
                encode_upload(replace(upload_for(m, now_ms), item_id=f"{m.item_id}-again")),
            )
            for m in movies
        ],
    )
    wall_s = drain("fresh uploads with semantic IDs", began)
    after, triton_after = scrape(page, timeout_s=10), scrape(triton, timeout_s=10)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    def triton_grew(name: str) -> float:
        return sample(triton_after, name, model="sail_encoder") - sample(triton_before, name, model="sail_encoder")

    collided = grew("sail_sid_assigned", outcome="collision")
    assigned = grew("sail_sid_assigned", outcome="unique") + collided
    encoded = grew("sail_triton_batch_items_sum")
    # What an item costs the encoder, three ways. Request time (the client's, with the time requests
    # queue in Triton: two batches in flight) overstates it; the achieved wall time per item of this
    # backlog (the encoder saturated) and Triton's own compute time per item are what the shares use.
    encoder_s = grew("sail_triton_request_seconds_sum") / encoded if encoded else None
    achieved_s = wall_s / encoded if encoded else None
    computed = triton_grew("nv_inference_count")
    compute_s = triton_grew("nv_inference_compute_infer_duration_us") / 1e6 / computed if computed else None
    codes_s = grew("sail_sid_seconds", phase="codes") / assigned if assigned else None
    lookup_s = grew("sail_sid_seconds", phase="lookup") / assigned if assigned else None
    h = fitted.codebook.health
    result = {
        "codebook": fitted.codebook.codebook_id,
        "levels": fitted.codebook.levels,
        "codes": fitted.codebook.codes,
        "fit_s": round(fitted.seconds, 1),
        "fitted_items": fitted.fitted_on,
        "utilisation": list(h.utilisation),
        "collision_rate": h.collision_rate,
        "quantisation_error": h.quantisation_error,
        "backfilled": filled.assigned,
        "backfill_s": round(filled.seconds, 1),
        "fresh_assigned": int(assigned),
        "fresh_collisions": int(collided),
        "encoder_ms_per_item": round(1000 * encoder_s, 3) if encoder_s else None,
        "codes_ms_per_item": round(1000 * codes_s, 4) if codes_s is not None else None,
        "lookup_ms_per_item": round(1000 * lookup_s, 4) if lookup_s is not None else None,
        "achieved_ms_per_item": round(1000 * achieved_s, 3) if achieved_s else None,
        "compute_ms_per_item": round(1000 * compute_s, 3) if compute_s else None,
        "codes_share_of_achieved": _share(codes_s, achieved_s),
        "codes_and_lookup_share_of_achieved": _share(
            codes_s + lookup_s if codes_s is not None and lookup_s is not None else None, achieved_s
        ),
        "codes_share_of_compute": _share(codes_s, compute_s),
        "codes_and_lookup_share_of_compute": _share(
            codes_s + lookup_s if codes_s is not None and lookup_s is not None else None, compute_s
        ),
    }
    progress(f"semantic IDs: {json.dumps(result)}")
    return result, sids


def _share(part_s: float | None, whole_s: float | None) -> float | None:
    """`part_s / whole_s` to 5 decimals, or None when either is unknown."""
    return round(part_s / whole_s, 5) if part_s is not None and whole_s else None


async def agreement(
    settings, sink, data: MovieLens, vectors: dict[str, np.ndarray], sent: dict[str, int], users: int = 20
) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The recall API's top-10 (over HTTP, everything the user rated excluded) for up to `users` users,
    per channel, against the same channel computed here: `dense`, the worker's own interest maths over
    the events as sent (their times); `collab`, the sparse maths over the collaborative vectors the
    worker stored (read back); `fused`, both, as `Fusion` combines them over the items the API scores.
    Also: the share of items whose stored positives count equals the log's."""
    from aiohttp import web

    from deploy.local.stack import free_ports
    from streams.collab.maths import dimension, dot, search_vector
    from streams.interest.maths import fold_interactions
    from streams.recall.api import recall_app
    from streams.recall.client import RecallClient
    from streams.recall.query import Recall
    from topology.collections import COLLAB_COPY, unpack_sparse

    by_user: dict[int, list[Rating]] = {}
    for r in data.ratings:
        by_user.setdefault(r.user, []).append(r)
    chosen = [u for u in sorted(by_user) if len(by_user[u]) <= 300][:users]  # the exclusion list travels in the URL
    params = InterestParams.for_settings(settings)
    ids = list(vectors)
    matrix = np.stack([vectors[i] for i in ids])
    collab_items, collab_users = settings.collab_collections()
    stored = {
        str(r["item_id"]): (unpack_sparse(str(r[COLLAB_COPY])), int(r["likes"]))
        for start in range(0, len(ids), 500)
        for r in await sink.get(collab_items.name, ids[start : start + 500], ["item_id", "likes", COLLAB_COPY])
    }
    likes: dict[str, int] = {}
    for r in data.ratings:
        if not interaction_for(r, 0).action.is_negative:
            likes[r.item_id] = likes.get(r.item_id, 0) + 1
    counted = sum(1 for i in ids if stored.get(i, ({}, 0))[1] == likes.get(i, 0))
    runner = web.AppRunner(recall_app(Recall.for_settings(sink, settings)))
    await runner.setup()
    (port,) = free_ports(1)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    overlaps: dict[str, list[float]] = {"dense": [], "collab": [], "fused": []}
    weight = settings.recall_content_weight
    try:
        client = RecallClient(f"http://127.0.0.1:{port}", timeout_s=30.0)
        for user in chosen:
            rated = by_user[user]
            events = [interaction_for(r, sent[r.event_id]) for r in rated]
            state = fold_interactions(events, params)
            query = interest_vectors(state, vectors, params)
            if query is None:
                continue
            seen = {r.item_id for r in rated}
            dense = (query @ matrix.T).max(axis=0)
            mine = await sink.get(collab_users.name, [f"ml-user-{user}"], [COLLAB_COPY, "item_ids"])
            weights = unpack_sparse(str(mine[0][COLLAB_COPY])) if mine else {}
            positives = [i for i in str(mine[0]["item_ids"]).split(",") if i] if mine else []
            sparse = search_vector([(weights.get(dimension(i), 0.0), stored[i][0]) for i in positives if i in stored])
            collab = np.array([dot(stored[i][0], sparse) if i in stored else 0.0 for i in ids])
            allowed = np.array([i not in seen for i in ids])
            fused = Fusion(content=weight).row(collab, dense, allowed)
            for channel, row in (("dense", dense), ("collab", collab), ("fused", fused)):
                assert row is not None
                ranked = [
                    ids[i] for i in np.argsort(-row, kind="stable") if ids[i] not in seen and (channel != "collab" or row[i] > 0)
                ]
                got = await asyncio.to_thread(
                    client.user_items, f"ml-user-{user}", 10, exclude=sorted(seen), consistency="Strong", channel=channel
                )
                if ranked[:10]:
                    overlaps[channel].append(len(set(ranked[:10]) & {g.item_id for g in got}) / len(ranked[:10]))
    finally:
        await runner.cleanup()
    return {
        "users": len(overlaps["dense"]),
        "mean_top10_overlap": {c: round(float(np.mean(v)), 4) if v else None for c, v in overlaps.items()},
        "collab_likes_equal_share": round(counted / max(len(ids), 1), 4),
    }


def format_table(result: dict[str, object], key: str = "methods") -> str:
    lines = ["| method | HitRate@10 | HitRate@50 | NDCG@10 | coverage@10 | served |", "|---|---:|---:|---:|---:|---:|"]
    for m in result[key]:  # type: ignore[union-attr]
        lines.append(
            f"| {m['method']} | {m['hit_rate_10']:.4f} | {m['hit_rate_50']:.4f} | {m['ndcg_10']:.4f} | {m['coverage_10']:.4f} "
            f"| {m['served']:,} / {m['queries']:,} |"
        )
    return "\n".join(lines)


def result_name(sid: bool, ratings: int | None) -> str:
    """The results file of a run: the semantic-ID runs and the runs on part of the log apart from the whole run."""
    return "quality" + ("-sid" if sid else "") + (f"-{ratings}ratings" if ratings else "")


DEFAULT_METHOD = "fused"  # what the recall API serves by default: SAIL_RECALL_CHANNEL=fused, SAIL_INTEREST_SLOTS=1
NIGHTLY = "als-nightly"  # the competitor of the real-time figure (issue 31)
STREAM_CHANNELS = ("collab", "realtime-weighted-K1")  # the other channels the stream serves: collab alone, dense (content) alone


def goals(methods: dict[str, dict[str, object]], name: str, baselines: list[str]) -> dict[str, object]:
    """Issue 31's three ratios for one method: HitRate@10 over the best baseline's (all likes; goal 1.1),
    over the best baseline's on fresh items' likes (goal 2), and over the nightly ALS's on the likes it
    could serve (goal 1.5), with the baselines each was measured against."""

    def ratio(key: str, against: list[str]) -> tuple[float | None, str | None]:
        scored = [(float(methods[b][key]), b) for b in against if methods[b].get(key) is not None]  # type: ignore[arg-type]
        mine = methods[name].get(key)
        if not scored or mine is None:
            return None, None
        best, who = max(scored)
        return (round(float(mine) / best, 3) if best else None), who  # type: ignore[arg-type]

    overall, best = ratio("hr10", baselines)
    fresh, best_fresh = ratio("fresh_hr10", baselines)
    served, _ = ratio("served_hr10", [NIGHTLY] if NIGHTLY in methods else [])
    return {
        "vs_best_baseline": overall,
        "best_baseline": best,
        "fresh_vs_best_baseline": fresh,
        "best_fresh_baseline": best_fresh,
        "served_vs_nightly": served,
    }


def methods_by_name(result: dict[str, object]) -> dict[str, dict[str, object]]:
    """Each method's figures keyed by name: over every ranked like (`hr10` ...), over the likes of items in
    their first days (`fresh_*`), and over the likes a nightly job could serve (`served_*`)."""
    out: dict[str, dict[str, object]] = {}
    tables = {key: {m["method"]: m for m in result.get(key) or []} for key in ("methods", "fresh_methods", "warm_methods")}  # type: ignore[attr-defined]
    for name, m in tables["methods"].items():
        fresh, warm = tables["fresh_methods"].get(name, {}), tables["warm_methods"].get(name, {})
        out[name] = {
            "hr10": m["hit_rate_10"],
            "hr50": m["hit_rate_50"],
            "ndcg10": m["ndcg_10"],
            "coverage10": m["coverage_10"],
            "fresh_hr10": fresh.get("hit_rate_10"),
            "fresh_hr50": fresh.get("hit_rate_50"),
            "served_hr10": warm.get("hit_rate_10"),
            "served_hr50": warm.get("hit_rate_50"),
            "likes": m["queries"],
            "answered": m["served"],
            "fresh_likes": fresh.get("queries"),
            "served_likes": warm.get("queries"),
        }
    return out


def summary(result: dict[str, object], args: argparse.Namespace) -> dict[str, object]:
    """What `write_result` records (the shape issue 31 names): `methods` keyed by name, the `default_method` the
    recall API serves, the `baselines` (every popularity window, item-kNN, both ALS variants) and
    `realtime_vs_nightly` (the default method's HitRate@10 over the nightly ALS's), with the rest of the run
    (pipeline timings, agreement, ALS tuning, semantic IDs) and its parameters; the machine and date are
    `write_result`'s."""
    methods = methods_by_name(result)
    baselines = [m for m in methods if m.startswith(("popularity", "item-knn", "als-"))]
    keyed = {
        "methods": methods,
        "default_method": DEFAULT_METHOD,
        "baselines": baselines,
        "realtime_vs_nightly": goals(methods, DEFAULT_METHOD, baselines)["served_vs_nightly"]
        if DEFAULT_METHOD in methods
        else None,
        "goals": {m: goals(methods, m, baselines) for m in (DEFAULT_METHOD, *STREAM_CHANNELS) if m in methods},
    }
    dropped = ("machine", "methods", "fresh_methods", "warm_methods")
    params = {
        key: getattr(args, key, None)
        for key in ("ratings", "encoder", "sid", "sid_levels", "sid_codes", "sid_fresh", "only", "test_from", "tune", "als_from")
    }
    return {"params": params} | keyed | {k: v for k, v in result.items() if k not in dropped}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quality", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ratings", type=int, help="the first N ratings in time order (default: all 100,004)")
    parser.add_argument("--encoder", help="encoder preset for the stack (default: SAIL_ENCODER's default)")
    parser.add_argument("--json", help="write every figure here")
    parser.add_argument(
        "--sid",
        action="store_true",
        help="fit a semantic-ID codebook after the pipeline, backfill, and add the sid and mixed channels",
    )
    parser.add_argument("--sid-levels", type=int, default=3, help="codebook levels (default 3)")
    parser.add_argument("--sid-codes", type=int, default=256, help="codes per level (default 256)")
    parser.add_argument(
        "--sid-fresh",
        type=int,
        default=1000,
        help="movies uploaded again under new ids to measure the assignment in the stream (default 1,000)",
    )
    parser.add_argument("--only", help="comma-separated methods to rank (default: all); with --sid, sid and mixed are added")
    parser.add_argument(
        "--test-from",
        type=float,
        default=0.5,
        help="rank only the likes after this share of the log (default 0.5); the baselines' knobs are tuned "
        "on the log before it. 0: rank every like, untuned",
    )
    parser.add_argument("--no-tune", dest="tune", action="store_false", help="keep every method's default knobs (no tuning pass)")
    parser.add_argument(
        "--als-from",
        metavar="RESULTS_JSON",
        help="take the ALS knobs from the best recorded trials of an earlier run on the same log (its tuning record) "
        "instead of searching again; the other methods are tuned as usual",
    )
    args = parser.parse_args()
    result = _run(args)
    print("Every held-out like:")
    print(format_table(result))
    print("Likes by users with a positive before that day (where a nightly job has a vector):")
    print(format_table(result, "warm_methods"))
    print("Likes of items in their first 7 days after upload:")
    print(format_table(result, "fresh_methods"))
    print(json.dumps({k: v for k, v in result.items() if k not in ("methods", "warm_methods", "fresh_methods")}, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=list)
            f.write("\n")
    print(f"summary: {write_result(result_name(args.sid, args.ratings), summary(result, args))}")


if __name__ == "__main__":
    main()
