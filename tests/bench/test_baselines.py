"""The standard baselines of bench.quality (issue 31): popularity windows, and the nightly ALS that sees
nothing of today while its fold-in does (pure, on hand-built logs; `implicit`'s real solver)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.baselines import DAY_S, AlsParams, NightlyAls, Popularity


def test_popularity_counts_only_its_window_and_ranks_ties_older_first() -> None:
    day, week = Popularity(4, DAY_S), Popularity(4, None)
    for item, at in [(0, 0), (0, 10), (1, DAY_S - 5), (2, DAY_S + 100)]:
        day.observe(item, at)
        week.observe(item, at)
    now = DAY_S + 200  # both of item 0's positives are over a day old
    assert list(np.argsort(-day.row(now, 4))[:3]) == [1, 2, 0]  # 1 and 2 tie at 1: the older first
    assert list(np.argsort(-week.row(now, 4))[:3]) == [0, 1, 2]
    assert day.row(now, 4)[0] == pytest.approx(0.0)
    assert len(day.row(now, 3)) == 3  # items not arrived are not scored


def _blocks() -> NightlyAls:
    """Users 0-3 like items 0-2, users 4-7 like items 3-5: two tastes a factor model separates."""
    als = NightlyAls(users=10, items=8, params=AlsParams(factors=4, regularization=0.01, alpha=10.0, iterations=15))
    for user in range(8):
        for item in range(3) if user < 4 else range(3, 6):
            als.observe(user, item)
    return als


def test_nightly_als_serves_from_what_was_known_at_midnight() -> None:
    als = _blocks()
    assert als.row(0, 8) is None  # no night has passed: nothing trained
    als.end_of_day()
    scores = als.row(0, 6)
    assert scores is not None and als.trainings == 1
    assert set(np.argsort(-scores)[:3]) == {0, 1, 2}  # user 0's own taste on top
    # Today user 8 likes items 3 and 4: the nightly job has no factor for them, the fold-in does
    als.observe(8, 3)
    als.observe(8, 4)
    assert als.row(8, 8) is None
    folded = als.fold_in_row(8, [3, 4], 8)
    assert folded is not None and set(np.argsort(-folded)[:3]) == {3, 4, 5}
    assert als.trainings == 1  # today's positives wait for the next night
    als.end_of_day()
    after = als.row(8, 8)
    assert after is not None and als.trainings == 2 and set(np.argsort(-after)[:2]) == {3, 4}  # known the next day


def test_a_positive_after_midnight_never_reaches_that_days_training() -> None:
    """Training is lazy (at the day's first query), but it trains on the positives before midnight only."""
    early, late = _blocks(), _blocks()
    early.end_of_day()
    late.end_of_day()
    for user in range(4):  # after midnight, users 0-3 turn to item 7, and user 9 arrives, before anyone asks
        late.observe(user, 7)
    late.observe(9, 0)
    a, b = early.row(0, 8), late.row(0, 8)
    assert a is not None and b is not None
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert late.row(9, 8) is None  # last night's job never saw user 9


def test_fold_in_needs_a_training_and_a_positive() -> None:
    als = _blocks()
    assert als.fold_in_row(9, [0], 8) is None  # no night yet
    als.end_of_day()
    assert als.fold_in_row(9, [], 8) is None
    assert als.fold_in_row(9, [0], 8) is not None  # a user never trained on is served by the fold-in
