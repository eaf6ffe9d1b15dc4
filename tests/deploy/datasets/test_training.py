"""The training recipes' data builders on real data (MovieLens slice) and the emoji records' text and split."""

from __future__ import annotations

import pytest

from deploy.datasets.emoji import Emoji
from deploy.datasets.training import build
from encoders.train.data import Distill, Pairs
from encoders.train.recipe import RecipeError, load_recipe


def test_the_cre_recipe_reads_only_the_interactions_before_the_cut() -> None:
    recipe = load_recipe("cre-movielens").with_overrides(
        data={"train_fraction": 0.8, "history": 3, "window": 5, "collab_dim": 16, "limit": 3000}
    )
    data = build(recipe, cache_dir=None)  # type: ignore[arg-type]  # MovieLens comes from the installed package
    from deploy.datasets.training import movielens_split

    split = movielens_split(0.8, 3000)
    after_cut = {e.item for e in split.test} - {e.item for e in split.train}
    assert after_cut, "the slice has items first seen after the cut"
    named: set[str] = set()
    for source in data.sources.values():
        if isinstance(source, Pairs):
            named |= {e for q in source.queries for e in q} | set(source.targets)
        else:
            assert isinstance(source, Distill) and source.vectors.shape == (len(source.items), 16)
            named |= set(source.items)
    assert named and not named & after_cut  # no cold item is ever trained on
    assert set(data.sources) == {"seq2item", "coengagement", "id2item"}
    movie = next(iter(data.catalogue.values()))
    assert movie.title and movie.role == "target"  # the text the worker sends for an upload


def test_unknown_data_options_are_refused() -> None:
    recipe = load_recipe("cre-movielens").with_overrides(data={"histroy": 3})
    with pytest.raises(RecipeError, match="histroy"):
        build(recipe, cache_dir=None)  # type: ignore[arg-type]


def test_an_emoji_reads_like_what_a_user_types_and_a_fifth_is_held_out() -> None:
    grin = Emoji("1f600.png", "GRINNING FACE", ("grinning",), "Smileys & Emotion", "face-smiling", b"")
    assert grin.text == "grinning face (grinning); smileys & emotion, face smiling"
    same = Emoji("1f600.png", "GRINNING FACE", ("grinning_face",), "Smileys & Emotion", "face-smiling", b"")
    assert same.text.startswith("grinning face;")  # a short name equal to the name is not repeated
    many = [Emoji(f"{n:05x}.png", "X", (), "C", "s", b"") for n in range(2000)]
    share = sum(e.held_out for e in many) / len(many)
    assert 0.17 < share < 0.23 and grin.held_out == Emoji("1f600.png", "other", (), "c", "s", b"x").held_out  # by image name only
