"""The tritonclient adapter: health checks and the asyncio inference client the streams call.

`EncoderClient.encode()` sends a caller's batch (the content agent's micro-batch), in requests of at
most `max_batch` items; Triton's dynamic batcher merges requests across callers and workers. Each
request is tried once, under a `Deadline` that follows the measured service time; a failure is
`EncoderUnavailable` for the caller to retry later (never dead-letter); the client never resends
work itself, so there is one retry layer (the worker's). Per-item failures (a corrupt image) come back
as that item's `EncodeResult.error`, never as an exception for the batch. A request Triton refuses
as invalid is `EncoderRejected` at once (retrying the same request cannot help); `encoder_verdict`
and `answers` let `streams.sinks.isolation` find the record behind it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aiogrpc
from numpy.typing import NDArray
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions
from tritonclient.utils import InferenceServerException

from encoders.signature import PROBE, SAIL_ENCODER, EncodeResult, ModelSignature
from topology.codec import encode_encoder_request
from topology.messages import EncodeRequest
from topology.settings import Settings, TlsFiles

logger = logging.getLogger(__name__)


class EncoderUnavailable(RuntimeError):
    """Triton did not answer in time or failed the request.

    `suspect`: Triton answered with an error of its own (INTERNAL, UNKNOWN...), not a lost
    connection or a deadline, so a record in the request may be the cause. `busy`: Triton refused
    the request as over its queue bound, before computing it (overload, not an outage).
    """

    def __init__(self, message: str, suspect: bool = False, busy: bool = False) -> None:
        super().__init__(message)
        self.suspect = suspect
        self.busy = busy


class EncoderRejected(RuntimeError):
    """Triton refused the request as invalid (INVALID_ARGUMENT); retrying it cannot help."""


# gRPC codes that say nothing about the request: the server is away, busy or slow
_UNAVAILABLE_CODES = frozenset(
    {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED", "StatusCode.RESOURCE_EXHAUSTED", "None"}
)


# tritonserver's words for a request its queue policy refused (gRPC UNAVAILABLE): never computed
_BUSY_MESSAGES = ("Exceeds maximum queue size", "Request timeout expired")


def _failure(exc: InferenceServerException, what: str) -> EncoderUnavailable | EncoderRejected:
    status = str(exc.status())
    if status == "StatusCode.INVALID_ARGUMENT":
        return EncoderRejected(f"{what}: {exc}")
    busy = status == "StatusCode.UNAVAILABLE" and any(m in str(exc) for m in _BUSY_MESSAGES)
    return EncoderUnavailable(f"{what}: {exc}", suspect=status not in _UNAVAILABLE_CODES, busy=busy)


def encoder_verdict(exc: Exception) -> Literal["rejected", "suspect", "down"]:
    """How `streams.sinks.isolation` reads an encoder error."""
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


def _channel_args() -> list[tuple[str, int]]:
    """tritonclient's own channel options, plus a short reconnect backoff: gRPC's default grows to
    120 s, so a worker whose Triton was down for 30 s went on failing fast for ~20 s after it came
    back (measured in bench.faults triton-down), waiting for the channel's next connection attempt."""
    keepalive = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.min_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]


class Deadline:
    """The client deadline of an encode request, following the work rather than a fixed number.

    RFC 6298's estimator (as TCP times its retransmissions), split in two: the smoothed latency *per item*,
    so that a batch's deadline grows with its size, and the smoothed deviation *per request*, in seconds.
    The deadline is (items x per-item latency + 4 deviations) x 2, never under `floor_s`; after a missed
    deadline it doubles (up to 64x) until a request succeeds. A slow server is waited for: a request Triton
    has admitted is computed even when the client gives up on it, so a deadline that fires on mere slowness
    only sends the server the same work twice; one slow answer raises the deviation at once.

    An outlier is one request's delay, not every item's: the per-item mean takes a sample bounded at the
    current mean + 4 deviations, and the deviation takes it whole. (A single per-item figure for both,
    as before, turned a 1-item request answered after a 15 s freeze into 15 s per item, a 64-item batch's
    deadline of 600 s, and a worker waiting 10 minutes on a Triton that had died; bench.interest.) A real
    shift is still learnt: the bound grows with the deviation, within a few answers. Pure: no clock, no I/O.
    """

    CEILING_S: Final = 600.0

    def __init__(self, floor_s: float) -> None:
        self.floor_s = floor_s
        self._per_item_s: float | None = None
        self._deviation_s = 0.0  # of a request's latency from items x per-item latency
        self._backoff = 1

    def seconds(self, items: int) -> float:
        if self._per_item_s is None:
            estimate = 0.0
        else:
            estimate = 2.0 * (max(items, 1) * self._per_item_s + 4 * self._deviation_s)
        return min(max(estimate, self.floor_s) * self._backoff, self.CEILING_S)

    def observe(self, items: int, seconds: float) -> None:
        """A request of `items` answered after `seconds`."""
        items = max(items, 1)
        if self._per_item_s is None:
            self._per_item_s, self._deviation_s = seconds / items, seconds / 2
        else:
            expected = items * self._per_item_s
            bounded = min(seconds, expected + 4 * self._deviation_s)
            self._deviation_s = 0.75 * self._deviation_s + 0.25 * abs(seconds - expected)
            self._per_item_s = 0.875 * self._per_item_s + 0.125 * bounded / items
        self._backoff = 1

    def missed(self) -> None:
        """A request passed its deadline: wait twice as long next time."""
        self._backoff = min(self._backoff * 2, 64)


Outcome = Literal["ok", "abandoned", "rejected", "failed"]


