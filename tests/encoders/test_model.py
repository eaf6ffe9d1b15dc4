"""The SAIL encoder in-process on CPU: real MiniLM weights for the tiny default, tiny random
configs for the omni and Qwen2 paths."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders.config import PRESETS
from encoders.model import SailEncoder, load_encoder
from streams.interest.maths import matryoshka
from tests.support.media import image_bytes, wav_bytes
from topology import reasons
from topology.messages import EncodeRequest


@pytest.fixture(scope="module")
def tiny() -> SailEncoder:
    return load_encoder("sail-tiny")


@pytest.fixture(scope="module")
def omni() -> SailEncoder:
    return load_encoder("sail-tiny-omni")


@pytest.fixture(scope="module")
def qwen2() -> SailEncoder:
    return load_encoder("sail-qwen2-tiny")


def _mixed_requests() -> list[EncodeRequest]:
    return [
        EncodeRequest(
            title="kitten chases a laser pointer", tags=("cats",), cover=image_bytes(1), frames=(image_bytes(2), image_bytes(3))
        ),
        EncodeRequest(title="street food tour in Bangkok", asr_text="today we eat noodles. so spicy!"),
        EncodeRequest(title="drum solo practice", audio=wav_bytes(1.5)),
        EncodeRequest(title="alpine hike", cover=image_bytes(4), audio=wav_bytes(0.7, freq_hz=220)),
        EncodeRequest(role="query", title="funny cats"),
    ]


def _vectors(encoder: SailEncoder, requests: list[EncodeRequest]) -> np.ndarray:
    results = encoder.encode(requests)
    assert all(r.vector is not None for r in results), [r.error for r in results]
    return np.stack([r.vector for r in results])  # type: ignore[misc]


def test_tiny_default_puts_paraphrases_closer_than_unrelated_titles(tiny: SailEncoder) -> None:
    v = _vectors(
        tiny,
        [
            EncodeRequest(title="cute kitten playing with yarn"),
            EncodeRequest(title="a little cat plays with a ball of wool"),
            EncodeRequest(title="stock market falls after interest rate hike"),
            EncodeRequest(title="shares tumble as the central bank raises rates"),
        ],
    )
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[0, 3] + 0.2
    assert sim[2, 3] > sim[2, 0] + 0.2 and sim[2, 3] > sim[2, 1] + 0.2


def test_closed_gates_make_the_default_exactly_a_text_embedder(tiny: SailEncoder) -> None:
    text_only = _vectors(tiny, [EncodeRequest(title="alpine hike at dawn")])
    with_media = _vectors(tiny, [EncodeRequest(title="alpine hike at dawn", cover=image_bytes(9), audio=wav_bytes(1.0))])
    np.testing.assert_array_equal(text_only, with_media)


def test_same_input_gives_the_same_vector_in_a_fresh_instance(omni: SailEncoder) -> None:
    requests = _mixed_requests()
    again = load_encoder("sail-tiny-omni")
    assert again.model_version == omni.model_version
    np.testing.assert_array_equal(_vectors(omni, requests), _vectors(again, requests))


@pytest.mark.parametrize("name", ["sail-tiny", "sail-tiny-omni", "sail-qwen2-tiny"])
def test_batched_equals_single_within_1e_5(name: str, tiny: SailEncoder, omni: SailEncoder, qwen2: SailEncoder) -> None:
    encoder = {"sail-tiny": tiny, "sail-tiny-omni": omni, "sail-qwen2-tiny": qwen2}[name]
    requests = _mixed_requests()
    batched = _vectors(encoder, requests)
    single = np.concatenate([_vectors(encoder, [r]) for r in requests])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_media_moves_the_vector_when_gates_are_open(omni: SailEncoder) -> None:
    text, image, audio = _vectors(
        omni,
        [
            EncodeRequest(title="alpine hike"),
            EncodeRequest(title="alpine hike", cover=image_bytes(5)),
            EncodeRequest(title="alpine hike", audio=wav_bytes(1.0)),
        ],
    )
    assert float(text @ image) < 0.9999 and float(text @ audio) < 0.9999


def test_every_matryoshka_prefix_is_unit_norm_after_renormalisation(omni: SailEncoder) -> None:
    vectors = _vectors(omni, _mixed_requests())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for dim in omni.config.matryoshka_dims:
        prefix = matryoshka(vectors, dim)
        assert prefix.shape == (len(vectors), dim)
        np.testing.assert_allclose(np.linalg.norm(prefix, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(prefix, vectors[:, :dim] / np.linalg.norm(vectors[:, :dim], axis=1, keepdims=True), atol=1e-6)


def test_any_subset_of_modalities_may_be_missing(omni: SailEncoder) -> None:
    requests = [
        EncodeRequest(),  # nothing but the instruction
        EncodeRequest(cover=image_bytes(6)),
        EncodeRequest(audio=wav_bytes(0.3)),
        EncodeRequest(frames=(image_bytes(7),)),
    ]
    vectors = _vectors(omni, requests)
    assert vectors.shape == (4, omni.config.output_dim)
    assert np.isfinite(vectors).all()


def test_corrupt_image_fails_only_its_own_item(omni: SailEncoder) -> None:
    requests = _mixed_requests()
    broken = [*requests[:2], EncodeRequest(title="broken", cover=b"\xff\xd8 definitely not a jpeg"), *requests[2:]]
    results = omni.encode(broken)
    assert results[2].vector is None and results[2].reason == reasons.MEDIA_UNREADABLE
    good = np.stack([r.vector for i, r in enumerate(results) if i != 2])  # type: ignore[misc]
    np.testing.assert_allclose(good, _vectors(omni, requests), atol=1e-5)
    assert all(r.model_version == omni.model_version for r in results)


def test_qwen2_fusion_attends_bidirectionally(qwen2: SailEncoder) -> None:
    fusion = qwen2.fusion
    embeds = torch.randn(1, 6, fusion.hidden_size)
    mask = torch.ones(1, 6, dtype=torch.bool)
    positions = torch.arange(6).unsqueeze(0)
    modal = torch.zeros(1, 6, dtype=torch.bool)
    with torch.inference_mode():
        before = fusion(embeds, mask, positions, modal)
        changed = embeds.clone()
        changed[0, 5] += 1.0  # only the last token changes
        after = fusion(changed, mask, positions, modal)
    assert not torch.allclose(before[0, 0], after[0, 0])  # a causal LM would leave token 0 untouched


def test_qwen2_large_path_runs_on_a_tiny_random_config(qwen2: SailEncoder) -> None:
    vectors = _vectors(qwen2, _mixed_requests())
    assert vectors.shape == (5, 128)
    assert qwen2.model_version.startswith("sail-qwen2-tiny-")


def test_saved_encoder_loads_offline_with_the_same_vectors_and_version(omni: SailEncoder, tmp_path: Path) -> None:
    omni.save_pretrained(tmp_path / "enc")
    assert {"sail_config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (tmp_path / "enc").iterdir()}
    loaded = load_encoder(str(tmp_path / "enc"))
    requests = _mixed_requests()
    np.testing.assert_allclose(_vectors(loaded, requests), _vectors(omni, requests), atol=1e-6)


def test_model_version_changes_with_the_weights(tiny: SailEncoder) -> None:
    other = SailEncoder(dataclasses.replace(PRESETS["sail-tiny"], seed=1))
    assert other.model_version != tiny.model_version  # different random vision/audio init


def test_default_encoder_matches_its_golden_vectors(tiny: SailEncoder) -> None:
    """A change that moves these vectors must change model_version (and regenerate the file)."""
    import json

    from tests.encoders.golden import GOLDEN, REQUESTS

    golden = json.loads(GOLDEN.read_text())
    assert tiny.model_version == golden["model_version"], "config or weights changed: run python -m tests.encoders.golden"
    np.testing.assert_allclose(_vectors(tiny, REQUESTS), np.asarray(golden["vectors"], dtype=np.float32), atol=1e-5)
