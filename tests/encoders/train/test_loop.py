"""The training loop end to end on a tiny slice: steps, checkpoints, resume, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from encoders.model import SailEncoder
from encoders.train.loop import CHECKPOINTS, ENCODER, REPORT, Trainer, train
from encoders.train.recipe import RecipeError
from tests.support.training import tiny_data, tiny_recipe
from topology.messages import EncodeRequest


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
    assert not np.allclose(
        load_encoder("sail-tiny").encode(request)[0].vector, loaded.encode(request)[0].vector, atol=1e-4
    )  # it trained


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


def test_the_tiny_run_embeds_its_golden_vectors(finished) -> None:  # type: ignore[no-untyped-def]
    """Training is deterministic for a recipe and seed: a change to the loop or its losses moves these
    (rewrite with `python -m tests.encoders.golden --trained` when deliberate). The version hash is
    bit-exact and may differ across CPUs; the vectors are compared to 1e-4."""
    import json

    from tests.encoders.golden import GOLDEN_TRAINED, REQUESTS

    result, _, _ = finished
    golden = json.loads(GOLDEN_TRAINED.read_text())
    vectors = np.stack([r.vector for r in SailEncoder.from_pretrained(result.encoder_dir).encode(REQUESTS)])  # type: ignore[misc]
    np.testing.assert_allclose(vectors, np.asarray(golden["vectors"], dtype=np.float32), atol=1e-4)
    assert golden["model_version"].startswith("sail-tiny-test-")