@dataclass(frozen=True, slots=True)
class ClientStats:
    """Counters for metrics, benchmarks and tests: how well micro-batching works, and what was lost.

    `abandoned`: requests whose deadline passed (Triton may still have computed them);
    `rejected`: requests Triton refused as over its queue bound (never computed)."""

    requests: int
    items: int
    abandoned: int
    rejected: int
    failed: int


class EncoderClient:
    """Async Triton client over gRPC; open with `await client.start()`.

    One attempt per request: retrying belongs to the caller (the worker's retry loop backs off with
    jitter), so there is one retry layer. `observe(outcome, items, seconds)` hears every request.
    """

    def __init__(
        self,
        address: str,
        timeout_s: float,
        max_batch: int = 64,
        tls: TlsFiles | None = None,
        observe: Callable[[Outcome, int, float], None] | None = None,
    ) -> None:
        self._address = address
        self._tls = tls
        self.deadline = Deadline(timeout_s)
        self._max_batch = max_batch
        self._observe = observe
        self._client: aiogrpc.InferenceServerClient | None = None
        self._counts: dict[Outcome, int] = {"ok": 0, "abandoned": 0, "rejected": 0, "failed": 0}
        self._items = 0

    @classmethod
    def for_settings(cls, settings: Settings, **overrides: Any) -> EncoderClient:
        """The client for `settings` (address, deadline floor, batching, TLS); `overrides` win."""
        s = settings
        values: dict[str, Any] = {
            "timeout_s": s.triton_timeout_s,
            "max_batch": s.triton_max_batch_size,
            "tls": s.triton_tls(),
            **overrides,
        }
        return cls(s.triton_grpc_address, **values)

    async def start(self) -> None:
        self._client = aiogrpc.InferenceServerClient(
            self._address, channel_args=_channel_args(), **(self._tls.triton_kwargs() if self._tls else {})
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def stats(self) -> ClientStats:
        c = self._counts
        return ClientStats(
            requests=c["ok"], items=self._items, abandoned=c["abandoned"], rejected=c["rejected"], failed=c["failed"]
        )

    # ------------------------------------------------------------------ transport

    def _count(self, outcome: Outcome, items: int, seconds: float) -> None:
        self._counts[outcome] += 1
        if self._observe is not None:
            self._observe(outcome, items, seconds)

    async def _infer(self, signature: ModelSignature, arrays: dict[str, NDArray]) -> dict[str, NDArray]:
        """One Triton request under the current `Deadline`.

        Raises:
            EncoderUnavailable: down, refused as busy (`busy`), failed, or past the deadline.
            EncoderRejected: refused as invalid.
        """
        if self._client is None:
            raise RuntimeError("EncoderClient used before start()")
        inputs = []
        for spec in signature.inputs:
            array = arrays[spec.name]
            tensor = aiogrpc.InferInput(spec.name, list(array.shape), spec.dtype)
            tensor.set_data_from_numpy(array if spec.dtype == "BYTES" else array.astype(spec.numpy_dtype, copy=False))
            inputs.append(tensor)
        outputs = [aiogrpc.InferRequestedOutput(spec.name) for spec in signature.outputs]
        items = len(next(iter(arrays.values())))
        began = time.perf_counter()
        try:
            result = await self._client.infer(
                signature.name, inputs, outputs=outputs, client_timeout=self.deadline.seconds(items)
            )
        except InferenceServerException as exc:
            elapsed = time.perf_counter() - began
            failure = _failure(exc, f"{signature.name} at {self._address}")
            if str(exc.status()) == "StatusCode.DEADLINE_EXCEEDED":
                self.deadline.missed()
                self._count("abandoned", items, elapsed)
            elif isinstance(failure, EncoderUnavailable) and failure.busy:
                self._count("rejected", items, elapsed)
            else:
                self._count("failed", items, elapsed)
            raise failure from exc
        elapsed = time.perf_counter() - began
        self.deadline.observe(items, elapsed)
        self._items += items
        self._count("ok", items, elapsed)
        return {spec.name: result.as_numpy(spec.name) for spec in signature.outputs}

    # ------------------------------------------------------------------ models

    async def normalise(self, vectors: NDArray[np.float32]) -> NDArray[np.float32]:
        """The probe model: (batch, dim) -> (batch, dim) unit rows, computed by Triton.

        Raises:
            EncoderUnavailable: Triton down, past the deadline, busy or failing.
        """
        out = await self._infer(PROBE, {"vector": np.asarray(vectors, dtype=np.float32)})
        return out["normalised"]

    async def encode(self, requests: Sequence[EncodeRequest]) -> list[EncodeResult]:
        """Embed requests with the SAIL encoder, `max_batch` per Triton request.

        Raises:
            EncoderUnavailable: Triton down, past the deadline, busy or failing.
            EncoderRejected: Triton refused the request as invalid.
        """
        results: list[EncodeResult] = []
        for start in range(0, len(requests), self._max_batch):
            chunk = requests[start : start + self._max_batch]
            blobs = np.array([[encode_encoder_request(r)] for r in chunk], dtype=np.object_)  # (B, 1)
            out = await self._infer(SAIL_ENCODER, {"item": blobs})
            for row in range(len(chunk)):
                error = bytes(out["error"][row, 0]).decode()
                version = bytes(out["model_version"][row, 0]).decode()
                vector = None if error else out["embedding"][row].astype(np.float32)
                results.append(EncodeResult(vector=vector, error=error, model_version=version))
        return results

    async def answers(self) -> bool:
        """Whether Triton encodes a known-good request now (the probe of `streams.sinks.isolation`)."""
        try:
            results = await self.encode([EncodeRequest(title="probe")])
        except (EncoderUnavailable, EncoderRejected) as exc:
            logger.warning("encoder probe failed: %s", str(exc).splitlines()[0][:200])
            return False
        return results[0].vector is not None
