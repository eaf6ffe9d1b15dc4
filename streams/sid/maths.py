"""Semantic IDs: pure maths (issue 18). No clock, no network: the fit, the assignment, the collision
suffix, the health figures and the SID recall score, over numpy arrays.

**Residual k-means, not RQ-VAE.** A semantic ID here is L codes: level 0 is the nearest of K centroids
to the item vector, level 1 the nearest of K centroids to what level 0 left (the residual), and so on.
RQ-VAE learns an encoder and decoder around the same residual quantiser; it can give more balanced
codes, but it is a training job with its own failure modes (collapsed codes, a learning rate, a GPU to
be useful), and its codes move with every retrain. Residual k-means over the stored vectors of one
model version is deterministic for a seed, needs no gradient, fits 10,000 x 256-dim vectors at 3 x 256
in seconds on two cores, and its quantisation error is directly the drift signal. The SAIL report
quantises frozen embeddings the same way (clustering, then residual quantisation).

**The collision suffix.** Items sharing all L codes are told apart by a suffix: the first item of a
bucket gets 0, the next the smallest number not taken, and an item keeps the suffix it already has
(a replay, a restart or a re-upload gives the same SID).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]
Codes = NDArray[np.int32]

SEPARATOR: Final = "."
_CHUNK: Final = 8192  # rows per distance block: bounds memory at n x K floats per block


@dataclass(frozen=True, slots=True)
class Health:
    """How well a codebook describes a set of items."""

    items: int
    utilisation: tuple[float, ...]  # per level: share of the K codes used at least once
    collision_rate: float  # share of items that share all L codes with another item
    quantisation_error: float  # mean of |x - x_hat|^2 / |x|^2 (0: exact; 1: nothing explained)


@dataclass(frozen=True, slots=True)
class Codebook:
    """L levels x K centroids over one model version's vectors; `centroids` has shape (L, K, dim)."""

    codebook_id: str
    model_version: str
    centroids: Vectors
    seed: int
    fitted_at_ms: int
    health: Health  # on the vectors it was fitted on: the drift baseline

    @property
    def levels(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def codes(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[2])


def _nearest(points: Vectors, centroids: Vectors) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """For each row of `points` (n, dim): the nearest centroid (K, dim) by L2, and its squared distance."""
    c_norm = np.einsum("kd,kd->k", centroids, centroids)
    index = np.empty(len(points), dtype=np.int64)
    dist = np.empty(len(points), dtype=np.float32)
    for start in range(0, len(points), _CHUNK):
        block = points[start : start + _CHUNK]
        d = c_norm[None, :] - 2.0 * (block @ centroids.T)  # |p|^2 is the same for every centroid
        index[start : start + len(block)] = np.argmin(d, axis=1)
        best = d[np.arange(len(block)), index[start : start + len(block)]] + np.einsum("nd,nd->n", block, block)
        dist[start : start + len(block)] = np.maximum(best, 0.0)
    return index, dist


def _kmeans(points: Vectors, k: int, rng: np.random.Generator, iterations: int) -> Vectors:
    """Lloyd's k-means with k-means++ seeding; an emptied cluster is re-seeded at the point worst
    served, so every code stays usable."""
    n = len(points)
    centroids = np.empty((k, points.shape[1]), dtype=np.float32)
    centroids[0] = points[rng.integers(n)]
    closest = np.einsum("nd,nd->n", points - centroids[0], points - centroids[0])
    for j in range(1, k):
        total = float(closest.sum())
        pick = int(rng.choice(n, p=closest / total)) if total > 0 else int(rng.integers(n))
        centroids[j] = points[pick]
        closest = np.minimum(closest, np.einsum("nd,nd->n", points - centroids[j], points - centroids[j]))
    for _ in range(iterations):
        assign, dist = _nearest(points, centroids)
        counts = np.bincount(assign, minlength=k)
        used = counts > 0
        order = np.argsort(assign, kind="stable")  # each cluster's points together, in index order
        starts = (np.cumsum(counts) - counts)[used]
        sums = np.add.reduceat(points[order].astype(np.float64), starts, axis=0)  # (np.add.at: 10x slower)
        moved = centroids.copy()
        moved[used] = (sums / counts[used, None]).astype(np.float32)
        for j in np.flatnonzero(~used):  # empty: take the point farthest from its centroid
            worst = int(np.argmax(dist))
            moved[j] = points[worst]
            dist[worst] = 0.0
        if np.allclose(moved, centroids, atol=1e-6):
            centroids = moved
            break
        centroids = moved
    return centroids


def fit(
    vectors: Vectors,
    levels: int,
    codes: int,
    seed: int,
    codebook_id: str,
    model_version: str,
    fitted_at_ms: int,
    iterations: int = 25,
) -> Codebook:
    """A residual k-means codebook over `vectors` (n, dim); the same inputs and seed give the same codebook.

    Raises:
        ValueError: fewer vectors than codes, or a bad shape.
    """
    points = np.ascontiguousarray(vectors, dtype=np.float32)
    if points.ndim != 2 or not len(points):
        raise ValueError(f"fit needs a non-empty (n, dim) array, got shape {points.shape}")
    if levels < 1 or codes < 2:
        raise ValueError(f"a codebook needs at least 1 level and 2 codes, got {levels} x {codes}")
    if len(points) < codes:
        raise ValueError(f"{len(points)} items cannot fill {codes} codes: fit on more items or use fewer codes")
    rng = np.random.default_rng(seed)
    residual = points.copy()
    books = []
    for _ in range(levels):
        centroids = _kmeans(residual, codes, rng, iterations)
        index, _ = _nearest(residual, centroids)
        residual -= centroids[index]
        books.append(centroids)
    centroids = np.stack(books)
    book = Codebook(codebook_id, model_version, centroids, seed, fitted_at_ms, Health(0, (), 0.0, 0.0))
    found, errors = assign(book, points)
    return Codebook(codebook_id, model_version, centroids, seed, fitted_at_ms, health(found, errors, codes))


def assign(codebook: Codebook, vectors: Vectors) -> tuple[Codes, NDArray[np.float32]]:
    """Each vector's L codes (n, L) and its relative quantisation error (n,): |x - x_hat|^2 / |x|^2."""
    points = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, codebook.dim)
    residual = points.copy()
    found = np.empty((len(points), codebook.levels), dtype=np.int32)
    for level in range(codebook.levels):
        index, _ = _nearest(residual, codebook.centroids[level])
        found[:, level] = index
        residual -= codebook.centroids[level][index]
    norms = np.maximum(np.einsum("nd,nd->n", points, points), 1e-12)
    return found, (np.einsum("nd,nd->n", residual, residual) / norms).astype(np.float32)


