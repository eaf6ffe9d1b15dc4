"""The worker's one retry policy: jittered exponential backoff while a dependency is down, and an
immediate stop when the worker shuts down.

The clients under it (Triton, Milvus, Kafka) try each request once, so this is the only place a
failed operation is tried again. While an agent retries, it holds its batch and pulls nothing new
(backpressure); on shutdown every retry loop ends at once and its batch stays unacknowledged, so it
is redone after the restart.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError

from encoders.client import EncoderUnavailable
from streams.ops.metrics import Metrics
from streams.sinks.milvus import MilvusUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT = (EncoderUnavailable, MilvusUnavailable, KafkaError, asyncio.TimeoutError)
FIRST_PAUSE_S = 0.1


class ShuttingDown(Exception):
    """The worker is stopping: the batch in hand is left unacknowledged, to be redone after a restart."""


def backoff_s(attempt: int, first_s: float, max_s: float) -> float:
    """The pause before try `attempt + 1`: `first_s` doubled per attempt, at most `max_s`."""
    return min(first_s * 2.0 ** min(attempt, 62), max_s)


def equal_jitter(seconds: float, rng: random.Random | None = None) -> float:
    """A pause drawn between half and all of `seconds` ("equal jitter"), so workers that failed
    together do not come back together."""
    return seconds * (rng or random).uniform(0.5, 1.0)


class Retry:
    """Retries for one worker; `begin_shutdown` ends every loop at once."""

    def __init__(self, metrics: Metrics, max_s: float) -> None:
        self.metrics = metrics
        self.max_s = max_s
        self.stopping = asyncio.Event()

    def begin_shutdown(self) -> None:
        """Stop every retry loop now (called before Faust waits for the agents to finish their batches)."""
        self.stopping.set()

    async def unless_stopping(self, operation: Awaitable[T]) -> T:
        """`operation`, abandoned (cancelled) as soon as shutdown begins.

        Raises:
            ShuttingDown: the worker is stopping.
        """
        if self.stopping.is_set():
            if asyncio.iscoroutine(operation):
                operation.close()  # never started
            raise ShuttingDown
        work = asyncio.ensure_future(operation)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            done, _ = await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            work.cancel()
            raise
        finally:
            stop.cancel()
        if work not in done:
            work.cancel()
            raise ShuttingDown
        return work.result()

    async def retrying(self, dependency: str, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` until it succeeds, backing off on dependency failures (never drops).

        The pause doubles from `FIRST_PAUSE_S` up to `max_s`, with equal jitter. A busy encoder (it
        refused the request before computing it) is waited for the same way but not counted as down.

        Raises:
            ShuttingDown: the worker began to stop; the operation may or may not have taken effect.
        """
        attempt = 0
        while True:
            try:
                result = await self.unless_stopping(operation())
            except TRANSIENT as exc:
                pause = equal_jitter(backoff_s(attempt, FIRST_PAUSE_S, self.max_s))
                if isinstance(exc, EncoderUnavailable) and exc.busy:  # refused before it was computed: at capacity, not down
                    logger.info("encoder busy, retrying what=%s in %.2fs", what, pause)
                else:
                    self.metrics.dependency_errors.labels(dependency).inc()
                    self.metrics.dependency_up.labels(dependency).set(0)
                    logger.warning(
                        "dependency down, retrying dependency=%s what=%s in %.2fs error=%s",
                        dependency,
                        what,
                        pause,
                        str(exc).splitlines()[0][:200],
                    )
                try:
                    await asyncio.wait_for(self.stopping.wait(), timeout=pause)
                except TimeoutError:
                    pass
                attempt += 1
                continue
            self.metrics.dependency_up.labels(dependency).set(1)
            return result
