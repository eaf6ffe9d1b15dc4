"""Several micro-batches in flight with effects in order: the content agent's pipeline.

    batch k:    prepare (decode, media, encode) ───────► store (upsert, publish) ► acknowledge
    batch k+1:        prepare ────────────────────► (waits for k) store ► acknowledge

Batch k+1 is encoded while batch k is stored and published, so the encoder is not left idle while
the worker talks to Milvus and Kafka. What leaves the worker stays in arrival order: a batch's
`store` starts only after every earlier batch's `store` and acknowledgement are done, so a newer
version of an item is never overwritten by an older one in flight beside it, and acknowledgements
(hence Kafka commits) stay contiguous and after the effects, as with one batch at a time.

When a batch fails (the worker is stopping, or a bug), no later batch is stored or acknowledged:
they are redone after the restart like the failed one. The failure reaches the agent at its next
`submit` or at `drain`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Abandoned(Exception):
    """An earlier batch failed, so this one is neither stored nor acknowledged."""


class InOrderPipeline(Generic[T]):
    """Up to `depth` batches in flight: `prepare` runs concurrently, `store` then `acknowledge` in
    submission order."""

    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth = depth
        self._inflight: deque[asyncio.Task[None]] = deque()
        self._full_s = 0.0

    @property
    def in_flight(self) -> int:
        self._forget_done()
        return len(self._inflight)

    async def submit(
        self, prepare: Callable[[], Awaitable[T]], store: Callable[[T], Awaitable[Any]], acknowledge: Callable[[], Awaitable[Any]]
    ) -> None:
        """Start one batch; returns once fewer than `depth` batches are in flight.

        Raises:
            the exception of an earlier batch that failed (the pipeline is then unusable).
        """
        self._raise_failure()
        previous = self._inflight[-1] if self._inflight else None
        self._inflight.append(asyncio.ensure_future(self._run(prepare, store, acknowledge, previous)))
        while len(self._inflight) >= self.depth:
            loop = asyncio.get_running_loop()
            began = loop.time()
            await asyncio.wait([self._inflight[0]])
            self._full_s += loop.time() - began
            self._raise_failure()

    def full_seconds(self) -> float:
        """Total time `submit` waited for a free slot (the encoder or the sinks were the bottleneck)."""
        return self._full_s

    async def drain(self) -> None:
        """Wait for every batch in flight.

        Raises:
            the exception of a batch that failed.
        """
        while self._inflight:
            await asyncio.wait([self._inflight[0]])
            self._raise_failure()

    async def cancel(self) -> None:
        """Cancel every batch in flight (none is acknowledged after this)."""
        for task in self._inflight:
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        self._inflight.clear()

    def _forget_done(self) -> None:
        while (
            self._inflight
            and self._inflight[0].done()
            and not self._inflight[0].cancelled()
            and self._inflight[0].exception() is None
        ):
            self._inflight.popleft()

    def _raise_failure(self) -> None:
        self._forget_done()
        if self._inflight and self._inflight[0].done():
            failed = self._inflight.popleft()
            for task in self._inflight:
                task.cancel()  # never stored nor acknowledged: redone after the restart
            self._inflight.clear()
            if failed.cancelled():
                raise asyncio.CancelledError
            exception = failed.exception()
            assert exception is not None
            raise exception

    @staticmethod
    async def _run(
        prepare: Callable[[], Awaitable[T]],
        store: Callable[[T], Awaitable[Any]],
        acknowledge: Callable[[], Awaitable[Any]],
        previous: asyncio.Task[None] | None,
    ) -> None:
        prepared = await prepare()
        if previous is not None:
            await asyncio.wait([previous])
            if previous.cancelled() or previous.exception() is not None:
                raise Abandoned("an earlier batch failed")
        await store(prepared)
        await acknowledge()
