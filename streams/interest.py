"""Pure vector maths of the streams: normalisation and Matryoshka truncation (the interest
updates join them with the streaming agents). No clock, no I/O."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def l2_normalise(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """Rows scaled to unit L2 norm, shape kept: (dim,) or (n, dim); zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def matryoshka(vectors: NDArray[np.float32], dim: int) -> NDArray[np.float32]:
    """The first `dim` components, renormalised: (..., D) -> (..., dim), for a smaller index."""
    if not 0 < dim <= vectors.shape[-1]:
        raise ValueError(f"matryoshka dim {dim} outside 1..{vectors.shape[-1]}")
    return l2_normalise(vectors[..., :dim])
