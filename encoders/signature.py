"""Triton model names and tensor contracts, declared once for the server and the client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import msgpack
import numpy as np
from numpy.typing import NDArray

_NUMPY: Final = {"FP32": np.float32, "INT64": np.int64, "BYTES": np.bytes_}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor per item; Triton adds the batch dimension in front (`max_batch_size` > 0)."""

    name: str
    dtype: str  # Triton's name: FP32, INT64, BYTES
    shape: tuple[int, ...]  # per item; -1 = variable

    @property
    def numpy_dtype(self) -> type:
        return _NUMPY[self.dtype]


@dataclass(frozen=True, slots=True)
class ModelSignature:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


PROBE: Final = ModelSignature(
    name="sail_probe",
    inputs=(TensorSpec("vector", "FP32", (-1,)),),
    outputs=(TensorSpec("normalised", "FP32", (-1,)),),
)
"""L2-normalises vectors: proves the Triton path (server, dynamic batching, client) end to end
without model weights. The SAIL encoder is served beside it."""


# --------------------------------------------------------------------------- the SAIL encoder's request

Role = Literal["target", "query"]


@dataclass(frozen=True, slots=True)
class EncodeRequest:
    """One item (role `target`) or query (role `query`) to embed: token-free text and raw media bytes.

    Media URIs are resolved by the caller; the server decodes and preprocesses next to the model.
    """

    role: Role = "target"
    title: str = ""
    ocr_text: str = ""
    asr_text: str = ""
    author_nickname: str = ""
    tags: tuple[str, ...] = ()
    cover: bytes | None = None
    frames: tuple[bytes, ...] = ()
    audio: bytes | None = None  # a WAV file's bytes


def pack_request(request: EncodeRequest) -> bytes:
    """The request as one msgpack blob, the per-item element of the `item` BYTES tensor."""
    return msgpack.packb(
        {
            "role": request.role,
            "title": request.title,
            "ocr_text": request.ocr_text,
            "asr_text": request.asr_text,
            "author_nickname": request.author_nickname,
            "tags": list(request.tags),
            "cover": request.cover,
            "frames": list(request.frames),
            "audio": request.audio,
        },
        use_bin_type=True,
    )


def unpack_request(blob: bytes) -> EncodeRequest:
    """Inverse of `pack_request`.

    Raises:
        ValueError: not a request blob (msgpack errors are ValueErrors too).
    """
    raw = msgpack.unpackb(blob, raw=False)
    if not isinstance(raw, dict) or raw.get("role") not in ("target", "query"):
        raise ValueError("not an encode request")
    return EncodeRequest(
        role=raw["role"],
        title=str(raw.get("title") or ""),
        ocr_text=str(raw.get("ocr_text") or ""),
        asr_text=str(raw.get("asr_text") or ""),
        author_nickname=str(raw.get("author_nickname") or ""),
        tags=tuple(str(t) for t in raw.get("tags") or ()),
        cover=raw.get("cover"),
        frames=tuple(raw.get("frames") or ()),
        audio=raw.get("audio"),
    )


@dataclass(frozen=True, slots=True)
class EncodeResult:
    """One item's outcome: a unit vector of shape (dim,), or an error for this item only."""

    vector: NDArray[np.float32] | None
    error: str = ""  # "<reason>: <detail>" when vector is None
    model_version: str = ""

    @property
    def reason(self) -> str:
        """The error's reason (one of `topology.reasons`), or "" for a vector."""
        return self.error.split(":", 1)[0] if self.error else ""


SAIL_ENCODER: Final = ModelSignature(
    name="sail_encoder",
    inputs=(TensorSpec("item", "BYTES", (1,)),),  # pack_request(...) per item
    outputs=(
        TensorSpec("embedding", "FP32", (-1,)),  # (dim,), L2-normalised; zeros where `error` is set
        TensorSpec("error", "BYTES", (1,)),  # b"" or b"<reason>: <detail>" for this item only
        TensorSpec("model_version", "BYTES", (1,)),
    ),
)
