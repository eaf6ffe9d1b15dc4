"""The training loop end to end on a tiny slice: steps, checkpoints, resume, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from encoders.model import SailEncoder
from encoders.train.data import Distill, Pairs, TrainingData
from encoders.train.loop import CHECKPOINTS, ENCODER, REPORT, Trainer, train
from encoders.train.recipe import RecipeError, recipe_from_dict
from topology.messages import EncodeRequest

TOPICS = ["cats", "football", "cooking", "guitar", "travel", "chess"]


def tiny_data() -> TrainingData:
    catalogue = {f"{t}-{n}": EncodeRequest(title=f"{t} video number {n}", tags=(t,)) for t in TOPICS for n in range(2)}
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(catalogue), 8)).astype(np.float32)
    return TrainingData(
        catalogue,
        {
            "pairs": Pairs("pairs", [(f"{t}-0",) for t in TOPICS] + [(f"{t}-0", f"{t}-1") for t in TOPICS], [f"{t}-1" for t in TOPICS] * 2),
            "distill": Distill("distill", list(catalogue), vectors / np.linalg.norm(vectors, axis=1, keepdims=True)),
        },
    )


def tiny_recipe(**changes: object):  # type: ignore[no-untyped-def]
    raw = {
        "name": "sail-tiny-test", "base": "sail-tiny", "dataset": "movielens", "steps": 4, "batch_size": 4, "seed": 7,
        "trainable": {"fusion.model.encoder.layer.5": 1e-4}, "hard_negatives": 1, "checkpoint_every": 2, "log_every": 2,
        "sources": [{"name": "pairs"}, {"name": "distill"}],
    }  # fmt: skip
    return recipe_from_dict({**raw, **changes})


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("run")
    lines: list[str] = []
    return train(tiny_recipe(), tiny_data(), out, device="cpu", progress=lines.append), out, lines


def test_a_run_learns_reports_progress_and_exports_a_loadable_encoder(finished) -> None:  # type: ignore[no-untyped-def]
    result, out, lines = finished
    assert result.steps == 4 and result.resumed_from == 0 and result.items_per_s > 0
    assert set(result.losses) <= {"pairs", "distill"} and all(np.isfinite(v) for v in result.losses.values())
    assert any("step 2/4" in line and "items/s" in line and "eta" in line for line in lines)
    assert result.encoder_dir == out / ENCODER and (out / ENCODER / REPORT).exists()
    assert result.model_version.startswith("sail-tiny-test-")
    loaded = SailEncoder.from_pretrained(out / ENCODER)
    assert loaded.model_version == result.model_version and loaded.config.name == "sail-tiny-test"
    from encoders.model import load_encoder

    request = [EncodeRequest(title="cats video number 0", tags=("cats",))]
    assert not np.allclose(load_encoder("sail-tiny").encode(request)[0].vector, loaded.encode(request)[0].vector, atol=1e-4)  # it trained


def test_the_exported_folder_moves_and_keeps_its_version(finished, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    result, out, _ = finished
    moved = tmp_path / "elsewhere"
    shutil.copytree(out / ENCODER, moved)
    assert SailEncoder.from_pretrained(moved).model_version == result.model_version


def test_a_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(finished, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, out, _ = finished
    train(tiny_recipe(), tiny_data(), tmp_path, device="cpu")
    # a crash after step 2: the newest checkpoint and the export are gone
    (tmp_path / CHECKPOINTS / "step-000004.pt").unlink()
    import shutil

    shutil.rmtree(tmp_path / ENCODER)
    resumed = train(tiny_recipe(), tiny_data(), tmp_path, device="cpu")
    assert resumed.resumed_from == 2
    a, b = load_file(str(out / ENCODER / "model.safetensors")), load_file(str(tmp_path / ENCODER / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=key)
    assert resumed.model_version == result.model_version


def test_a_checkpoint_of_another_recipe_is_not_resumed(finished) -> None:  # type: ignore[no-untyped-def]
    _, out, _ = finished
    with pytest.raises(RecipeError, match="another recipe"):
        Trainer(tiny_recipe(steps=6), tiny_data(), out, device="cpu").run()


def test_recipes_naming_missing_sources_or_parameters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="sources the data does not have"):
        Trainer(tiny_recipe(sources=[{"name": "nope"}]), tiny_data(), tmp_path, device="cpu")
    with pytest.raises(RecipeError, match="match no parameter"):
        Trainer(tiny_recipe(trainable={"fusion.no.such.layer": 1e-4}), tiny_data(), tmp_path, device="cpu")
