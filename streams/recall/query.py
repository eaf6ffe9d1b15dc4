"""Recall for recommendation services: user-to-item and item-to-item over the fresh Milvus data.

`Recall` is the query logic (filters, exclusions, multi-interest merge); `streams.recall.api` serves
it over HTTP (aiohttp), `streams.recall.client` calls that HTTP API. Consistency is the caller's choice: `Strong`
(or `Session` from the writing client) gives read-your-writes, so an item upserted a moment ago
can be returned at once; `Bounded` (Milvus's default) may hide writes for up to ~5 s on a server.

Which collections: the live model version's, as the registry names it (`streams.sinks.registry`, re-read
at most every SAIL_VERSION_REFRESH_S). A request takes the version once, so the user's vectors and
the items searched are of one version, and every result carries it (`model_version`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

import numpy as np

from streams.sinks.milvus import Consistency, MilvusSink, milvus_string, milvus_strings
from streams.sinks.registry import Versions
from topology.codec import DEFAULT_LIMITS, BadInput, check_identifier
from topology.settings import Settings
from topology.collections import CANARY, VECTOR_FIELD, CollectionSpec, user_key

CONSISTENCY_LEVELS = ("Strong", "Session", "Bounded", "Eventually")
ITEM_FIELDS = ["creator_id", "created_at_ms", "model_version"]


class RecallError(ValueError):
    """A request that cannot be answered as asked (unknown user or item, bad parameter)."""

    def __init__(self, status: Literal[400, 404], message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Recalled:
    item_id: str
    score: float
    creator_id: str
    created_at_ms: int
    model_version: str




def _filter(created_after_ms: int | None, exclude_creator: str | None, exclude_items: list[str]) -> str:
    clauses = [f"creator_id != {milvus_string(CANARY)}"]
    if created_after_ms is not None:
        clauses.append(f"created_at_ms >= {int(created_after_ms)}")
    if exclude_creator:
        clauses.append(f"creator_id != {milvus_string(exclude_creator)}")
    if exclude_items:
        clauses.append(f"item_id not in {milvus_strings(sorted(set(exclude_items)))}")
    return " and ".join(clauses)


def _ids(what: str, values: list[str]) -> list[str]:
    """`values` if each is an identifier the codec accepts (so it can be stored, and filtered on).

    Raises:
        RecallError: 400 naming the bad one.
    """
    try:
        return [check_identifier(v, what, DEFAULT_LIMITS.max_id_bytes) for v in values]
    except BadInput as exc:
        raise RecallError(400, exc.detail) from exc


class Recall:
    """Queries over the live version's `items` and `users` collections through one `MilvusSink`."""

    def __init__(self, sink: MilvusSink, items: CollectionSpec, users: CollectionSpec, slots: int, versions: Versions | None = None) -> None:
        self._sink = sink
        self._items = items
        self._users = users
        self._slots = slots
        self._versions = versions  # None: always `items` and `users`

    @classmethod
    def for_settings(cls, sink: MilvusSink, settings: Settings) -> Recall:
        """Recall over whatever version the registry names live (the settings' collections without one)."""
        items, users = settings.collections()
        return cls(sink, items, users, settings.interest_slots, Versions(sink, *settings.registry(), max_age_s=settings.version_refresh_s))

    async def _live(self) -> tuple[CollectionSpec, CollectionSpec]:
        if self._versions is None:
            return self._items, self._users
        return (await self._versions.current()).live.specs(self._items, self._users)

    async def _get(self, collection: str, keys: list[str], fields: list[str]) -> list[dict]:
        """Rows by key, read again (twice at most) while some are missing: on Milvus Lite a Strong get
        racing an upsert of the same key can miss the row (measured: 351 of 3,590 gets of 20 keys
        rewritten continuously; 9 after one re-read), which made an active user's recall a 404."""
        rows = await self._sink.get(collection, keys, fields=fields)
        for _ in range(2):
            if len(rows) >= len(keys):
                break
            await asyncio.sleep(0.005)
            rows = await self._sink.get(collection, keys, fields=fields)
        return rows

    def _check(self, k: int, dim: int | None, consistency: str, items: CollectionSpec) -> Consistency:
        if not 1 <= k <= 1000:
            raise RecallError(400, f"k must be 1..1000, got {k}")
        if dim is not None and dim != items.dim:
            raise RecallError(400, f"the items collection stores only the full {items.dim}-dim vector; a Matryoshka prefix of {dim} is not indexed")
        if consistency not in CONSISTENCY_LEVELS:
            raise RecallError(400, f"consistency must be one of {', '.join(CONSISTENCY_LEVELS)}")
        return consistency  # type: ignore[return-value]

    async def _search(self, items: CollectionSpec, vectors: np.ndarray, k: int, filter_expr: str, consistency: Consistency) -> list[Recalled]:
        hits = await self._sink.search(items.name, vectors, limit=k, vector_field=VECTOR_FIELD, output_fields=ITEM_FIELDS, filter_expr=filter_expr, consistency=consistency)
        best: dict[str, Recalled] = {}
        for per_query in hits:  # several interest slots: keep each item's best score
            for hit in per_query:
                if hit.id not in best or best[hit.id].score < hit.score:
                    best[hit.id] = Recalled(hit.id, round(hit.score, 6), str(hit.fields.get("creator_id", "")), int(hit.fields.get("created_at_ms", 0)),
                                            str(hit.fields.get("model_version", "")))  # fmt: skip
        return sorted(best.values(), key=lambda r: (-r.score, r.item_id))[:k]

    async def user_to_item(
        self, user_id: str, k: int = 10, created_after_ms: int | None = None, exclude_creator: str | None = None,
        exclude_items: list[str] | None = None, dim: int | None = None, consistency: str = "Bounded",
    ) -> list[Recalled]:  # fmt: skip
        """Top-k items for the user's interest vector(s), without the items in their recent history.

        Raises:
            RecallError: unknown user (404) or a bad parameter (400).
        """
        items, users = await self._live()
        level = self._check(k, dim, consistency, items)
        _ids("user_id", [user_id])
        _ids("exclude", list(exclude_items or []))
        _ids("exclude_creator", [exclude_creator] if exclude_creator else [])
        keys = [user_key(user_id, slot) for slot in range(self._slots)]
        rows = await self._get(users.name, keys, [VECTOR_FIELD, "recent_item_ids"])
        if not rows:
            raise RecallError(404, f"no interest vector for user {user_id!r} yet")
        seen = [i for row in rows for i in str(row.get("recent_item_ids", "")).split(",") if i]
        vectors = np.stack([np.asarray(row[VECTOR_FIELD], dtype=np.float32) for row in rows])
        return await self._search(items, vectors, k, _filter(created_after_ms, exclude_creator, seen + list(exclude_items or [])), level)

    async def item_to_item(
        self, item_id: str, k: int = 10, created_after_ms: int | None = None, exclude_creator: str | None = None,
        dim: int | None = None, consistency: str = "Bounded",
    ) -> list[Recalled]:  # fmt: skip
        """Top-k items most similar to `item_id` (itself excluded).

        Raises:
            RecallError: unknown item (404) or a bad parameter (400).
        """
        items, _ = await self._live()
        level = self._check(k, dim, consistency, items)
        _ids("item_id", [item_id])
        _ids("exclude_creator", [exclude_creator] if exclude_creator else [])
        rows = await self._get(items.name, [item_id], [VECTOR_FIELD])
        if not rows:
            raise RecallError(404, f"no embedding for item {item_id!r} yet")
        vector = np.asarray(rows[0][VECTOR_FIELD], dtype=np.float32)[None, :]
        return await self._search(items, vector, k, _filter(created_after_ms, exclude_creator, [item_id]), level)
