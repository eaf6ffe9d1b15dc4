from __future__ import annotations

from pathlib import Path

import pytest

from encoders.train.recipe import RECIPES, RecipeError, load_recipe, recipe_from_dict

MINIMAL = {
    "name": "t",
    "base": "sail-tiny",
    "dataset": "movielens",
    "steps": 3,
    "trainable": {"fusion": 1e-5},
    "sources": [{"name": "seq2item"}],
}


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPES.glob("*.toml")))
def test_every_shipped_recipe_loads(name: str) -> None:
    recipe = load_recipe(name)
    assert recipe.steps > 0 and recipe.trainable and recipe.sources


def test_a_recipe_file_path_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "t"\nbase = "sail-tiny"\ndataset = "emoji"\nsteps = 5\n[trainable]\nvision = 1e-4\n[[sources]]\nname = "emoji"\n'
    )
    recipe = load_recipe(str(path))
    assert (recipe.steps, recipe.trainable, recipe.sources[0].weight) == (5, {"vision": 1e-4}, 1.0)
    longer = recipe.with_overrides(steps=50, batch_size=None)
    assert longer.steps == 50 and longer.batch_size == recipe.batch_size
    assert longer.fingerprint() != recipe.fingerprint()  # a checkpoint of one does not resume the other


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stepz": 3}, "unknown keys"),
        ({"trainable": {}}, "nothing would learn"),
        ({"sources": []}, "needs \\[\\[sources\\]\\]"),
        ({"sources": [{"name": "a", "weight": 0}]}, "weight > 0"),
        ({"batch_size": 1}, "in-batch negatives"),
        ({"gates": {"smell": 1.0}}, "gates are"),
    ],
)
def test_invalid_recipes_are_refused_with_the_reason(change: dict[str, object], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict({**MINIMAL, **change})


def test_an_unknown_recipe_name_lists_the_shipped_ones() -> None:
    with pytest.raises(RecipeError, match="cre-movielens"):
        load_recipe("no-such-recipe")
