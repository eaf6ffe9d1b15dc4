"""The model-version registry in Milvus (`topology.versions`): read, cached, written.

Workers (on a timer) read it through `Versions.current()` and the recall API (per request, never waiting
once it has one) through `Versions.latest()`, at most about `max_age_s` old, so a swap
reaches every reader within about that long; a registry that cannot be read keeps the last one known
(a Milvus outage does not switch anybody back to the default). A deployment without the registry
collection, or without its row, runs the default: the settings' collections and the workers' encoder.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable

from streams.sinks.milvus import MilvusSink, MilvusUnavailable, collection_missing
from topology.collections import CollectionSpec
from topology.versions import REGISTRY_KEY, Registry, registry_row

logger = logging.getLogger(__name__)


class Versions:
    def __init__(
        self,
        sink: MilvusSink,
        spec: CollectionSpec,
        default: Registry,
        max_age_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._spec = spec
        self.default = default
        self.max_age_s = max_age_s
        self._clock = clock
        self._known = default
        self._read_at: float | None = None
        self._warned_at = -1e9
        self._refresh: asyncio.Task[Registry] | None = None  # `latest()`'s re-read in the background

    @property
    def known(self) -> Registry:
        """The registry as last read (no I/O)."""
        return self._known

    async def read(self) -> Registry:
        """The registry row now (read-your-writes); the default when there is none.

        Raises:
            MilvusUnavailable: Milvus did not answer.
        """
        try:
            rows = await self._sink.get(self._spec.name, [REGISTRY_KEY], ["state"])
        except MilvusUnavailable as exc:
            if collection_missing(exc):
                return self.default
            raise
        return Registry.decode(str(rows[0]["state"])) if rows else self.default

    async def latest(self) -> Registry:
        """The registry without waiting for Milvus once it has been read: the one last read, while a re-read,
        when due (`max_age_s`), runs in the background, one at a time; the first call waits for its read. For
        request paths (recall): the registry's get is Strong, ~200 ms on a server at its default time tick."""
        if self._read_at is None:
            return await self.current()
        if self._clock() - self._read_at >= self.max_age_s and (self._refresh is None or self._refresh.done()):
            # a context of its own: the re-read belongs to no request (one request's `timed_calls` would count it)
            self._refresh = asyncio.create_task(self.current(), context=contextvars.Context())
        return self._known

    async def current(self) -> Registry:
        """The registry, re-read when the last read is older than `max_age_s`; the last one known
        while Milvus cannot be read (warned about at most once a minute)."""
        now = self._clock()
        if self._read_at is not None and now - self._read_at < self.max_age_s:
            return self._known
        try:
            registry = await self.read()
        except (MilvusUnavailable, ValueError) as exc:
            self._read_at = now  # tried again after max_age_s, not by every caller meanwhile
            if now - self._warned_at >= 60:
                self._warned_at = now
                logger.warning(
                    "cannot read the model-version registry, keeping live=%s: %s",
                    self._known.live.model_version or "(default)",
                    str(exc).splitlines()[0][:200],
                )
            return self._known
        if registry.generation != self._known.generation or registry.live != self._known.live:
            logger.warning(
                "model-version registry generation %d: live %s (%s, %s)",
                registry.generation,
                registry.live.model_version or "(default)",
                registry.live.items,
                registry.live.users,
            )
        self._known, self._read_at = registry, now
        return registry

    async def write(self, registry: Registry) -> None:
        """Replace the registry row (one upsert: readers see the old registry or this one).

        Raises:
            MilvusUnavailable: the write failed.
        """
        await self._sink.upsert(self._spec.name, [registry_row(registry)])
        self._known, self._read_at = registry, self._clock()
