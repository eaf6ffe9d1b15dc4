"""The worker's one retry policy: exponential, capped, jittered, and ended at once by shutdown."""

from __future__ import annotations

import asyncio
import random

import pytest

from encoders.client import EncoderUnavailable
from streams.ops.metrics import Metrics
from streams.retry import Retry, ShuttingDown, backoff_s, equal_jitter


def test_backoff_doubles_from_the_first_pause_up_to_the_cap() -> None:
    assert [backoff_s(a, 0.1, 1.0) for a in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff_s(10_000, 0.1, 30.0) == 30.0  # no overflow however long the outage


def test_equal_jitter_draws_between_half_and_all_of_the_pause() -> None:
    rng = random.Random(7)
    draws = [equal_jitter(2.0, rng) for _ in range(500)]
    assert min(draws) >= 1.0 and max(draws) <= 2.0 and max(draws) - min(draws) > 0.8


async def test_retrying_repeats_a_transient_failure_until_it_succeeds_and_marks_the_dependency() -> None:
    metrics = Metrics()
    retry = Retry(metrics, max_s=0.01)
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise EncoderUnavailable("triton down")
        return "done"

    assert await retry.retrying("triton", "encode", flaky) == "done"
    assert len(calls) == 3
    assert metrics.registry.get_sample_value("sail_dependency_errors_total", {"dependency": "triton"}) == 2
    assert metrics.registry.get_sample_value("sail_dependency_up", {"dependency": "triton"}) == 1


async def test_shutdown_ends_a_retry_loop_at_once() -> None:
    retry = Retry(Metrics(), max_s=60.0)

    async def down() -> None:
        raise EncoderUnavailable("triton down")

    loop = asyncio.ensure_future(retry.retrying("triton", "encode", down))
    await asyncio.sleep(0.3)  # in a pause of up to 60 s by now
    retry.begin_shutdown()
    with pytest.raises(ShuttingDown):
        await asyncio.wait_for(loop, timeout=2.0)
