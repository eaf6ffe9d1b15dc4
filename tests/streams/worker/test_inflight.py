"""The content agent's in-order pipeline: several batches prepared at once, stored and acknowledged
in submission order, nothing after a failed batch acknowledged (pure asyncio, no services)."""

from __future__ import annotations

import asyncio

import pytest

from streams.worker.inflight import Abandoned, InOrderPipeline


class Recorder:
    """Batches whose prepare stage takes `prepare_s[name]` seconds; logs every stage."""

    def __init__(self, prepare_s: dict[str, float], fail_prepare: str | None = None) -> None:
        self.prepare_s = prepare_s
        self.fail_prepare = fail_prepare
        self.log: list[tuple[str, str]] = []
        self.preparing = 0
        self.most_preparing = 0

    def stages(self, name: str) -> tuple:
        async def prepare() -> str:
            self.preparing += 1
            self.most_preparing = max(self.most_preparing, self.preparing)
            await asyncio.sleep(self.prepare_s[name])
            self.preparing -= 1
            if name == self.fail_prepare:
                raise RuntimeError(f"{name} failed")
            self.log.append(("prepared", name))
            return name

        async def store(prepared: str) -> None:
            self.log.append(("stored", prepared))

        async def acknowledge() -> None:
            self.log.append(("acked", name))

        return prepare, store, acknowledge


async def test_later_batches_are_prepared_meanwhile_but_stored_and_acked_in_order() -> None:
    batches = Recorder({"a": 0.05, "b": 0.01, "c": 0.0})
    pipeline: InOrderPipeline[str] = InOrderPipeline(depth=3)
    for name in "abc":
        await pipeline.submit(*batches.stages(name))
    await pipeline.drain()
    assert batches.most_preparing == 3  # all three were encoding together
    assert [n for stage, n in batches.log if stage == "prepared"] == ["c", "b", "a"]  # finished out of order...
    assert [e for e in batches.log if e[0] != "prepared"] == [
        (s, n) for n in "abc" for s in ("stored", "acked")
    ]  # ...took effect in order
    assert pipeline.in_flight == 0


async def test_submit_waits_while_depth_batches_are_in_flight() -> None:
    batches = Recorder({name: 0.02 for name in "abcde"})
    pipeline: InOrderPipeline[str] = InOrderPipeline(depth=2)
    for name in "abcde":
        await pipeline.submit(*batches.stages(name))
        assert pipeline.in_flight < 2
    await pipeline.drain()
    assert batches.most_preparing == 2
    assert [n for stage, n in batches.log if stage == "acked"] == list("abcde")


async def test_the_time_submit_waits_for_a_slot_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted on the event loop's clock; here a fake one that moves only while the encoder holds a batch."""
    loop = asyncio.get_running_loop()
    now = [1000.0]
    monkeypatch.setattr(loop, "time", lambda: now[0])  # no timer runs in this test: nothing else reads it
    encoded = {name: asyncio.Event() for name in "abc"}

    def stages(name: str) -> tuple:
        async def prepare() -> str:
            await encoded[name].wait()
            return name

        async def nothing(*_: object) -> None:
            pass

        return prepare, nothing, nothing

    async def encoder_takes(seconds: float, name: str) -> None:
        now[0] += seconds
        encoded[name].set()

    pipeline: InOrderPipeline[str] = InOrderPipeline(depth=2)
    await pipeline.submit(*stages("a"))  # a slot was free: no wait
    assert pipeline.full_seconds() == 0.0
    busy = asyncio.ensure_future(encoder_takes(2.5, "a"))  # runs while the next submit waits for a
    await pipeline.submit(*stages("b"))
    assert pipeline.full_seconds() == 2.5
    second = asyncio.ensure_future(encoder_takes(1.5, "b"))
    await pipeline.submit(*stages("c"))
    assert pipeline.full_seconds() == 4.0  # both waits, and nothing else
    last = asyncio.ensure_future(encoder_takes(3.0, "c"))  # runs while drain waits for c
    await pipeline.drain()
    await asyncio.gather(busy, second, last)
    assert now[0] == 1007.0 and pipeline.full_seconds() == 4.0  # drain's wait is not a full pipeline's


async def test_a_failed_batch_stops_every_later_one_from_taking_effect() -> None:
    batches = Recorder({"a": 0.03, "b": 0.0, "c": 0.0}, fail_prepare="a")
    pipeline: InOrderPipeline[str] = InOrderPipeline(depth=4)
    await pipeline.submit(*batches.stages("a"))
    await pipeline.submit(*batches.stages("b"))
    await pipeline.submit(*batches.stages("c"))
    with pytest.raises(RuntimeError, match="a failed"):
        await pipeline.drain()
    await asyncio.sleep(0.01)
    assert not [e for e in batches.log if e[0] in ("stored", "acked")]  # b and c were ready, and left unacknowledged
    await pipeline.cancel()


async def test_the_failure_reaches_the_next_submit() -> None:
    batches = Recorder({"a": 0.0, "b": 0.0}, fail_prepare="a")
    pipeline: InOrderPipeline[str] = InOrderPipeline(depth=2)
    await pipeline.submit(*batches.stages("a"))
    await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="a failed"):
        await pipeline.submit(*batches.stages("b"))
    assert pipeline.in_flight == 0


async def test_a_batch_behind_a_failed_one_is_abandoned() -> None:
    batches = Recorder({"a": 0.02, "b": 0.0}, fail_prepare="a")
    pipeline: InOrderPipeline[str] = InOrderPipeline(depth=5)
    await pipeline.submit(*batches.stages("a"))
    await pipeline.submit(*batches.stages("b"))
    second = pipeline._inflight[1]
    await asyncio.wait([second])
    assert isinstance(second.exception(), Abandoned)


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        InOrderPipeline(0)
