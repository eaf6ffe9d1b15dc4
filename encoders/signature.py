"""Triton model names and tensor contracts, declared once for the server and the client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

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
