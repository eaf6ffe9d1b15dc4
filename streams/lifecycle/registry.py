"""The model-version registry in Milvus (`topology.versions`): read, cached, written.

Workers and the recall API read it through `Versions.current()`, at most `max_age_s` old, so a swap
reaches every reader within about that long; a registry that cannot be read keeps the last one known
(a Milvus outage does not switch anybody back to the default). A deployment without the registry
collection, or without its row, runs the default: the settings' collections and the workers' encoder.
"""

from __future__ import annotations

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

    @property
    def known(self) -> Registry:
        """The registry as last read (no I/O)."""
        return self._known

    @property
    def due(self) -> bool:
        """Never read, or the last read is older than `max_age_s`: `current()` would read Milvus (no I/O)."""
        return self._read_at is None or self._clock() - self._read_at >= self.max_age_s

    @property
    def ever_read(self) -> bool:
        return self._read_at is not None

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
