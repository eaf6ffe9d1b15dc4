"""Preprocessing next to the model: text cleaning and composition, image and audio decoding.

Everything here is deterministic and per item; a broken image or audio payload becomes a `MediaError`
for that item only.
"""

from __future__ import annotations

import io
import re
import unicodedata
import wave
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from encoders.config import AudioConfig, EncoderConfig, VisionConfig
from topology import reasons
from topology.messages import EncodeRequest

# CLIP's normalisation constants, the convention of the ViT towers the report builds on.
_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32).reshape(3, 1, 1)
_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32).reshape(3, 1, 1)
_SPACE = re.compile(r"\s+")
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+|\n+")


class MediaError(ValueError):
    """An image or audio payload that cannot be decoded; `reason` is `media.unreadable`."""

    reason = reasons.MEDIA_UNREADABLE


@dataclass(frozen=True, slots=True)
class PreparedItem:
    """Model-ready inputs of one item.

    images: (n_images, 3, size, size) float32, cover first, or None
    audio: (n_chunks, n_mels, n_frames) float32 log-mel, or None
    """

    text: str
    images: NDArray[np.float32] | None
    audio: NDArray[np.float32] | None


# --------------------------------------------------------------------------- text


def clean_text(text: str) -> str:
    """NFKC, control characters dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return _SPACE.sub(" ", text).strip()


def _key(text: str) -> str:
    """What makes two snippets the same: case and final punctuation ignored."""
    return clean_text(text).lower().rstrip(".!?。！？ ")


def _dedupe_sentences(text: str, seen: set[str]) -> str:
    """Drop sentences already seen (OCR and ASR repeat captions and each other)."""
    kept = []
    for sentence in _SENTENCE.split(text):
        key = _key(sentence)
        if key and key not in seen:
            seen.add(key)
            kept.append(clean_text(sentence))
    return " ".join(kept)


def compose_text(request: EncodeRequest, config: EncoderConfig) -> str:
    """Instruction + labelled fields, cleaned and deduplicated; most informative first, so the
    tokenizer's truncation to `max_text_tokens` cuts the long OCR/ASR tails, not the title."""
    seen: set[str] = set()
    parts = []
    title = clean_text(request.title)
    if title:
        seen.add(_key(title))
        parts.append(f"title: {title}")
    tags = []
    for tag in request.tags:
        tag = clean_text(tag).lstrip("#")
        if tag and _key(tag) not in seen:
            seen.add(_key(tag))
            tags.append(tag)
    if tags:
        parts.append("tags: " + ", ".join(tags))
    nickname = clean_text(request.author_nickname)
    if nickname:
        parts.append(f"author: {nickname}")
    for label, text in (("ocr", request.ocr_text), ("asr", request.asr_text)):
        deduped = _dedupe_sentences(text, seen)
        if deduped:
            parts.append(f"{label}: {deduped}")
    instruction = config.query_instruction if request.role == "query" else config.target_instruction
    return instruction + " | ".join(parts)


# --------------------------------------------------------------------------- images


