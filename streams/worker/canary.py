"""The freshness canary: a probe item written to Milvus, timed until a recall search at the recall
consistency level returns it (`sail_item_freshness_seconds{stage="searchable"}`), then deleted."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from streams.retry import ShuttingDown
from streams.sinks.milvus import MilvusUnavailable
from streams.worker.context import Context
from topology.collections import CANARY, VECTOR_FIELD, item_row

logger = logging.getLogger(__name__)


class FreshnessCanary:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def probe(self) -> None:
        """One probe; abandoned when the worker begins to stop (the clients close under it)."""
        try:
            await self.ctx.retry.unless_stopping(self._probe())
        except ShuttingDown:
            return

    async def _probe(self) -> None:
        ctx = self.ctx
        items = (await ctx.live()).items
        canary = f"{CANARY}-{ctx.settings.worker_web_port}"
        vector = np.random.default_rng().standard_normal(items.dim).astype(np.float32)
        vector /= np.linalg.norm(vector)
        written = time.time()
        row = item_row(canary, CANARY, int(written * 1000), int(written * 1000), "canary", vector)
        try:
            await ctx.sink.upsert(items.name, [row])
            deadline = written + 30
            while time.time() < deadline:
                hits = await ctx.sink.search(
                    items.name, vector[None, :], limit=1, vector_field=VECTOR_FIELD, consistency=ctx.settings.recall_consistency
                )
                if hits and hits[0] and hits[0][0].id == canary:
                    ctx.metrics.observe_item_freshness(time.time() - written, stage="searchable")
                    break
                await asyncio.sleep(0.05)
            await ctx.sink.delete(items.name, [canary])
            ctx.metrics.dependency_up.labels("milvus").set(1)
        except MilvusUnavailable as exc:
            ctx.metrics.dependency_errors.labels("milvus").inc()
            ctx.metrics.dependency_up.labels("milvus").set(0)
            logger.warning("freshness probe failed: %s", str(exc).splitlines()[0][:200])
