"""The tritonclient adapter: health checks and the asyncio inference client the streams call.

Library errors become `EncoderUnavailable` (retry with backoff; never dead-letter).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aiogrpc
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException

from encoders.signature import PROBE, ModelSignature

logger = logging.getLogger(__name__)


class EncoderUnavailable(RuntimeError):
    """Triton did not answer in time or refused the request."""


@dataclass(frozen=True, slots=True)
class TritonHealth:
    live: bool
    ready: bool
    models_ready: dict[str, bool]
    server_version: str


def check_triton(address: str, models: tuple[str, ...], timeout_s: float = 5.0) -> TritonHealth:
    """Liveness, readiness and per-model readiness of the server at `host:port` (gRPC).

    Raises:
        EncoderUnavailable: the server did not answer.
    """
    client = grpcclient.InferenceServerClient(address)
    try:
        live = client.is_server_live(client_timeout=timeout_s)
        ready = client.is_server_ready(client_timeout=timeout_s)
        version = client.get_server_metadata(client_timeout=timeout_s).version
        models_ready = {m: client.is_model_ready(m, client_timeout=timeout_s) for m in models}
    except InferenceServerException as exc:
        raise EncoderUnavailable(f"Triton at {address} did not answer: {exc}") from exc
    finally:
        client.close()
    return TritonHealth(live=live, ready=ready, models_ready=models_ready, server_version=version)


class EncoderClient:
    """Async Triton client over gRPC; open with `await client.start()`."""

    def __init__(self, address: str, timeout_s: float) -> None:
        self._address = address
        self._timeout_s = timeout_s
        self._client: aiogrpc.InferenceServerClient | None = None

    async def start(self) -> None:
        self._client = aiogrpc.InferenceServerClient(self._address)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _infer(self, signature: ModelSignature, arrays: dict[str, NDArray]) -> dict[str, NDArray]:
        if self._client is None:
            raise RuntimeError("EncoderClient used before start()")
        inputs = []
        for spec in signature.inputs:
            array = arrays[spec.name]
            tensor = aiogrpc.InferInput(spec.name, list(array.shape), spec.dtype)
            tensor.set_data_from_numpy(array.astype(spec.numpy_dtype, copy=False))
            inputs.append(tensor)
        outputs = [aiogrpc.InferRequestedOutput(spec.name) for spec in signature.outputs]
        try:
            result = await self._client.infer(signature.name, inputs, outputs=outputs, client_timeout=self._timeout_s)
        except InferenceServerException as exc:
            raise EncoderUnavailable(f"{signature.name} at {self._address}: {exc}") from exc
        return {spec.name: result.as_numpy(spec.name) for spec in signature.outputs}

    async def normalise(self, vectors: NDArray[np.float32]) -> NDArray[np.float32]:
        """The probe model: (batch, dim) -> (batch, dim) unit rows, computed by Triton.

        Raises:
            EncoderUnavailable: Triton down, timed out or refused.
        """
        out = await self._infer(PROBE, {"vector": np.asarray(vectors, dtype=np.float32)})
        return out["normalised"]
