"""The quality protocol: ranks before each like is applied, misses for users a method cannot serve,
the daily refresh frozen at the start of the day (pure; hand-built log and vectors)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.quality import evaluate, rank_and_top, realtime_gain
from deploy.datasets.movielens import Movie, MovieLens, Rating

DAY = 86_400


def test_rank_counts_better_items_and_older_ties_and_skips_excluded_and_unarrived() -> None:
    scores = np.array([0.9, 0.5, 0.5, 0.7, 0.99])
    assert (
        rank_and_top(scores, target=2, excluded=[0], arrived=4)[0] == 2.0
    )  # 0.7 above, the older 0.5 tie before it; 0.99 not arrived
    rank, top = rank_and_top(scores, target=1, excluded=[], arrived=5)
    assert rank == 3.0 and sorted(top) == [0, 1, 2, 3, 4]


def _world() -> tuple[MovieLens, dict[str, np.ndarray]]:
    """User 9 views 12 unrelated movies (popular, not held out); user 1 likes movie 0, then 1 (close
    to 0) the same day, then 2 (close to 0) the next day, just after user 8 viewed it."""
    dim = 15
    unit = np.eye(dim, dtype=np.float32)
    vectors = {
        "ml-0": unit[0],
        "ml-1": (unit[0] + 0.1 * unit[1]) / np.linalg.norm(unit[0] + 0.1 * unit[1]),
        "ml-2": (unit[0] + 0.2 * unit[2]) / np.linalg.norm(unit[0] + 0.2 * unit[2]),
    }
    movies = {m: Movie(m, f"movie {m}", 2000, ()) for m in range(15)}
    ratings = [Rating(9, 3 + k, 3.5, k) for k in range(12)]
    vectors.update({f"ml-{3 + k}": unit[3 + k] for k in range(12)})
    ratings += [Rating(1, 0, 5.0, 100), Rating(1, 1, 4.0, 200), Rating(8, 2, 3.5, DAY + 5), Rating(1, 2, 4.5, DAY + 10)]
    return MovieLens(movies, ratings), vectors


def test_each_method_on_a_hand_built_log() -> None:
    data, vectors = _world()
    result = evaluate(data, vectors)
    by = {m["method"]: m for m in result["methods"]}
    assert result["likes"] == 3 and all(m["queries"] == 3 for m in by.values())
    for name in ("realtime-mean10", "realtime-weighted-K1", "realtime-weighted-K3"):
        # the first like: no vector yet (a miss); the next two: the nearest movie, rank 0
        assert (by[name]["served"], by[name]["hit_rate_10"], by[name]["ndcg_10"]) == (
            2,
            pytest.approx(2 / 3, abs=1e-4),
            pytest.approx(2 / 3, abs=1e-4),
        )
    for name in ("daily-mean10", "daily-weighted-K1"):
        # same-day likes cannot be served by last night's vectors; the next day's can
        assert (by[name]["served"], by[name]["hit_rate_10"]) == (1, pytest.approx(1 / 3, abs=1e-4))
    # popularity over 24 h: the 12 viewed movies outrank 0 and 1 (rank 12: a hit only @50); on the next day
    # 11 of those views are older than 24 h, and movie 2 (viewed once since) ties the 12th, older: rank 1
    assert (by["popularity-1d"]["hit_rate_10"], by["popularity-1d"]["hit_rate_50"]) == (pytest.approx(1 / 3, abs=1e-4), 1.0)
    assert by["popularity-1d"]["ndcg_10"] == pytest.approx(1 / math.log2(3) / 3, abs=1e-4)
    # of all time, every movie has one positive when 2 is liked: the 12 older ones rank first every time
    for name in ("popularity-7d", "popularity-30d", "popularity-all"):
        assert (by[name]["served"], by[name]["hit_rate_10"], by[name]["hit_rate_50"]) == (3, 0.0, 1.0)
    # the nightly ALS: nothing trained before the first midnight (two misses); the next day it has user 1
    assert (by["als-nightly"]["served"], by["als-foldin"]["served"]) == (1, 1)
    assert result["als"]["trainings"] == 1
    # item-kNN: nobody else co-engaged with 0 or 1, so every score ties and older movies rank first
    assert (by["item-knn"]["served"], by["item-knn"]["hit_rate_10"], by["item-knn"]["hit_rate_50"]) == (
        2,
        0.0,
        pytest.approx(2 / 3, abs=1e-4),
    )
    assert all(0.0 < m["coverage_10"] <= 1.0 for m in by.values() if m["served"])
    assert realtime_gain(result)["realtime-mean10 hit_rate_10"] == 2.0


def test_item_knn_finds_what_other_users_liked_together() -> None:
    movies = {m: Movie(m, f"movie {m}", 2000, ()) for m in range(12)}
    ratings = [Rating(9, 2 + k, 3.5, k) for k in range(10)]  # ten other movies, popular
    ratings += [Rating(5, 0, 5.0, 100), Rating(5, 1, 5.0, 101)]  # user 5 likes 0 and 1 together
    ratings += [Rating(6, 0, 5.0, 200), Rating(6, 1, 5.0, 201)]  # user 6 likes 0: item-kNN ranks 1 first
    unit = np.eye(12, dtype=np.float32)
    by = {m["method"]: m for m in evaluate(MovieLens(movies, ratings), {f"ml-{m}": unit[m] for m in range(12)})["methods"]}
    assert by["item-knn"]["served"] == 2 and by["item-knn"]["ndcg_10"] == pytest.approx(
        1 / 4, abs=1e-4
    )  # user 6's like of 1 at rank 0


def test_a_movie_without_a_vector_is_an_error_not_a_silent_miss() -> None:
    data, vectors = _world()
    del vectors["ml-2"]
    with pytest.raises(ValueError, match="1 rated movies have no vector"):
        evaluate(data, vectors)


def test_the_warm_subset_holds_only_likes_a_nightly_job_could_serve() -> None:
    data, vectors = _world()
    result = evaluate(data, vectors)
    warm = {m["method"]: m for m in result["warm_methods"]}
    assert all(m["queries"] == 1 for m in warm.values())  # only the next-day like: the user had positives before that day
    assert warm["daily-mean10"]["hit_rate_10"] == 1.0 and warm["realtime-mean10"]["hit_rate_10"] == 1.0


def test_the_fresh_subset_holds_the_likes_of_items_in_their_first_days() -> None:
    data, vectors = _world()
    fresh = {m["method"]: m for m in evaluate(data, vectors)["fresh_methods"]}
    assert all(m["queries"] == 3 for m in fresh.values())  # every like is of a movie first rated within a day
    late = {m["method"]: m for m in evaluate(data, vectors, fresh_days=0)["fresh_methods"]}
    # 0 days: movies 0 and 1, each liked at its own first rating; not 2, viewed by user 8 five seconds before
    assert all(m["queries"] == 2 for m in late.values())


def test_the_sid_and_mixed_channels_rank_by_shared_prefixes_and_need_every_movies_id() -> None:
    data, vectors = _world()
    sids = {f"ml-{m}": (m + 5, 0, 0) for m in range(3, 15)}  # unrelated codes
    sids.update({"ml-0": (1, 2, 3), "ml-1": (1, 2, 4), "ml-2": (1, 2, 5)})  # the liked movies share two levels
    result = evaluate(data, vectors, sids=sids, only=("realtime-weighted-K1", "sid", "mixed"))
    by = {m["method"]: m for m in result["methods"]}
    assert set(by) == {"realtime-weighted-K1", "sid", "mixed"}
    for name in ("sid", "mixed"):  # the first like: no positive yet (a miss); then the only movie sharing a prefix: rank 0
        assert (by[name]["served"], by[name]["hit_rate_10"], by[name]["ndcg_10"]) == (
            2,
            pytest.approx(2 / 3, abs=1e-4),
            pytest.approx(2 / 3, abs=1e-4),
        )
    del sids["ml-2"]
    with pytest.raises(ValueError, match="1 rated movies have no semantic ID"):
        evaluate(data, vectors, sids=sids)
