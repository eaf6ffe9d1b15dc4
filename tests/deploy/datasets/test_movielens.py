"""MovieLens as traffic: the rating -> action table and the replay's order and pacing (pure; no data)."""

from __future__ import annotations

import pytest

from deploy.datasets.movielens import (
    Movie,
    MovieLens,
    Rating,
    action_for,
    engagements,
    interaction_for,
    schedule,
    speedup_for,
    upload_for,
)
from topology.messages import Action


def _data() -> MovieLens:
    movies = {
        1: Movie(1, "Toy Story", 1995, ("Adventure", "Animation")),
        2: Movie(2, "Heat", None, ()),
        3: Movie(3, "Fargo", 1996, ("Crime",)),
    }
    ratings = [Rating(7, 1, 4.0, 1000), Rating(8, 1, 2.0, 1000), Rating(7, 2, 3.5, 1100), Rating(9, 3, 5.0, 10**9)]
    return MovieLens(movies, ratings)


@pytest.mark.parametrize(
    ("stars", "action"),
    [
        (5.0, Action.LIKE),
        (4.0, Action.LIKE),
        (3.5, Action.VIEW),
        (3.0, Action.VIEW),
        (2.5, Action.SKIP),
        (2.0, Action.DISLIKE),
        (0.5, Action.DISLIKE),
    ],
)
def test_each_rating_maps_to_its_documented_action(stars: float, action: Action) -> None:
    assert action_for(stars) is action


def test_an_impossible_rating_is_refused() -> None:
    with pytest.raises(ValueError, match=r"0\.5-5"):
        action_for(0.0)


def test_a_movie_is_uploaded_just_before_its_first_rating_and_once() -> None:
    steps = list(schedule(_data(), speedup=0, max_gap_s=1.0))
    kinds = [("upload", s.movie.movie_id) if s.movie else ("rate", s.rating.user, s.rating.movie_id) for s in steps]  # type: ignore[union-attr]
    assert kinds == [("upload", 1), ("rate", 7, 1), ("rate", 8, 1), ("upload", 2), ("rate", 7, 2), ("upload", 3), ("rate", 9, 3)]
    assert all(s.at_s == 0.0 for s in steps)  # speed-up 0: a backlog, sent at once


def test_time_runs_faster_and_a_quiet_spell_is_capped() -> None:
    steps = [s for s in schedule(_data(), speedup=50.0, max_gap_s=5.0) if s.rating]
    assert [s.at_s for s in steps] == [0.0, 0.0, 2.0, 7.0]  # 100 s of log at 50x = 2 s; 31 years -> the 5 s cap


def test_uploads_and_interactions_carry_what_the_encoder_and_the_maths_read() -> None:
    data = _data()
    upload = upload_for(data.movies[1], 123)
    assert (upload.item_id, upload.title, upload.tags, upload.created_at_ms) == (
        "ml-1",
        "Toy Story (1995)",
        ("adventure", "animation"),
        123,
    )
    assert upload_for(data.movies[2], 1).title == "Heat"  # no year known
    view = interaction_for(data.ratings[2], 456)
    assert (view.event_id, view.user_id, view.item_id, view.action, view.timestamp_ms, view.dwell_ms) == (
        "ml-7-2",
        "ml-user-7",
        "ml-2",
        Action.VIEW,
        456,
        10_000,
    )
    assert interaction_for(data.ratings[0], 1).dwell_ms == 0


def test_first_keeps_the_earliest_ratings_and_only_their_movies() -> None:
    part = _data().first(3)
    assert len(part.ratings) == 3 and set(part.movies) == {1, 2}
    assert part.labels() == {"ml-1": "Toy Story (1995)", "ml-2": "Heat"}


def test_the_speedup_for_a_duration_makes_the_replay_last_that_long() -> None:
    data = MovieLens(_data().movies, [Rating(1, 1, 4.0, t) for t in (0, 100, 300, 600, 10**8)])
    speedup = speedup_for(data, duration_s=7.0, max_gap_s=2.0)  # 100 + 200 + 300 s at 100x, + the 2 s cap
    assert speedup == pytest.approx(100.0, rel=1e-3)
    assert [s.at_s for s in schedule(data, speedup, 2.0)][-1] == pytest.approx(7.0, rel=1e-3)
    assert speedup_for(data, duration_s=100.0, max_gap_s=0.1) == pytest.approx(1.0)  # cannot last that long: real time
    assert speedup_for(data, duration_s=0.0, max_gap_s=2.0) == 0.0  # no time at all: a backlog


def test_the_training_log_has_one_engagement_per_rating_positive_for_likes() -> None:
    data = _data()
    log = engagements(data)
    assert [(x.user, x.item, x.at_s) for x in log] == [(r.user_id, r.item_id, float(r.timestamp_s)) for r in data.ratings]
    assert [x.positive for x in log] == [r.rating >= 4 for r in data.ratings]
