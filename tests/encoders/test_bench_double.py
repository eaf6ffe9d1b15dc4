"""The measurable encoder stand-in: service time from a control file that can change while it
serves, deterministic unit vectors, the real encoder's per-item errors (no Triton needed here; the
stand-in behind Triton is exercised in tests/integration/test_slow_encoder.py)."""

from __future__ import annotations

import os
import threading
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


def _later_mtime(path: Path, than_ns: int) -> None:
    """Give `path` an mtime after `than_ns`: a rewrite within one tick of the file system's clock keeps the old one."""
    os.utime(path, ns=(than_ns + 1_000_000_000, than_ns + 1_000_000_000))


def test_infer_spends_the_service_time_read_at_each_batch_on_the_device(tmp_path: Path) -> None:
    control = tmp_path / "standin.json"
    write_control(control, ServiceTime(fixed_ms=0, per_item_ms=1, dim=8))
    slept: list[float] = []
    infer = standin_infer_fn(control, sleep=slept.append)
    batch = np.array(
        [[encode_encoder_request(EncodeRequest(title=f"t{i}"))] for i in range(20)] + [[b"\xc1junk"]], dtype=np.object_
    )
    out = infer(batch)
    assert out["embedding"].shape == (21, 8)
    assert bytes(out["error"][-1, 0]).decode().startswith(reasons.DECODE_MSGPACK)  # a bad blob fails its own row only
    assert all(bytes(e[0]) == b"" for e in out["error"][:-1])
    assert slept == [pytest.approx(0.021)]  # 0 + 1 ms x 21 rows: the bad row is part of the batch the device runs

    first_mtime_ns = control.stat().st_mtime_ns
    write_control(control, ServiceTime(fixed_ms=150, per_item_ms=1, dim=8))  # slowed down while serving
    _later_mtime(control, than_ns=first_mtime_ns)
    infer(batch)
    infer(batch[:5])
    assert slept == [pytest.approx(0.021), pytest.approx(0.171), pytest.approx(0.155)]  # the new time, from the next batch on


def test_instances_take_turns_on_the_one_device(tmp_path: Path) -> None:
    """Two instances serving at once, like two instances on one GPU: the second's device slot starts
    only after the first's has ended."""
    control = tmp_path / "standin.json"
    write_control(control, ServiceTime(fixed_ms=100, per_item_ms=0, dim=4))
    slots: list[str] = []
    first_on_device, second_on_device = threading.Event(), threading.Event()

    def first_sleep(seconds: float) -> None:
        slots.append("first in")
        first_on_device.set()
        # the second instance is started now; while the device is ours it must not get it, so this wait runs out
        second_on_device.wait(timeout=1.0)
        slots.append("first out")

    def second_sleep(seconds: float) -> None:
        slots.append("second in")
        second_on_device.set()
        slots.append("second out")

    batch = np.array([[encode_encoder_request(EncodeRequest(title="t"))]], dtype=np.object_)
    first = threading.Thread(target=standin_infer_fn(control, sleep=first_sleep), args=(batch,))
    second = threading.Thread(target=standin_infer_fn(control, sleep=second_sleep), args=(batch,))
    first.start()
    assert first_on_device.wait(timeout=60), "the first instance never reached the device"
    second.start()
    first.join(timeout=60)
    second.join(timeout=60)
    assert slots == ["first in", "first out", "second in", "second out"]