def health(found: Codes, errors: NDArray[np.float32], codes: int) -> Health:
    """Utilisation per level, collision rate and mean quantisation error of assigned items."""
    n = len(found)
    if not n:
        return Health(0, (), 0.0, 0.0)
    utilisation = tuple(round(len(np.unique(found[:, level])) / codes, 4) for level in range(found.shape[1]))
    _, inverse, counts = np.unique(found, axis=0, return_inverse=True, return_counts=True)
    shared = int(np.count_nonzero(counts[np.ravel(inverse)] > 1))
    return Health(n, utilisation, round(shared / n, 4), round(float(np.mean(errors)), 6))


def sid_text(codes: Iterable[int]) -> str:
    """The L codes as stored in Milvus and filtered on: "12.200.7"."""
    return SEPARATOR.join(str(int(c)) for c in codes)


def prefix_text(codes: Sequence[int], depth: int) -> str:
    """The first `depth` codes with a trailing separator ("12.200."), for a prefix match that cannot
    confuse code 1 with code 12."""
    return sid_text(codes[:depth]) + SEPARATOR


def parse_sid(text: str) -> tuple[int, ...]:
    """The codes of a stored SID text ("" = none assigned: ())."""
    return tuple(int(part) for part in text.split(SEPARATOR)) if text else ()


