"""The tritonclient adapter: health checks and the asyncio inference client the streams call.

`EncoderClient.encode_one()` micro-batches concurrent callers into one Triton request (up to
`max_batch` items or `max_wait_ms`), Triton's dynamic batcher then merges requests across clients.
Transient failures are retried with exponential backoff; after the last try the caller gets
`EncoderUnavailable` (retry later, never dead-letter). Per-item failures (a corrupt image) come back
as that item's `EncodeResult.error`, never as an exception for the batch. A request Triton refuses
as invalid is `EncoderRejected` at once (retrying the same request cannot help); `encoder_verdict`
and `answers` let `streams.isolation` find the record behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aiogrpc
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException

from encoders.signature import PROBE, SAIL_ENCODER, EncodeRequest, EncodeResult, ModelSignature, pack_request
from topology.settings import Settings, TlsFiles

logger = logging.getLogger(__name__)


class EncoderUnavailable(RuntimeError):
    """Triton did not answer in time or failed the request.

    `suspect`: Triton answered with an error of its own (INTERNAL, UNKNOWN...), not a lost
    connection or a deadline, so a record in the request may be the cause.
    """

    def __init__(self, message: str, suspect: bool = False) -> None:
        super().__init__(message)
        self.suspect = suspect


class EncoderRejected(RuntimeError):
    """Triton refused the request as invalid (INVALID_ARGUMENT); retrying it cannot help."""


# gRPC codes that say nothing about the request: the server is away, busy or slow
_UNAVAILABLE_CODES = frozenset({"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED", "StatusCode.RESOURCE_EXHAUSTED", "None"})


def _failure(exc: InferenceServerException, what: str) -> EncoderUnavailable | EncoderRejected:
    status = str(exc.status())
    if status == "StatusCode.INVALID_ARGUMENT":
        return EncoderRejected(f"{what}: {exc}")
    return EncoderUnavailable(f"{what}: {exc}", suspect=status not in _UNAVAILABLE_CODES)


def encoder_verdict(exc: Exception) -> Literal["rejected", "suspect", "down"]:
    """How `streams.isolation` reads an encoder error."""
    if isinstance(exc, EncoderRejected):
        return "rejected"
    if isinstance(exc, EncoderUnavailable) and exc.suspect:
        return "suspect"
    return "down"


@dataclass(frozen=True, slots=True)
class TritonHealth:
    live: bool
    ready: bool
    models_ready: dict[str, bool]
    server_version: str


def check_triton(address: str, models: tuple[str, ...], timeout_s: float = 5.0, tls: TlsFiles | None = None) -> TritonHealth:
    """Liveness, readiness and per-model readiness of the server at `host:port` (gRPC).

    Raises:
        EncoderUnavailable: the server did not answer.
    """
    client = grpcclient.InferenceServerClient(address, **(tls.triton_kwargs() if tls else {}))
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


@dataclass(frozen=True, slots=True)
class ClientStats:
    """Counters for metrics and tests: how well micro-batching works."""

    requests: int
    items: int
    retries: int


class EncoderClient:
    """Async Triton client over gRPC; open with `await client.start()`."""

    def __init__(
        self,
        address: str,
        timeout_s: float,
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        tls: TlsFiles | None = None,
    ) -> None:
        self._address = address
        self._tls = tls
        self._timeout_s = timeout_s
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000.0
        self._retries = retries
        self._backoff_s = backoff_s
        self._client: aiogrpc.InferenceServerClient | None = None
        self._pending: list[tuple[EncodeRequest, asyncio.Future[EncodeResult]]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._requests = self._items = self._retried = 0

    @classmethod
    def for_settings(cls, settings: Settings, **overrides: Any) -> EncoderClient:
        """The client for `settings` (address, timeout, batching, retries, TLS); `overrides` win."""
        s = settings
        values: dict[str, Any] = {"timeout_s": s.triton_timeout_s, "max_batch": s.triton_max_batch_size, "max_wait_ms": s.encoder_max_wait_ms,
                                  "retries": s.encoder_retries, "tls": s.triton_tls(), **overrides}  # fmt: skip
        return cls(s.triton_grpc_address, **values)

    async def start(self) -> None:
        self._client = aiogrpc.InferenceServerClient(self._address, **(self._tls.triton_kwargs() if self._tls else {}))

    async def close(self) -> None:
        self._flush_now()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def stats(self) -> ClientStats:
        return ClientStats(requests=self._requests, items=self._items, retries=self._retried)

    # ------------------------------------------------------------------ transport

    async def _infer_once(self, signature: ModelSignature, arrays: dict[str, NDArray]) -> dict[str, NDArray]:
        if self._client is None:
            raise RuntimeError("EncoderClient used before start()")
        inputs = []
        for spec in signature.inputs:
            array = arrays[spec.name]
            tensor = aiogrpc.InferInput(spec.name, list(array.shape), spec.dtype)
            tensor.set_data_from_numpy(array if spec.dtype == "BYTES" else array.astype(spec.numpy_dtype, copy=False))
            inputs.append(tensor)
        outputs = [aiogrpc.InferRequestedOutput(spec.name) for spec in signature.outputs]
        try:
            result = await self._client.infer(signature.name, inputs, outputs=outputs, client_timeout=self._timeout_s)
        except InferenceServerException as exc:
            raise _failure(exc, f"{signature.name} at {self._address}") from exc
        return {spec.name: result.as_numpy(spec.name) for spec in signature.outputs}

    async def _infer(self, signature: ModelSignature, arrays: dict[str, NDArray]) -> dict[str, NDArray]:
        """`_infer_once` with `retries` retries and exponential backoff."""
        for attempt in range(self._retries + 1):
            try:
                return await self._infer_once(signature, arrays)
            except EncoderUnavailable as exc:
                if attempt == self._retries:
                    raise
                delay = self._backoff_s * 2**attempt
                self._retried += 1
                logger.warning("triton retry model=%s attempt=%d delay_s=%.2f error=%s", signature.name, attempt + 1, delay, exc)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ models

    async def normalise(self, vectors: NDArray[np.float32]) -> NDArray[np.float32]:
        """The probe model: (batch, dim) -> (batch, dim) unit rows, computed by Triton.

        Raises:
            EncoderUnavailable: Triton down, timed out or refused, after the retries.
        """
        out = await self._infer(PROBE, {"vector": np.asarray(vectors, dtype=np.float32)})
        return out["normalised"]

    async def encode(self, requests: Sequence[EncodeRequest]) -> list[EncodeResult]:
        """Embed requests with the SAIL encoder, `max_batch` per Triton request.

        Raises:
            EncoderUnavailable: Triton down, timed out or failing, after the retries.
            EncoderRejected: Triton refused the request as invalid.
        """
        results: list[EncodeResult] = []
        for start in range(0, len(requests), self._max_batch):
            chunk = requests[start : start + self._max_batch]
            blobs = np.array([[pack_request(r)] for r in chunk], dtype=np.object_)  # (B, 1)
            out = await self._infer(SAIL_ENCODER, {"item": blobs})
            self._requests += 1
            self._items += len(chunk)
            for row in range(len(chunk)):
                error = bytes(out["error"][row, 0]).decode()
                version = bytes(out["model_version"][row, 0]).decode()
                vector = None if error else out["embedding"][row].astype(np.float32)
                results.append(EncodeResult(vector=vector, error=error, model_version=version))
        return results

    async def answers(self) -> bool:
        """Whether Triton encodes a known-good request now (the probe of `streams.isolation`)."""
        try:
            results = await self.encode([EncodeRequest(title="probe")])
        except (EncoderUnavailable, EncoderRejected) as exc:
            logger.warning("encoder probe failed: %s", str(exc).splitlines()[0][:200])
            return False
        return results[0].vector is not None

    async def encode_one(self, request: EncodeRequest) -> EncodeResult:
        """Embed one request, batched with whatever other callers send within `max_wait_ms`.

        Raises:
            EncoderUnavailable: Triton down, timed out or refused, after the retries.
        """
        future: asyncio.Future[EncodeResult] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if len(self._pending) >= self._max_batch:
            self._flush_now()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(self._max_wait_s, self._flush_now)
        return await future

    def _flush_now(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[EncodeRequest, asyncio.Future[EncodeResult]]]) -> None:
        try:
            results = await self.encode([request for request, _ in batch])
        except Exception as exc:  # noqa: BLE001 - handed to every waiting caller, not swallowed
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
