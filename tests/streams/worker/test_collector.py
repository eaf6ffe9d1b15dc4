"""The worker's tuning of Python's cyclic collector (`SAIL_WORKER_GC_YOUNG`), in a fresh interpreter
(it changes process-wide state)."""

from __future__ import annotations

import json
import subprocess
import sys

SHOW = (
    "import gc, json, sys; from streams.worker.app import tune_collector; tune_collector(int(sys.argv[1])); "
    "print(json.dumps([gc.get_threshold(), gc.get_freeze_count()]))"
)


def _after(young: int) -> tuple[list[int], int]:
    done = subprocess.run([sys.executable, "-c", SHOW, str(young)], capture_output=True, text=True, timeout=120, check=True)
    threshold, frozen = json.loads(done.stdout.splitlines()[-1])
    return threshold, frozen


def test_a_worker_collects_less_often_and_leaves_its_start_up_heap_out() -> None:
    threshold, frozen = _after(20_000)
    assert threshold == [20_000, 20, 20]
    assert frozen > 10_000  # the imported Faust, aiokafka, grpc and pymilvus objects


def test_zero_leaves_pythons_collector_as_it_is() -> None:
    assert _after(0) == ([700, 10, 10], 0)
