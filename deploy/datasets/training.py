"""Real data for the training recipes (`sail-stream train`): each recipe's `dataset` names a builder
here that turns installed real data into `encoders.train.data.TrainingData`.

- `movielens` (Collaborative Recommendation Enhancement): MovieLens ml-latest-small, split in time
  (`data.train_fraction` of the log before the cut; only that part is read). Every movie is a
  catalogue item, with the text the worker sends for it (`deploy.datasets.movielens.upload_for`). Sources:
  `coengagement` (item -> an item the same user liked within `data.window` positives),
  `seq2item` (the mean of a user's last `data.history` liked items -> the next liked item) and
  `id2item` (each item's embedding distilled towards its collaborative vector, a rank-`data.collab_dim`
  truncated SVD of the training split's likes).
- `emoji` (vision alignment): `deploy.datasets.emoji`; source `emoji`: the emoji's text as a query -> its
  image alone (no text) as the target; the held-out fifth is never read.

`data.limit` (both) keeps only the first N ratings / emoji: the tests' tiny slices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deploy.datasets.emoji import Emoji, load_emoji
from encoders.train.collab import Engagement, coengagement_pairs, collaborative_vectors, seq2item_pairs, time_split
from encoders.train.data import Distill, Pairs, Source, TrainingData
from encoders.train.recipe import Recipe, RecipeError
from topology.messages import EncodeRequest

if TYPE_CHECKING:
    from deploy.datasets.movielens import MovieLens

# deploy.datasets.movielens and the worker's request builder are imported where MovieLens is read: they bring
# the Kafka and Faust clients, which training on other data does not need.


@dataclass(frozen=True, slots=True)
class MovieLensSplit:
    """The time split every MovieLens recipe and its benchmark share."""

    data: MovieLens
    train: list[Engagement]
    test: list[Engagement]
    cut_s: float


def movielens_split(train_fraction: float, limit: int | None = None) -> MovieLensSplit:
    from deploy.datasets.movielens import engagements, load_movielens

    data = load_movielens().first(limit)
    train, test, cut = time_split(engagements(data), train_fraction)
    return MovieLensSplit(data, train, test, cut)


def movie_requests(data: MovieLens) -> dict[str, EncodeRequest]:
    """Every movie as the encoder sees it in the stream (title with year, genres as tags)."""
    from deploy.datasets.movielens import upload_for
    from streams.worker.content import inline_request

    return {m.item_id: inline_request(upload_for(m, 0)) for m in data.movies.values()}


def emoji_query(emoji: Emoji) -> EncodeRequest:
    return EncodeRequest(role="query", title=emoji.text)


def emoji_image(emoji: Emoji) -> EncodeRequest:
    return EncodeRequest(role="target", cover=emoji.png)


def build(recipe: Recipe, cache_dir: Path, progress: Callable[[str], None] = lambda line: None) -> TrainingData:
    """The recipe's `dataset`, read and turned into sources.

    Raises:
        RecipeError: an unknown dataset or option.
    """
    options = dict(recipe.data)
    if recipe.dataset == "movielens":
        known = {"train_fraction", "history", "window", "collab_dim", "limit"}
        _check(options, known, recipe)
        split = movielens_split(float(options.get("train_fraction", 0.8)), options.get("limit"))
        seq = seq2item_pairs(split.train, int(options.get("history", 3)))
        co = coengagement_pairs(split.train, int(options.get("window", 5)))
        collab = collaborative_vectors(split.train, int(options.get("collab_dim", 64)), seed=recipe.seed)
        items = sorted(collab)
        progress(
            f"movielens: {len(split.train):,} training interactions before the cut, {len(seq):,} seq2item and {len(co):,} "
            f"co-engagement pairs, {len(items):,} items with a collaborative vector"
        )
        sources: dict[str, Source] = {
            "seq2item": Pairs("seq2item", [h for h, _ in seq], [t for _, t in seq]),
            "coengagement": Pairs("coengagement", [(a,) for a, _ in co], [b for _, b in co]),
            "id2item": Distill("id2item", items, np.stack([collab[i] for i in items])),
        }
        return TrainingData(movie_requests(split.data), sources)
    if recipe.dataset == "emoji":
        _check(options, {"limit"}, recipe)
        emoji = load_emoji(cache_dir, progress)[: options.get("limit")]
        train = [e for e in emoji if not e.held_out]
        progress(f"emoji: {len(train):,} image-text pairs for training, {len(emoji) - len(train):,} held out")
        catalogue = {f"txt:{e.image}": emoji_query(e) for e in train} | {f"img:{e.image}": emoji_image(e) for e in train}
        return TrainingData(
            catalogue, {"emoji": Pairs("emoji", [(f"txt:{e.image}",) for e in train], [f"img:{e.image}" for e in train])}
        )
    raise RecipeError(f"recipe {recipe.name!r}: unknown dataset {recipe.dataset!r} (movielens, emoji)")


def _check(options: dict[str, object], known: set[str], recipe: Recipe) -> None:
    unknown = set(options) - known
    if unknown:
        raise RecipeError(
            f"recipe {recipe.name!r}: unknown [data] options {sorted(unknown)} for {recipe.dataset} (known: {sorted(known)})"
        )
