"""`ItemVectors.warm` reads on a daemon thread of its own: a worker stopping while the broker does not
answer is never held at exit by a read that blocks (the default executor's threads are joined then)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import pytest

from streams.lifecycle.registry import Versions
from streams.ops.metrics import Metrics
from streams.retry import Retry
from streams.sinks.milvus import MilvusSink
from streams.worker.items import ItemCache, ItemVectors
from topology.settings import Settings


def _vectors() -> ItemVectors:
    s = Settings()
    sink = MilvusSink("http://127.0.0.1:1", None, "lite")  # never started: nothing here reads Milvus
    metrics = Metrics()
    return ItemVectors(ItemCache(10), sink, Versions(sink, *s.registry()), Retry(metrics, 1.0), s.limits())


async def test_a_read_that_blocks_is_left_on_a_daemon_thread_when_the_warm_up_is_cancelled() -> None:
    release = threading.Event()

    def blocked() -> Iterator[list[bytes]]:
        release.wait(30)  # kafka-python waiting on a broker that does not answer
        yield []

    task = asyncio.create_task(_vectors().warm(blocked()))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    readers = [t for t in threading.enumerate() if t.is_alive() and t.name == "item-cache-warm"]
    assert readers and all(t.daemon for t in readers)
    release.set()


async def test_what_the_read_raises_is_raised_by_the_warm_up() -> None:
    def failing() -> Iterator[list[bytes]]:
        yield []
        raise ConnectionError("no broker")

    with pytest.raises(ConnectionError, match="no broker"):
        await _vectors().warm(failing())


def test_a_reader_that_outlives_its_loop_ends_quietly() -> None:
    """The worker stops (its loop closes, cancelling the hand-over the reader waits on) while the reader
    is still handing chunks over: the thread ends without an exception (CI printed one at exit)."""
    release = threading.Event()

    def chunks() -> Iterator[list[bytes]]:
        release.wait(30)
        yield from ([] for _ in range(2))  # what the hand-over queue holds: the end-of-read hand-over waits

    caught: list[BaseException | None] = []
    readers: list[threading.Thread] = []
    previous, before = threading.excepthook, set(threading.enumerate())
    threading.excepthook = lambda args: caught.append(args.exc_value)
    try:

        async def go() -> None:
            task = asyncio.create_task(_vectors().warm(chunks()))
            await asyncio.sleep(0.2)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            readers.extend(t for t in set(threading.enumerate()) - before if t.name == "item-cache-warm")
            release.set()
            await asyncio.sleep(0.3)  # the reader fills the queue; its last hand-over waits on this loop

        asyncio.run(go())  # closing the loop cancels that hand-over
        for reader in readers:
            reader.join(5)
    finally:
        threading.excepthook = previous
    assert readers and not any(r.is_alive() for r in readers)
    assert caught == []
