from __future__ import annotations

import numpy as np
import pytest

from encoders.config import PRESETS, AudioConfig, VisionConfig
from encoders.preprocess import (
    MediaError,
    clean_text,
    compose_text,
    decode_image,
    decode_wav,
    log_mel_chunks,
    prepare,
    sample_frames,
)
from tests.support.media import image_bytes, wav_bytes
from topology.messages import EncodeRequest

TINY = PRESETS["sail-tiny"]


def test_clean_text_normalises_unicode_controls_and_whitespace() -> None:
    assert clean_text("  Ｈｅｌｌｏ\u200b\tworld \x07 !\n") == "Hello world !"


def test_compose_text_labels_fields_and_drops_repeats() -> None:
    request = EncodeRequest(
        title="Best pasta recipe",
        tags=("#cooking", "Best pasta recipe", "italian"),
        author_nickname="chef_anna",
        ocr_text="Best pasta recipe. Boil water. Boil water.",
        asr_text="Boil water. Add salt!",
    )
    text = compose_text(request, TINY)
    assert text.startswith(TINY.target_instruction)
    assert "title: Best pasta recipe | tags: cooking, italian | author: chef_anna | ocr: Boil water. | asr: Add salt!" in text


def test_query_and_target_get_different_instructions() -> None:
    assert compose_text(EncodeRequest(role="query", title="x"), TINY).startswith(TINY.query_instruction)
    assert TINY.query_instruction != TINY.target_instruction


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_images_decode_to_one_resolution(fmt: str) -> None:
    pixels = decode_image(image_bytes(1, size=50, fmt=fmt), VisionConfig(image_size=28))
    assert pixels.shape == (3, 28, 28) and pixels.dtype == np.float32
    assert -3 < pixels.min() < pixels.max() < 3  # CLIP-normalised


@pytest.mark.parametrize("mode", ["RGBA", "P"])
def test_transparent_pixels_show_as_white_not_the_colour_under_the_alpha(mode: str) -> None:
    import io

    from PIL import Image

    from encoders.preprocess import _MEAN, _STD

    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent black, as PNG stickers and emoji store it
    image.paste((255, 0, 0, 128), (0, 0, 8, 4))  # the top half half-transparent red
    if mode == "P":
        image = image.convert("P")  # a palette PNG keeps transparency in its info, not in an alpha band
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    pixels = decode_image(buffer.getvalue(), VisionConfig(image_size=8)) * _STD + _MEAN  # back to 0..1 RGB
    np.testing.assert_allclose(pixels[:, 6, 4], [1.0, 1.0, 1.0], atol=0.02)  # transparent -> white
    if mode == "RGBA":
        np.testing.assert_allclose(pixels[:, 1, 4], [1.0, 0.5, 0.5], atol=0.03)  # red at half alpha over white -> pink


@pytest.mark.parametrize("payload", [b"not an image", image_bytes(2)[:40], b"\x89PNG\r\n\x1a\n" + b"\x00" * 50])
def test_broken_image_is_a_media_error(payload: bytes) -> None:
    with pytest.raises(MediaError, match="image"):
        decode_image(payload, VisionConfig())


def test_frames_are_sampled_evenly_keeping_first_and_last() -> None:
    frames = tuple(bytes([i]) for i in range(10))
    assert sample_frames(frames, 4) == (b"\x00", b"\x03", b"\x06", b"\x09")
    assert sample_frames(frames[:3], 4) == frames[:3]


def test_wav_is_resampled_to_mono_at_the_model_rate() -> None:
    samples = decode_wav(wav_bytes(1.0, rate=8000, channels=2), AudioConfig(sample_rate=16000))
    assert samples.shape == (16000,)
    assert 0.45 < np.abs(samples).max() < 0.55


def test_broken_audio_is_a_media_error() -> None:
    with pytest.raises(MediaError, match="audio"):
        decode_wav(b"RIFF....WAVEjunk", AudioConfig())


def test_log_mel_has_one_row_per_ten_second_chunk() -> None:
    audio = AudioConfig(max_chunks=2)
    mel = log_mel_chunks(np.zeros(int(16000 * 12.5), dtype=np.float32), audio)
    assert mel.shape == (2, audio.n_mels, 1 + (160000 - audio.n_fft) // audio.hop_length)
    long = log_mel_chunks(np.zeros(16000 * 45, dtype=np.float32), audio)
    assert long.shape[0] == 2  # capped at max_chunks


def test_prepare_puts_the_cover_first_and_fails_on_a_bad_frame() -> None:
    cover, frame = image_bytes(3), image_bytes(4)
    item = prepare(EncodeRequest(title="t", cover=cover, frames=(frame,), audio=wav_bytes(0.5)), TINY)
    assert item.images is not None and item.images.shape == (2, 3, TINY.vision.image_size, TINY.vision.image_size)
    np.testing.assert_array_equal(item.images[0], decode_image(cover, TINY.vision))
    assert item.audio is not None and item.audio.shape[0] == 1
    with pytest.raises(MediaError):
        prepare(EncodeRequest(title="t", cover=cover, frames=(b"broken",)), TINY)
