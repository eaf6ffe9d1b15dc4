"""A measurable encoder stand-in: the SAIL encoder's inputs and outputs, with its service time spent
off the CPU (a sleep of `fixed_ms + per_item_ms x batch` per batch), as a GPU model would.

Benchmarks use it to tell the pipeline's own overhead from "the encoder shares the CPU with the
worker and the broker"; the slow-encoder test raises its service time mid-run. Select it with
`SAIL_ENCODER=standin`; `SAIL_STANDIN_FIXED_MS` / `SAIL_STANDIN_PER_ITEM_MS` set the service time.
Several Triton instances (`SAIL_TRITON_INSTANCES`) share one simulated device, as instances on one
GPU do: each does its host-side work (unpacking, hashing, Triton's hand-off) on its own, and waits for
the device to sleep its service time. The serving process reads the time from a small JSON control
file (`deploy.local` writes it from the settings when it starts Triton) and re-reads it whenever the
file changes, so a running server can be slowed down and restored without a restart.

Vectors are deterministic (a hash of the request seeds a unit vector): the same upload always gets
the same vector, different uploads different ones. They carry no meaning; recall quality measured
on them means nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

NAME = "standin"  # the encoder name (SAIL_ENCODER, `encoders.serving --encoder`) that selects it
MODEL_VERSION = "standin-v1"


@dataclass(frozen=True, slots=True)
class ServiceTime:
    """How long one batch takes: `fixed_ms + per_item_ms x items`, and the vectors' width."""

    fixed_ms: float = 20.0
    per_item_ms: float = 2.0
    dim: int = 384

    def seconds(self, items: int) -> float:
        return (self.fixed_ms + self.per_item_ms * items) / 1000.0


def write_control(path: Path, service: ServiceTime) -> None:
    """Set the service time of a running (or future) stand-in; atomic, so the server never reads half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(asdict(service)))
    os.replace(partial, path)


def read_control(path: Path) -> ServiceTime:
    """The service time in a control file.

    Raises:
        ValueError: the file is not a service time.
    """
    try:
        values = json.loads(path.read_text())
        service = ServiceTime(
            fixed_ms=float(values["fixed_ms"]), per_item_ms=float(values["per_item_ms"]), dim=int(values["dim"])
        )
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a stand-in service time: {exc}") from exc
    if service.fixed_ms < 0 or service.per_item_ms < 0 or service.dim < 1:
        raise ValueError(f"{path}: times must be >= 0 and dim >= 1, got {service}")
    return service


def vector_for(blob: bytes, dim: int) -> NDArray[np.float32]:
    """The stand-in's unit vector for one request blob (a function of its bytes)."""
    seed = int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little")
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


@contextmanager
def _device(control: Path) -> Iterator[None]:
    """Exclusive use of the one simulated device, across the instances (threads or processes) of a server."""
    with open(control.with_suffix(".device"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def standin_infer_fn(control: Path, sleep: Callable[[float], None] = time.sleep) -> object:
    """The batched Triton function: the SAIL encoder's tensors, `ServiceTime` from `control` (re-read
    when the file changes; a broken file keeps the last good time and is logged once), spent in
    `sleep(seconds)` while holding the device (tests pass a recorder to check the schedule, not the clock)."""
    from topology.codec import BadInput, decode_encoder_request

    service = read_control(control)
    mtime = -1.0

    def service_time() -> ServiceTime:
        nonlocal service, mtime
        try:
            changed = control.stat().st_mtime
        except OSError:
            return service
        if changed != mtime:
            mtime = changed
            try:
                service = read_control(control)
            except ValueError as exc:
                print(f"standin: keeping the last service time: {exc}", flush=True)
        return service

    def infer(item: NDArray[np.object_]) -> dict[str, NDArray]:
        service = service_time()
        embedding = np.zeros((len(item), service.dim), dtype=np.float32)
        errors = [b""] * len(item)
        for row, blob in enumerate(item[:, 0]):
            try:
                decode_encoder_request(bytes(blob))
            except BadInput as exc:
                errors[row] = f"{exc.reason}: {exc.detail}"[:300].encode()
                continue
            embedding[row] = vector_for(bytes(blob), service.dim)
        with _device(control):  # one "GPU" however many instances: their host-side work overlaps, their device time does not
            sleep(service.seconds(len(item)))  # off the CPU, like a GPU kernel
        return {
            "embedding": embedding,
            "error": np.array([[e] for e in errors], dtype=np.object_),
            "model_version": np.array([[MODEL_VERSION.encode()]] * len(item), dtype=np.object_),
        }

    return infer
