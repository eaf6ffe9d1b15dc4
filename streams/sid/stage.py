"""Semantic IDs for fresh items, in the content agent's store stage (issue 18).

A batch's vectors get their L codes from the live version's codebook (`Version.codebook`, loaded
once from Milvus and cached), then their collision suffixes from one Milvus read of who already holds
those buckets. The rows, the item-embeddings records and the vectors go out together, so an item has
its semantic ID the moment it has its vector. Without a live codebook items are stored without one
(`sail-stream sid backfill` gives them theirs once a codebook exists).

The fresh items' quantisation error is watched against the codebook's own: when their mean over the
last 500 exceeds the fitted error by SAIL_SID_DRIFT_RATIO, the worker warns (and the status page
says) that the codebook needs refitting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from streams.ops.metrics import Metrics
from streams.retry import Retry
from streams.sid.codebooks import CodebookMissing, Codebooks
from streams.sid.maths import Codebook, DriftWindow, assign, sid_text
from streams.sinks.milvus import MilvusSink
from topology.collections import NO_SID, CollectionSpec, SemanticId
from topology.versions import Version

logger = logging.getLogger(__name__)


class SemanticIds:
    """The content agent's semantic-ID stage of one worker: its codebook cache, drift watch and metrics."""

    def __init__(self, sink: MilvusSink, retry: Retry, metrics: Metrics, drift_ratio: float) -> None:
        self.retry = retry
        self.metrics = metrics
        self.drift_ratio = drift_ratio
        self.codebooks = Codebooks(sink)
        self._drift: dict[str, DriftWindow] = {}
        self._drifting: set[str] = set()
        self._warned_at = -1e9
        self.codebook: Codebook | None = None  # the one the last batch used

    async def _codebook(self, version: Version) -> Codebook | None:
        codebook_id = version.codebook
        if not codebook_id:
            return None
        try:
            return await self.retry.retrying(
                "milvus", f"load codebook {codebook_id}", lambda: self.codebooks.load(version.codebooks(), codebook_id)
            )
        except CodebookMissing as exc:
            now = time.monotonic()
            if now - self._warned_at >= 60:
                self._warned_at = now
                logger.error(
                    "the live version names a codebook that cannot be read, items are stored without semantic IDs (run "
                    "sail-stream sid fit): %s",
                    exc,
                )
            return None

    async def assign(self, version: Version, items_spec: CollectionSpec, items: Sequence[tuple[str, Any]]) -> list[SemanticId]:
        """The semantic ID of each (item_id, vector) of one batch of `version`, stored in `items_spec`, in
        order (`NO_SID` without a codebook)."""
        metrics = self.metrics
        codebook = await self._codebook(version) if items else None
        if codebook is None:
            metrics.sid_assigned.labels("none").inc(len(items))
            return [NO_SID] * len(items)
        self._note_codebook(codebook)
        began = time.perf_counter()
        codes, errors = assign(codebook, np.stack([np.asarray(v, dtype=np.float32) for _, v in items]))
        texts = [sid_text(c) for c in codes]
        metrics.sid_seconds.labels("codes").inc(time.perf_counter() - began)
        began = time.perf_counter()
        ids = [item_id for item_id, _ in items]
        found = await self.retry.retrying(
            "milvus", "read semantic-ID buckets", lambda: self.codebooks.semantic_ids(items_spec, codebook, ids, texts)
        )
        metrics.sid_seconds.labels("lookup").inc(time.perf_counter() - began)
        for sid in found:
            metrics.sid_assigned.labels("collision" if sid.suffix > 0 else "unique").inc()
        self._watch(codebook, errors)
        return found

    def _note_codebook(self, codebook: Codebook) -> None:
        if self.codebook is not None and self.codebook.codebook_id == codebook.codebook_id:
            return
        self.codebook = codebook
        metrics = self.metrics
        metrics.sid_error.labels("fitted").set(codebook.health.quantisation_error)
        metrics.sid_collision_rate.set(codebook.health.collision_rate)
        metrics.sid_utilisation.clear()
        for level, share in enumerate(codebook.health.utilisation):
            metrics.sid_utilisation.labels(str(level)).set(share)
        logger.info(
            "semantic IDs from codebook %s (%d levels x %d codes, fitted on %d items, quantisation error %.4f)",
            codebook.codebook_id,
            codebook.levels,
            codebook.codes,
            codebook.health.items,
            codebook.health.quantisation_error,
        )

    def _watch(self, codebook: Codebook, errors: Any) -> None:
        window = self._drift.setdefault(codebook.codebook_id, DriftWindow(codebook.health.quantisation_error, self.drift_ratio))
        window.add(float(e) for e in errors)
        drift = window.drift()
        if drift.fresh_error is not None:
            self.metrics.sid_error.labels("fresh").set(drift.fresh_error)
        if drift.ratio is not None:
            self.metrics.sid_drift.set(drift.ratio)
        if drift.drifting and codebook.codebook_id not in self._drifting:
            self._drifting.add(codebook.codebook_id)
            logger.warning(
                "codebook %s drifts: fresh items' quantisation error %.4f is %.2fx the fitted %.4f over the last %d items; "
                "refit it (sail-stream sid fit, then sid backfill)",
                codebook.codebook_id,
                drift.fresh_error,
                drift.ratio,
                drift.fitted_error,
                drift.items,
            )
        elif not drift.drifting:
            self._drifting.discard(codebook.codebook_id)

    def status(self) -> dict[str, object]:
        """The status page's semantic-ID section: the codebook in use and its health, fitted and fresh."""
        book = self.codebook
        if book is None:
            return {"codebook": None}
        drift = self._drift[book.codebook_id].drift() if book.codebook_id in self._drift else None
        return {
            "codebook": book.codebook_id,
            "levels": book.levels,
            "codes": book.codes,
            "fitted_items": book.health.items,
            "utilisation": list(book.health.utilisation),
            "collision_rate": book.health.collision_rate,
            "quantisation_error": book.health.quantisation_error,
            "fresh_quantisation_error": drift.fresh_error if drift else None,
            "drift_ratio": drift.ratio if drift else None,
            "drifting": bool(drift and drift.drifting),
            "fresh_items": drift.items if drift else 0,
        }
