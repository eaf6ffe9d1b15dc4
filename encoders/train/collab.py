"""The collaborative signal of an interaction log, for Collaborative Recommendation Enhancement
(SAIL-Embedding's CRE): what the content encoder is taught so that a fresh item, known by its
content alone, lands near the items the same users engage with.

- `time_split`: train on the earlier interactions only; cold items are those first seen after the cut.
- `seq2item_pairs`: a user's recent positives -> their next positive (sequence-to-item).
- `coengagement_pairs`: items a user engaged with positively close together (item-to-item).
- `collaborative_vectors`: ID2item targets, one vector per item from the training split (a truncated
  SVD of the user x item positive matrix, users weighted 1/sqrt(their positives)), to distil into
  the content encoder.

Pure: lists in, lists and arrays out; the MovieLens adapter lives with the data (`deploy/datasets/movielens.py`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, slots=True)
class Engagement:
    user: str
    item: str
    at_s: float
    positive: bool


def time_split(log: Sequence[Engagement], train_fraction: float) -> tuple[list[Engagement], list[Engagement], float]:
    """(train, test, cut): the earliest `train_fraction` of the log by time, and the rest. Events at
    the cut time all go to train, so no instant is split."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if not log:
        raise ValueError("an empty log has no time split")
    times = sorted(e.at_s for e in log)
    cut = times[min(len(times) - 1, max(0, int(len(times) * train_fraction) - 1))]
    return [e for e in log if e.at_s <= cut], [e for e in log if e.at_s > cut], cut


def cold_items(train: Iterable[Engagement], test: Iterable[Engagement]) -> set[str]:
    """Items of the test period that the training period never saw: every fresh upload is one."""
    seen = {e.item for e in train}
    return {e.item for e in test} - seen


def _positives_by_user(log: Iterable[Engagement]) -> dict[str, list[str]]:
    by_user: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for e in log:
        if e.positive:
            by_user[e.user].append((e.at_s, e.item))
    return {user: [item for _, item in sorted(events)] for user, events in by_user.items()}


def seq2item_pairs(log: Iterable[Engagement], history: int = 10) -> list[tuple[tuple[str, ...], str]]:
    """(the user's last `history` positive items before it, the next positive item), for every
    positive that has at least one earlier positive; items already in the history are skipped as
    targets (a re-watch teaches nothing new)."""
    pairs = []
    for items in _positives_by_user(log).values():
        for n in range(1, len(items)):
            before = tuple(items[max(0, n - history) : n])
            if items[n] not in before:
                pairs.append((before, items[n]))
    return pairs


def coengagement_pairs(log: Iterable[Engagement], window: int = 5) -> list[tuple[str, str]]:
    """Distinct (a, b) item pairs, a != b, that one user engaged with positively within `window`
    consecutive positives; each unordered pair once, in the order first seen."""
    seen: set[frozenset[str]] = set()
    pairs = []
    for items in _positives_by_user(log).values():
        for n, a in enumerate(items):
            for b in items[n + 1 : n + 1 + window]:
                key = frozenset((a, b))
                if a != b and key not in seen:
                    seen.add(key)
                    pairs.append((a, b))
    return pairs


def collaborative_vectors(log: Iterable[Engagement], dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One unit vector per item with a positive in `log`: the item factors of a rank-`dim` truncated
    SVD of the users x items positive matrix (each user's row weighted 1/sqrt(their positives), so
    heavy users do not dominate), scaled by the singular values. Deterministic for a given log and seed
    (each factor's sign is fixed by its largest entry)."""
    by_user = _positives_by_user(log)
    items = sorted({item for positives in by_user.values() for item in positives})
    if not items:
        return {}
    index = {item: n for n, item in enumerate(items)}
    rows, cols, values = [], [], []
    for row, positives in enumerate(by_user.values()):
        unique = sorted(set(positives))
        for item in unique:
            rows.append(row)
            cols.append(index[item])
            values.append(1.0 / np.sqrt(len(unique)))
    matrix = torch.sparse_coo_tensor(
        torch.tensor([rows, cols]), torch.tensor(values, dtype=torch.float64), (len(by_user), len(items)), check_invariants=True
    ).coalesce()
    rank = min(dim, len(by_user), len(items))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, s, v = torch.svd_lowrank(matrix, q=min(rank + 8, len(by_user), len(items)), niter=6)
    v, s = v[:, :rank], s[:rank]
    signs = torch.sign(v.gather(0, v.abs().argmax(dim=0, keepdim=True)))
    factors = (v * signs * s).numpy()
    if rank < dim:
        factors = np.pad(factors, ((0, 0), (0, dim - rank)))
    norms = np.maximum(np.linalg.norm(factors, axis=1, keepdims=True), 1e-12)
    return {item: (factors[n] / norms[n]).astype(np.float32) for item, n in index.items()}
