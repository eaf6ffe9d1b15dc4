"""Small real media for encoder tests: PNG/JPEG images and PCM WAV audio made on the fly."""

from __future__ import annotations

import io
import wave

import numpy as np


def image_bytes(seed: int, size: int = 48, fmt: str = "PNG") -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def wav_bytes(seconds: float, rate: int = 8000, freq_hz: float = 440.0, channels: int = 1) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.5 * np.sin(2 * np.pi * freq_hz * t) * 32767).astype(np.int16)
    frames = np.repeat(tone[:, None], channels, axis=1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames.tobytes())
    return buf.getvalue()
