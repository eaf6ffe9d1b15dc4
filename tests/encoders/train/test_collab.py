"""The collaborative signal of an interaction log for CRE, on hand-built logs."""

from __future__ import annotations

import numpy as np
import pytest

from encoders.train.collab import Engagement, coengagement_pairs, cold_items, collaborative_vectors, seq2item_pairs, time_split


def e(user: str, item: str, at: float, positive: bool = True) -> Engagement:
    return Engagement(user, item, at, positive)


LOG = [
    e("u", "a", 1),
    e("u", "b", 2),
    e("v", "a", 3),
    e("u", "x", 4, positive=False),
    e("u", "c", 5),
    e("v", "d", 6),
    e("w", "c", 6),
    e("v", "e", 7),
]


def test_the_time_split_keeps_an_instant_whole_and_finds_the_cold_items() -> None:
    train, test, cut = time_split(LOG, 0.6)  # 4.8 of 8 events: the first 4
    assert cut == 4 and [x.item for x in train] == ["a", "b", "a", "x"] and [x.item for x in test] == ["c", "d", "c", "e"]
    assert cold_items(train, test) == {"c", "d", "e"}
    train, test, cut = time_split(LOG, 0.8)  # the 6th event is the first of two at t=6: both train
    assert cut == 6 and [x.item for x in test] == ["e"]
    with pytest.raises(ValueError):
        time_split(LOG, 1.0)


def test_seq2item_pairs_are_the_recent_positives_before_each_next_positive() -> None:
    log = [*LOG, e("u", "a", 9)]  # a re-watch of what is in the history teaches nothing
    assert seq2item_pairs(log, history=3) == [(("a",), "b"), (("a", "b"), "c"), (("a",), "d"), (("a", "d"), "e")]
    assert (("b", "c"), "a") in seq2item_pairs(log, history=2)  # out of a 2-item history, the same item is news again


def test_coengagement_pairs_are_close_positives_of_one_user_once_each() -> None:
    log = [*LOG, e("w", "d", 8), e("w", "c", 9)]
    assert coengagement_pairs(log, window=1) == [("a", "b"), ("b", "c"), ("a", "d"), ("d", "e"), ("c", "d")]


def test_collaborative_vectors_put_co_engaged_items_together() -> None:
    rng = np.random.default_rng(0)
    log = []
    for n in range(40):  # two taste groups: users 0-19 like a*, users 20-39 like b*
        group = "a" if n < 20 else "b"
        for k in rng.choice(5, size=3, replace=False):
            log.append(e(f"user-{n}", f"{group}{k}", float(n * 10 + k)))
    vectors = collaborative_vectors(log, dim=4, seed=1)
    assert set(vectors) == {f"{g}{k}" for g in "ab" for k in range(5)}
    assert all(v.shape == (4,) and abs(np.linalg.norm(v) - 1) < 1e-5 for v in vectors.values())
    within = np.mean([vectors[f"a{i}"] @ vectors[f"a{j}"] for i in range(5) for j in range(5) if i != j])
    across = np.mean([vectors[f"a{i}"] @ vectors[f"b{j}"] for i in range(5) for j in range(5)])
    assert within > 0.5 and across < 0.2
    again = collaborative_vectors(list(reversed(log)), dim=4, seed=1)
    assert all(np.allclose(vectors[item], again[item], atol=1e-5) for item in vectors)  # the set of events, not their order
