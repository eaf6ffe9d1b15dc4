"""Semantic-ID codebooks in Milvus (`topology.collections.codebook_collection`): saved by
`sail-stream sid fit`, loaded by every worker, cached by id (a codebook never changes once saved: a
refit is a new id). Also the one read the collision suffix needs: who already holds a bucket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streams.sid.maths import Codebook, Health, suffixes
from streams.sinks.milvus import MilvusSink, MilvusUnavailable, collection_missing, milvus_string, milvus_strings
from topology.collections import VECTOR_FIELD, CollectionSpec, SemanticId, codebook_rows

_UPSERT_ROWS = 256


class CodebookMissing(RuntimeError):
    """The registry names a codebook whose rows are not in its collection."""


def codebook_meta(codebook: Codebook) -> str:
    """A codebook's description (everything but the centroids) as stored in its level -1 row."""
    h = codebook.health
    return json.dumps(
        {
            "codebook_id": codebook.codebook_id,
            "model_version": codebook.model_version,
            "levels": codebook.levels,
            "codes": codebook.codes,
            "dim": codebook.dim,
            "seed": codebook.seed,
            "fitted_at_ms": codebook.fitted_at_ms,
            "health": {
                "items": h.items,
                "utilisation": list(h.utilisation),
                "collision_rate": h.collision_rate,
                "quantisation_error": h.quantisation_error,
            },
        },
        sort_keys=True,
    )


def codebook_from_rows(rows: Sequence[Mapping[str, Any]]) -> Codebook:
    """The codebook stored in `rows` (its meta row and L x K centroid rows).

    Raises:
        CodebookMissing: the meta row or a centroid is missing.
    """
    meta_rows = [r for r in rows if int(r["level"]) < 0]
    if not meta_rows:
        raise CodebookMissing("no description row")
    meta = json.loads(str(meta_rows[0]["meta"]))
    levels, codes, dim = int(meta["levels"]), int(meta["codes"]), int(meta["dim"])
    centroids = np.full((levels, codes, dim), np.nan, dtype=np.float32)
    for r in rows:
        level = int(r["level"])
        if level >= 0:
            centroids[level, int(r["code"])] = np.asarray(r[VECTOR_FIELD], dtype=np.float32)
    if np.isnan(centroids).any():
        raise CodebookMissing(f"{int(np.isnan(centroids[:, :, 0]).sum())} of {levels * codes} centroids missing")
    h = meta["health"]
    health = Health(
        int(h["items"]), tuple(float(u) for u in h["utilisation"]), float(h["collision_rate"]), float(h["quantisation_error"])
    )
    return Codebook(
        str(meta["codebook_id"]), str(meta["model_version"]), centroids, int(meta["seed"]), int(meta["fitted_at_ms"]), health
    )


class Codebooks:
    """Codebooks read through one `MilvusSink`, cached by (collection, codebook id)."""

    def __init__(self, sink: MilvusSink) -> None:
        self._sink = sink
        self._cache: dict[tuple[str, str], Codebook] = {}

    async def save(self, spec: CollectionSpec, codebook: Codebook) -> None:
        """Write every row of `codebook` into `spec` (its model version's codebooks collection).

        Raises:
            MilvusUnavailable: a write failed (a retry rewrites the same rows).
        """
        rows = codebook_rows(codebook.codebook_id, codebook.centroids, codebook_meta(codebook))
        for start in range(0, len(rows), _UPSERT_ROWS):
            await self._sink.upsert(spec.name, rows[start : start + _UPSERT_ROWS])
        self._cache[(spec.name, codebook.codebook_id)] = codebook

    async def load(self, spec: CollectionSpec, codebook_id: str) -> Codebook:
        """The codebook `codebook_id` of `spec` (cached after the first read).

        Raises:
            MilvusUnavailable: Milvus did not answer.
            CodebookMissing: its rows are not there.
        """
        key = (spec.name, codebook_id)
        if key not in self._cache:
            try:
                rows = await self._sink.query(
                    spec.name, f"codebook_id == {milvus_string(codebook_id)}", ["level", "code", "meta", VECTOR_FIELD]
                )
            except MilvusUnavailable as exc:
                if collection_missing(exc):  # dropped: no retry brings it back
                    raise CodebookMissing(f"codebook {codebook_id}: its collection {spec.name} does not exist") from exc
                raise
            try:
                self._cache[key] = codebook_from_rows(rows)
            except CodebookMissing as exc:
                raise CodebookMissing(f"codebook {codebook_id} in {spec.name}: {exc}") from exc
        return self._cache[key]

    async def holders(self, items: CollectionSpec, codebook_id: str, sids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Who holds each of the buckets `sids` under `codebook_id` now: sid -> {item_id: suffix}.

        Raises:
            MilvusUnavailable: the read failed.
        """
        wanted = sorted(set(sids))
        if not wanted:
            return {}
        rows = await self._sink.query(
            items.name,
            f"sid_codebook == {milvus_string(codebook_id)} and sid_codes in {milvus_strings(wanted)}",
            ["item_id", "sid_codes", "sid_suffix"],
        )
        found: dict[str, dict[str, int]] = {}
        for row in rows:
            found.setdefault(str(row["sid_codes"]), {})[str(row["item_id"])] = int(row["sid_suffix"])
        return found

    async def semantic_ids(
        self, items: CollectionSpec, codebook: Codebook, item_ids: Sequence[str], sids: Sequence[str]
    ) -> list[SemanticId]:
        """The semantic ID of each item (`item_ids[i]` with codes `sids[i]`, `sid_text`): its collision
        suffix among who holds its bucket now (`holders`) and the items before it here (`suffixes`).
        The one way the workers and the backfill give an ID.

        Raises:
            MilvusUnavailable: the read of the buckets failed.
        """
        holders = await self.holders(items, codebook.codebook_id, sids)
        found = suffixes(list(zip(item_ids, sids)), holders)
        return [SemanticId(sid, suffix, codebook.codebook_id) for sid, suffix in zip(sids, found)]