def decode_image(data: bytes, vision: VisionConfig) -> NDArray[np.float32]:
    """Encoded image bytes -> (3, size, size) float32, RGB, resized, CLIP-normalised. Transparent
    pixels are composited onto white, as a feed shows them (a plain RGB conversion would show the
    colour hidden under the alpha: black for most PNG stickers and emoji).

    Raises:
        MediaError: not a decodable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
            else:
                flat = image.convert("RGB")
            rgb = flat.resize((vision.image_size, vision.image_size), Image.Resampling.BICUBIC)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError(f"image: {type(exc).__name__}: {exc}"[:300]) from exc
    pixels = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0  # (H, W, 3) -> (3, H, W)
    return (pixels - _MEAN) / _STD


def sample_frames(frames: tuple[bytes, ...], max_frames: int) -> tuple[bytes, ...]:
    """At most `max_frames`, spread evenly over the clip (first and last kept)."""
    if len(frames) <= max_frames:
        return frames
    if max_frames == 1:
        return frames[:1]
    picks = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
    return tuple(frames[i] for i in picks)


# --------------------------------------------------------------------------- audio


def decode_wav(data: bytes, audio: AudioConfig) -> NDArray[np.float32]:
    """WAV bytes (8/16/32-bit PCM, any rate, any channels) -> mono float32 at `audio.sample_rate`.

    Raises:
        MediaError: not a PCM WAV file.
    """
    try:
        with wave.open(io.BytesIO(data)) as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError, ValueError) as exc:
        raise MediaError(f"audio: {type(exc).__name__}: {exc}"[:300]) from exc
    dtypes = {1: np.uint8, 2: np.int16, 4: np.int32}
    if width not in dtypes or channels < 1 or rate <= 0:
        raise MediaError(f"audio: unsupported WAV (sample width {width}, {channels} channels, {rate} Hz)")
    samples = np.frombuffer(raw[: len(raw) - len(raw) % (width * channels)], dtype=dtypes[width]).astype(np.float32)
    samples = (samples - 128.0) / 128.0 if width == 1 else samples / float(2 ** (8 * width - 1))
    mono = samples.reshape(-1, channels).mean(axis=1)  # (frames, channels) -> (frames,)
    if mono.size == 0:
        raise MediaError("audio: empty WAV")
    if rate != audio.sample_rate:
        target_len = max(1, round(mono.size * audio.sample_rate / rate))
        mono = np.interp(np.linspace(0, mono.size - 1, target_len), np.arange(mono.size), mono).astype(np.float32)
    return mono


def _mel_filterbank(audio: AudioConfig) -> NDArray[np.float32]:
    """(n_mels, n_fft // 2 + 1) triangular filters on the HTK mel scale."""

    def hz_to_mel(hz: NDArray[np.float64]) -> NDArray[np.float64]:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    n_bins = audio.n_fft // 2 + 1
    mel_points = np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(audio.sample_rate / 2)), audio.n_mels + 2)
    hz_points = 700.0 * (10 ** (mel_points / 2595.0) - 1.0)
    bins = np.linspace(0, audio.sample_rate / 2, n_bins)
    bank = np.zeros((audio.n_mels, n_bins), dtype=np.float32)
    for m in range(audio.n_mels):
        lo, centre, hi = hz_points[m], hz_points[m + 1], hz_points[m + 2]
        rising = (bins - lo) / max(centre - lo, 1e-9)
        falling = (hi - bins) / max(hi - centre, 1e-9)
        bank[m] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


def log_mel_chunks(samples: NDArray[np.float32], audio: AudioConfig) -> NDArray[np.float32]:
    """Mono samples -> (n_chunks, n_mels, n_frames) log-mel, one row per `chunk_s` chunk (last one
    zero-padded), at most `max_chunks` chunks spread over the clip."""
    chunk = int(audio.chunk_s * audio.sample_rate)
    n_chunks = max(1, -(-samples.size // chunk))
    padded = np.zeros(n_chunks * chunk, dtype=np.float32)
    padded[: samples.size] = samples
    chunks = padded.reshape(n_chunks, chunk)
    if n_chunks > audio.max_chunks:
        chunks = chunks[np.linspace(0, n_chunks - 1, audio.max_chunks).round().astype(int)]
    n_frames = 1 + (chunk - audio.n_fft) // audio.hop_length
    index = np.arange(audio.n_fft)[None, :] + audio.hop_length * np.arange(n_frames)[:, None]  # (n_frames, n_fft)
    window = np.hanning(audio.n_fft).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(chunks[:, index] * window, axis=-1)) ** 2  # (chunks, frames, bins)
    mel = spectrum @ _mel_filterbank(audio).T  # (chunks, frames, n_mels)
    return np.log(mel + 1e-6).transpose(0, 2, 1).astype(np.float32)  # -> (chunks, n_mels, frames)


# --------------------------------------------------------------------------- one item


def prepare(request: EncodeRequest, config: EncoderConfig) -> PreparedItem:
    """Text, images and audio of one request, ready for the model.

    Raises:
        MediaError: an image or the audio cannot be decoded (this item only).
    """
    images = None
    payloads = ([request.cover] if request.cover else []) + list(sample_frames(request.frames, config.vision.max_frames))
    if payloads:
        images = np.stack([decode_image(p, config.vision) for p in payloads])
    mel = log_mel_chunks(decode_wav(request.audio, config.audio), config.audio) if request.audio else None
    return PreparedItem(text=compose_text(request, config), images=images, audio=mel)
