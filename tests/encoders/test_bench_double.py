"""The measurable encoder stand-in: service time from a control file that can change while it
serves, deterministic unit vectors, the real encoder's per-item errors (no Triton needed here; the
stand-in behind Triton is exercised in tests/integration/test_slow_encoder.py)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from encoders.bench_double import ServiceTime, read_control, standin_infer_fn, vector_for, write_control
from topology import reasons
from topology.codec import encode_encoder_request
from topology.messages import EncodeRequest


def test_service_time_is_fixed_plus_per_item() -> None:
    service = ServiceTime(fixed_ms=20, per_item_ms=2)
    assert service.seconds(10) == pytest.approx(0.040)
    assert service.seconds(64) == pytest.approx(0.148)


def test_control_file_round_trip_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "standin.json"
    write_control(path, ServiceTime(5, 1, 8))
    assert read_control(path) == ServiceTime(5, 1, 8)
    path.write_text('{"fixed_ms": -1, "per_item_ms": 0, "dim": 8}')
    with pytest.raises(ValueError, match=">= 0"):
        read_control(path)
    path.write_text("not json")
    with pytest.raises(ValueError, match="not a stand-in service time"):
        read_control(path)


def test_vectors_are_a_deterministic_function_of_the_request() -> None:
    a, b = encode_encoder_request(EncodeRequest(title="a")), encode_encoder_request(EncodeRequest(title="b"))
    assert np.array_equal(vector_for(a, 16), vector_for(a, 16))
    assert not np.allclose(vector_for(a, 16), vector_for(b, 16))
    assert np.linalg.norm(vector_for(a, 16)) == pytest.approx(1.0)


def test_infer_sleeps_the_service_time_read_at_each_batch(tmp_path: Path) -> None:
    control = tmp_path / "standin.json"
    write_control(control, ServiceTime(fixed_ms=0, per_item_ms=1, dim=8))
    infer = standin_infer_fn(control)
    batch = np.array(
        [[encode_encoder_request(EncodeRequest(title=f"t{i}"))] for i in range(20)] + [[b"\xc1junk"]], dtype=np.object_
    )
    began = time.monotonic()
    out = infer(batch)
    fast = time.monotonic() - began
    assert out["embedding"].shape == (21, 8)
    assert bytes(out["error"][-1, 0]).decode().startswith(reasons.DECODE_MSGPACK)  # a bad blob fails its own row only
    assert all(bytes(e[0]) == b"" for e in out["error"][:-1])
    time.sleep(0.01)  # a new mtime
    write_control(control, ServiceTime(fixed_ms=150, per_item_ms=1, dim=8))  # slowed down while serving
    began = time.monotonic()
    infer(batch)
    slow = time.monotonic() - began
    assert fast >= 0.021 and slow >= 0.171
    assert slow - fast >= 0.14


def test_instances_share_one_device(tmp_path: Path) -> None:
    """Two instances serving at once take turns on the simulated device, like two instances on one GPU."""
    import threading

    control = tmp_path / "standin.json"
    write_control(control, ServiceTime(fixed_ms=100, per_item_ms=0, dim=4))
    instances = [standin_infer_fn(control), standin_infer_fn(control)]
    batch = np.array([[encode_encoder_request(EncodeRequest(title="t"))]], dtype=np.object_)
    threads = [threading.Thread(target=infer, args=(batch,)) for infer in instances]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - began >= 0.2