def suffixes(batch: Sequence[tuple[str, str]], existing: Mapping[str, Mapping[str, int]]) -> list[int]:
    """The collision suffix of each (item_id, sid) of `batch`, in order: the one an item already has
    in its bucket (`existing`: sid -> {item_id: suffix}, as stored), else the smallest number nobody in
    the bucket has, counting the batch's earlier items."""
    taken: dict[str, dict[str, int]] = {sid: dict(members) for sid, members in existing.items()}
    out: list[int] = []
    for item_id, sid in batch:
        bucket = taken.setdefault(sid, {})
        if item_id not in bucket:
            used = set(bucket.values())
            bucket[item_id] = next(n for n in range(len(used) + 1) if n not in used)
        out.append(bucket[item_id])
    return out


def shared_depth(candidates: Codes, positives: Codes) -> NDArray[np.int32]:
    """(n, m): how many leading codes each candidate (n, L) shares with each positive (m, L)."""
    equal = candidates[:, None, :] == positives[None, :, :]
    depth: NDArray[np.int32] = np.cumprod(equal, axis=2).sum(axis=2).astype(np.int32)
    return depth


def sid_scores(candidates: Codes, positives: Codes) -> NDArray[np.float64]:
    """The SID channel's score of each candidate (n,) against a user's recent positives (m, L): the sum
    over positives of (2^d - 1) / (2^L - 1) for a shared prefix of d codes, so one item in a positive's
    own bucket outranks items that share only a first code with several positives."""
    if not len(positives) or not len(candidates):
        return np.zeros(len(candidates), dtype=np.float64)
    levels = candidates.shape[1]
    depth = shared_depth(candidates, positives)
    scores: NDArray[np.float64] = ((2.0**depth - 1.0) / (2.0**levels - 1.0)).sum(axis=1)
    return scores


def fuse(rankings: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion of several best-first lists: sum of 1 / (k + rank + 1), best first (ties:
    the first list's order). The mixed channel merges dense and SID recall with it: their scores are
    not on one scale, their ranks are."""
    score: dict[str, float] = {}
    first: dict[str, tuple[int, int]] = {}
    for which, ranking in enumerate(rankings):
        for rank, item in enumerate(ranking):
            score[item] = score.get(item, 0.0) + 1.0 / (k + rank + 1)
            first.setdefault(item, (which, rank))
    return sorted(score.items(), key=lambda kv: (-kv[1], first[kv[0]]))


@dataclass(frozen=True, slots=True)
class Drift:
    """Fresh items' quantisation error against the codebook's own (at fit): `ratio` = fresh / fitted."""

    fresh_error: float | None  # mean over the window; None before `min_items`
    fitted_error: float
    ratio: float | None
    drifting: bool
    items: int


class DriftWindow:
    """The relative quantisation errors of the last `window` assigned items; drifting when their mean
    exceeds the fitted error by `threshold` (e.g. 1.25 = 25 % worse) over at least `min_items`."""

    def __init__(self, fitted_error: float, threshold: float, window: int = 500) -> None:
        self.fitted_error = fitted_error
        self.threshold = threshold
        self._errors: NDArray[np.float32] = np.zeros(window, dtype=np.float32)
        self._count = 0

    def add(self, errors: Iterable[float]) -> None:
        for error in errors:
            self._errors[self._count % len(self._errors)] = error
            self._count += 1

    def drift(self, min_items: int = 50) -> Drift:
        n = min(self._count, len(self._errors))
        if n < min_items:
            return Drift(None, self.fitted_error, None, False, n)
        fresh = float(np.mean(self._errors[:n]))
        ratio = fresh / self.fitted_error if self.fitted_error > 0 else None
        return Drift(
            round(fresh, 6),
            self.fitted_error,
            round(ratio, 3) if ratio is not None else None,
            ratio is not None and ratio > self.threshold,
            n,
        )
