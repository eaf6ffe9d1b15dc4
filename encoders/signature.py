"""Triton model names and tensor contracts, declared once for the server and the client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

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


# --------------------------------------------------------------------------- the SAIL encoder
# Its per-item request is `topology.messages.EncodeRequest`, on the wire as
# `topology.codec.encode_encoder_request` (one msgpack map per row of the `item` tensor).


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
    inputs=(TensorSpec("item", "BYTES", (1,)),),  # topology.codec.encode_encoder_request(...) per item
    outputs=(
        TensorSpec("embedding", "FP32", (-1,)),  # (dim,), L2-normalised; zeros where `error` is set
        TensorSpec("error", "BYTES", (1,)),  # b"" or b"<reason>: <detail>" for this item only
        TensorSpec("model_version", "BYTES", (1,)),
    ),
)
