"""Recall for recommendation services: user-to-item and item-to-item over the fresh Milvus data.

`Recall` is the query logic (filters, exclusions, multi-interest merge); `streams.recall.api` serves
it over HTTP (aiohttp), `streams.recall.client` calls that HTTP API. Consistency is the caller's choice: `Strong`
(or `Session` from the writing client) gives read-your-writes, so an item upserted a moment ago
can be returned at once; `Bounded` (Milvus's default) may hide writes for up to ~5 s on a server. The level
applies to every read of a request: the user's interest vector (or the query item's) as well as the search,
and a key missing at a weaker level is read again at Strong, so a new user or item is found at once. On the
server a Strong read waits for its next time tick (~200 ms, measured), a Bounded one does not (~4 ms).

Channels (`channel=`): `dense` searches the vectors; `sid` takes the items whose semantic IDs share a
prefix with those of the user's recent positives (or of the item), deepest prefixes first, scored by
`streams.sid.maths.sid_scores`; `mixed` fuses both lists by reciprocal rank (`fuse`). The sid channel
needs the live version's codebook (`sail-stream sid fit`): without one it answers 409.

Which collections: the live model version's, as the registry names it (`streams.lifecycle.registry`, re-read
at most every SAIL_VERSION_REFRESH_S). A request takes the version once, before it reads anything, so
the user's vectors and the items searched come from one version's pair of collections.

Which versions (issue 30): a collection's name does not prove what its rows hold (without a registry,
an encoder changed without a re-embed writes its new version into the same collection), so the
search is limited to items of the query vector's own `model_version` (the users row's, every slot;
or the query item's row), and that version is compared with the registry's live one when it names
one; every item returned is checked again. A mismatch is refused, never served: `VersionMismatch`, a `RecallError` with
status 409 and reason `model_version.mismatch` (the API answers 409 with both versions). Refused
rather than retried: the registry is read once per request before both reads, so no registry change
can fall between the user's read and the search; a mismatch means a row stored in one version's
collection from another version's vectors, which a retry would read again. Every result carries both
versions, `model_version` (the item's) and `query_model_version` (the query vector's), equal in every
answer served, so clients and `bench.reembed` can check them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

import numpy as np

from streams.collab.maths import dimension, dot, fused_scores, search_vector, swap
from streams.lifecycle.registry import Versions
from streams.sid.maths import fuse, parse_sid, prefix_text, sid_scores
from streams.sinks.milvus import Consistency, MilvusSink, milvus_string, milvus_strings
from topology.codec import DEFAULT_LIMITS, BadInput, check_identifier
from topology.collections import CANARY, COLLAB_COPY, COLLAB_FIELD, VECTOR_FIELD, CollectionSpec, unpack_sparse, user_key
from topology.settings import Settings
from topology.versions import Version

CONSISTENCY_LEVELS: tuple[Consistency, ...] = ("Strong", "Session", "Bounded", "Eventually")
CHANNELS = ("dense", "sid", "mixed", "collab", "fused")
COLLAB_CHANNELS = ("collab", "fused")
FUSED_CANDIDATES = 50  # the fused channel scores the union of each channel's top max(50, 3k) by both
ITEM_FIELDS = ["creator_id", "created_at_ms", "model_version"]
SID_CANDIDATES = 8  # the sid channel reads up to 8 x k items sharing a prefix (at least 200), deepest prefixes first
VERSION_MISMATCH: Final = "model_version.mismatch"  # the reason of a refused query vector of another version

logger = logging.getLogger(__name__)


class RecallError(ValueError):
    """A request that cannot be answered as asked (unknown user or item, bad parameter, a version conflict)."""

    def __init__(self, status: Literal[400, 404, 409], message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason  # a closed set ("" or VERSION_MISMATCH), for clients and dashboards to count


class VersionMismatch(RecallError):
    """The query vector is of another model version than the items it would search (409): refused, never served."""

    def __init__(self, query_model_version: str, model_version: str, message: str) -> None:
        super().__init__(409, message, VERSION_MISMATCH)
        self.query_model_version = query_model_version  # the user's or the query item's vector ("," between several)
        self.model_version = model_version  # the items searched


@dataclass(frozen=True, slots=True)
class Recalled:
    item_id: str
    score: float
    creator_id: str
    created_at_ms: int
    model_version: str
    channel: str = "dense"  # which channel found it: dense, sid, or dense+sid (mixed; `score` is then the fused rank score)
    query_model_version: str = ""  # the query vector's (the user's or the query item's): == model_version in every answer served


def _filter(created_after_ms: int | None, exclude_creator: str | None, exclude_items: list[str], model_version: str) -> str:
    clauses = [f"creator_id != {milvus_string(CANARY)}"]
    if model_version:  # only items of the query vector's version: a collection can hold several
        clauses.append(f"model_version == {milvus_string(model_version)}")
    if created_after_ms is not None:
        clauses.append(f"created_at_ms >= {int(created_after_ms)}")
    if exclude_creator:
        clauses.append(f"creator_id != {milvus_string(exclude_creator)}")
    if exclude_items:
        clauses.append(f"item_id not in {milvus_strings(sorted(set(exclude_items)))}")
    return " and ".join(clauses)


def _query_version(what: str, rows: Sequence[Mapping[str, object]], version: Version, items: CollectionSpec) -> str:
    """The model version of the query rows (a user's interest slots, or one item), which must be one, and
    the version the registry names for `items` when it names one.

    Raises:
        VersionMismatch: the rows are of several versions, or of another than the registry's.
    """
    found = sorted({str(row.get("model_version", "")) for row in rows})
    if len(found) > 1:
        raise _refuse(",".join(found), version.model_version, f"{what}'s vectors are of several model versions")
    query = found[0] if found else ""
    if version.model_version and query != version.model_version:
        raise _refuse(query, version.model_version, f"{what}'s vector in {items.name}")
    return query


def _served(results: list[Recalled], query: str, what: str) -> list[Recalled]:
    """`results`, each with the query vector's version, when every item is of that version.

    Raises:
        VersionMismatch: an item returned is of another version than the query vector.
    """
    others = sorted({r.model_version for r in results} - {query})
    if others:
        raise _refuse(query, ",".join(others), f"items returned for {what}")
    return [replace(r, query_model_version=query) for r in results]


def _refuse(query: str, searched: str, where: str) -> VersionMismatch:
    """The `VersionMismatch` to raise for a query vector of version `query` against items of `searched`, logged."""
    logger.warning("recall refused: model_version mismatch query_model_version=%s model_version=%s (%s)", query, searched, where)
    return VersionMismatch(
        query,
        searched,
        f"model version mismatch ({where}): the query vector is of {query or '(unnamed)'}, the items of "
        f"{searched or '(unnamed)'}; a search across versions is refused",
    )


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

    def __init__(
        self,
        sink: MilvusSink,
        items: CollectionSpec,
        users: CollectionSpec,
        slots: int,
        versions: Versions | None = None,
        positives: int = 10,
        collab: tuple[CollectionSpec, CollectionSpec] | None = None,
        content_weight: float = 0.1,
        channel: str = "dense",
    ) -> None:
        self._sink = sink
        self._items = items
        self._users = users
        self._slots = slots
        self._versions = versions  # None: always `items` and `users`
        self._positives = positives  # recent positives the sid channel matches (SAIL_SID_RECALL_POSITIVES)
        self._collab = collab  # (collab items, collab users); None: the collaborative channels are off
        self._content_weight = content_weight
        self.channel = channel if collab is not None or channel not in COLLAB_CHANNELS else "dense"  # a request's default

    @classmethod
    def for_settings(cls, sink: MilvusSink, settings: Settings) -> Recall:
        """Recall over whatever version the registry names live (the settings' collections without one)."""
        items, users = settings.collections()
        versions = Versions(sink, *settings.registry(), max_age_s=settings.version_refresh_s)
        return cls(
            sink,
            items,
            users,
            settings.interest_slots,
            versions,
            settings.sid_recall_positives,
            settings.collab_collections() if settings.collab_enabled else None,
            settings.recall_content_weight,
            settings.recall_channel,
        )

    async def _live(self) -> tuple[Version, CollectionSpec, CollectionSpec]:
        if self._versions is None:
            return Version("", self._items.name, self._users.name, self._items.dim), self._items, self._users
        version = (await self._versions.latest()).live  # no request waits for a due re-read, only the first
        return version, *version.specs(self._items, self._users)

    async def _get(self, collection: str, keys: list[str], fields: list[str], level: Consistency) -> list[dict]:
        """Rows by key at the request's consistency, read again at Strong (twice at most) while some are
        missing: a row newer than a Bounded read's bound is found that way, and on Milvus Lite a Strong get
        racing an upsert of the same key can miss the row (measured: 351 of 3,590 gets of 20 keys rewritten
        continuously; 9 after one re-read), which made an active user's recall a 404. A Strong read waits for
        the server's next time tick (~200 ms at its default interval, measured); Bounded takes ~4 ms."""
        rows = await self._sink.get(collection, keys, fields=fields, consistency=level)
        for _ in range(2):
            if len(rows) >= len(keys):
                break
            await asyncio.sleep(0.005)
            rows = await self._sink.get(collection, keys, fields=fields)
        return rows

    def _check(
        self, k: int, dim: int | None, consistency: str, items: CollectionSpec, channel: str, version: Version
    ) -> Consistency:
        if channel not in CHANNELS:
            raise RecallError(400, f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
        if channel in COLLAB_CHANNELS and self._collab is None:
            raise RecallError(
                409,
                f"channel={channel} needs the collaborative vectors, which are off here "
                "(SAIL_COLLAB_PAIRS=0, or a Milvus without sparse vectors)",
            )
        if channel in ("sid", "mixed") and not version.codebook:
            raise RecallError(
                409,
                f"channel={channel} needs semantic IDs, and the live version {version.model_version or '(default)'} "
                "has no codebook yet: run sail-stream sid fit (and sid backfill)",
            )
        if not 1 <= k <= 1000:
            raise RecallError(400, f"k must be 1..1000, got {k}")
        if dim is not None and dim != items.dim:
            raise RecallError(
                400,
                f"the items collection stores only the full {items.dim}-dim vector; a Matryoshka prefix of {dim} is not indexed",
            )
        for level in CONSISTENCY_LEVELS:
            if level == consistency:
                return level  # the Literal, not the caller's str
        raise RecallError(400, f"consistency must be one of {', '.join(CONSISTENCY_LEVELS)}")

    async def _search(
        self, items: CollectionSpec, vectors: np.ndarray, k: int, filter_expr: str, consistency: Consistency
    ) -> list[Recalled]:
        hits = await self._sink.search(
            items.name,
            vectors,
            limit=k,
            vector_field=VECTOR_FIELD,
            output_fields=ITEM_FIELDS,
            filter_expr=filter_expr,
            consistency=consistency,
        )
        best: dict[str, Recalled] = {}
        for per_query in hits:  # several interest slots: keep each item's best score
            for hit in per_query:
                if hit.id not in best or best[hit.id].score < hit.score:
                    best[hit.id] = Recalled(
                        hit.id,
                        round(hit.score, 6),
                        str(hit.fields.get("creator_id", "")),
                        int(hit.fields.get("created_at_ms", 0)),
                        str(hit.fields.get("model_version", "")),
                    )
        return sorted(best.values(), key=lambda r: (-r.score, r.item_id))[:k]

    async def _sid_search(
        self, items: CollectionSpec, codebook: str, sources: list[str], k: int, filter_expr: str, consistency: Consistency
    ) -> list[Recalled]:
        """The sid channel: items sharing a semantic-ID prefix with the `sources` (item ids), scored by
        `sid_scores`, ties to the newest. Candidates are read deepest prefix first until there are k."""
        rows = await self._get(items.name, sources, ["sid_codes", "sid_codebook"], consistency) if sources else []
        codes = [parse_sid(str(r["sid_codes"])) for r in rows if r.get("sid_codebook") == codebook and r.get("sid_codes")]
        if not codes:
            return []  # no source item has an ID of the live codebook yet (a backfill gives the older ones theirs)
        known = f"sid_codebook == {milvus_string(codebook)}"
        found: dict[str, dict] = {}
        for depth in range(len(codes[0]), 0, -1):
            prefixes = sorted({prefix_text(c, depth) for c in codes})
            match = (
                " or ".join(f'sid_codes like "{p}%"' for p in prefixes)
                if depth < len(codes[0])
                else f"sid_codes in {milvus_strings(sorted({p[:-1] for p in prefixes}))}"
            )
            batch = await self._sink.query(
                items.name,
                f"{filter_expr} and {known} and ({match})",
                ["item_id", "sid_codes", *ITEM_FIELDS],
                limit=max(SID_CANDIDATES * k, 200),
                consistency=consistency,
            )
            found.update({str(row["item_id"]): row for row in batch})
            if len(found) >= k:
                break
        if not found:
            return []
        ids = list(found)
        scores = sid_scores(
            np.asarray([parse_sid(str(found[i]["sid_codes"])) for i in ids], dtype=np.int32), np.asarray(codes, dtype=np.int32)
        )
        ranked = sorted(range(len(ids)), key=lambda j: (-scores[j], -int(found[ids[j]].get("created_at_ms", 0)), ids[j]))[:k]
        return [
            Recalled(
                ids[j],
                round(float(scores[j]), 6),
                str(found[ids[j]].get("creator_id", "")),
                int(found[ids[j]].get("created_at_ms", 0)),
                str(found[ids[j]].get("model_version", "")),
                "sid",
            )
            for j in ranked
        ]

    async def _channels(
        self,
        channel: str,
        version: Version,
        items: CollectionSpec,
        vectors: np.ndarray,
        sources: list[str],
        k: int,
        filter_expr: str,
        level: Consistency,
    ) -> list[Recalled]:
        if channel == "dense":
            return await self._search(items, vectors, k, filter_expr, level)
        if channel == "sid":
            return await self._sid_search(items, version.codebook, sources, k, filter_expr, level)
        dense, sid = await asyncio.gather(
            self._search(items, vectors, k, filter_expr, level),
            self._sid_search(items, version.codebook, sources, k, filter_expr, level),
        )
        by_id = {r.item_id: r for r in (*sid, *dense)}
        both = {r.item_id for r in dense} & {r.item_id for r in sid}
        fused = fuse([[r.item_id for r in dense], [r.item_id for r in sid]])[:k]
        out = []
        for item_id, score in fused:
            r = by_id[item_id]
            out.append(
                Recalled(
                    item_id,
                    round(score, 9),
                    r.creator_id,
                    r.created_at_ms,
                    r.model_version,
                    "dense+sid" if item_id in both else r.channel,
                )
            )
        return out

    async def user_to_item(
        self,
        user_id: str,
        k: int = 10,
        created_after_ms: int | None = None,
        exclude_creator: str | None = None,
        exclude_items: list[str] | None = None,
        dim: int | None = None,
        consistency: str = "Bounded",
        channel: str | None = None,
    ) -> list[Recalled]:
        """Top-k items for the user through `channel` (None: the recall's default; dense: the interest
        vector(s); sid: the semantic IDs of their recent positives; mixed: both, fused; collab: the
        collaborative search vector of their recent positives; fused: collab and dense scored together),
        without the items in their recent history.

        Raises:
            RecallError: unknown user (404), a bad parameter (400), or sid/mixed without a codebook (409).
            VersionMismatch: the user's vector and the items are of different model versions (409).
        """
        channel = channel or self.channel
        version, items, users = await self._live()
        level = self._check(k, dim, consistency, items, channel, version)
        _ids("user_id", [user_id])
        _ids("exclude", list(exclude_items or []))
        _ids("exclude_creator", [exclude_creator] if exclude_creator else [])
        keys = [user_key(user_id, slot) for slot in range(self._slots)]
        rows = await self._get(users.name, keys, [VECTOR_FIELD, "recent_item_ids", "positive_item_ids", "model_version"], level)
        if channel in COLLAB_CHANNELS:
            return await self._collab_user(
                user_id, rows, channel, version, items, k, created_after_ms, exclude_creator, exclude_items, level
            )
        if not rows:
            raise RecallError(404, f"no interest vector for user {user_id!r} yet")
        query = _query_version(f"user {user_id!r}", rows, version, items)
        seen = [i for row in rows for i in str(row.get("recent_item_ids", "")).split(",") if i]
        positives = [i for i in str(rows[0].get("positive_item_ids", "")).split(",") if i][: self._positives]
        vectors = np.stack([np.asarray(row[VECTOR_FIELD], dtype=np.float32) for row in rows])
        where = _filter(created_after_ms, exclude_creator, seen + list(exclude_items or []), query)
        found = await self._channels(channel, version, items, vectors, positives, k, where, level)
        return _served(found, query, f"user {user_id!r}")

    async def _collab_user(
        self,
        user_id: str,
        rows: list[dict],
        channel: str,
        version: Version,
        items: CollectionSpec,
        k: int,
        created_after_ms: int | None,
        exclude_creator: str | None,
        exclude_items: list[str] | None,
        level: Consistency,
    ) -> list[Recalled]:
        """The collab and fused channels for a user: swap(sum_i u_i x_i) over their recent positives, with
        those items' collaborative vectors as stored now (`streams.collab.maths`)."""
        assert self._collab is not None  # _check
        collab_items, collab_users = self._collab
        mine = await self._get(collab_users.name, [user_id], ["item_ids", COLLAB_COPY], level)
        if not mine and channel == "collab":
            raise RecallError(404, f"no collaborative vector for user {user_id!r} yet")
        if not mine and not rows:
            raise RecallError(404, f"no interest vector for user {user_id!r} yet (neither a collaborative nor a content one)")
        sparse: dict[int, float] = {}
        positives: list[str] = []
        if mine:
            weights = unpack_sparse(str(mine[0][COLLAB_COPY]))
            positives = [i for i in str(mine[0]["item_ids"]).split(",") if i]
            vectors = {
                str(r["item_id"]): dict(r[COLLAB_FIELD])
                for r in await self._get(collab_items.name, positives, ["item_id", COLLAB_FIELD], level)
            }
            sparse = search_vector([(weights.get(dimension(i), 0.0), vectors[i]) for i in positives if i in vectors])
        query = _query_version(f"user {user_id!r}", rows, version, items) if rows else version.model_version
        seen = [i for row in rows for i in str(row.get("recent_item_ids", "")).split(",") if i] + positives
        dense = np.stack([np.asarray(row[VECTOR_FIELD], dtype=np.float32) for row in rows]) if rows else None
        found = await self._collab_search(
            channel,
            sparse,
            dense,
            query,
            version,
            items,
            k,
            created_after_ms,
            exclude_creator,
            seen + list(exclude_items or []),
            level,
        )
        return _served(found, query, f"user {user_id!r}")

    async def _collab_search(
        self,
        channel: str,
        sparse: Mapping[int, float],
        dense: np.ndarray | None,
        query: str,
        version: Version,
        items: CollectionSpec,
        k: int,
        created_after_ms: int | None,
        exclude_creator: str | None,
        excluded: list[str],
        level: Consistency,
    ) -> list[Recalled]:
        """collab: the top of the sparse search, joined with the live items (their version, filters);
        fused: the union of the collab and dense tops, each candidate scored by both,
        collab / (the best collab score) + content_weight x (the dense score, best slot)."""
        assert self._collab is not None
        collab_items = self._collab[0].name
        pool = max(FUSED_CANDIDATES, 3 * k) if channel == "fused" else 3 * k
        collab_hits: dict[str, float] = {}
        if sparse:
            exclude = f"item_id not in {milvus_strings(sorted(set(excluded)))}" if excluded else ""
            (hits,) = await self._sink.search(
                collab_items, [sparse], limit=min(pool, 1000), vector_field=COLLAB_FIELD, filter_expr=exclude, consistency=level
            )
            collab_hits = {h.id: h.score for h in hits}
        where = _filter(created_after_ms, exclude_creator, excluded, query)
        if channel == "collab":
            found = {r.item_id: r for r in await self._known(items, list(collab_hits), where, level)}
            ranked = sorted((i for i in collab_hits if i in found), key=lambda i: (-collab_hits[i], i))[:k]
            return [replace(found[i], score=round(collab_hits[i], 6), channel="collab") for i in ranked]
        dense_hits = {r.item_id: r for r in await self._search(items, dense, pool, where, level)} if dense is not None else {}
        candidates = list(dict.fromkeys([*collab_hits, *dense_hits]))
        found = {r.item_id: r for r in await self._known(items, candidates, where, level)}
        candidates = [i for i in candidates if i in found]
        missing_collab = [i for i in candidates if i not in collab_hits]
        if sparse and missing_collab:
            rows = await self._get(collab_items, missing_collab, ["item_id", COLLAB_COPY], level)
            collab_hits.update({str(r["item_id"]): dot(unpack_sparse(str(r[COLLAB_COPY])), sparse) for r in rows})
        content: dict[str, float] = {}
        if dense is not None:
            rows = await self._get(items.name, [i for i in candidates if i not in dense_hits], ["item_id", VECTOR_FIELD], level)
            vectors = {str(r["item_id"]): np.asarray(r[VECTOR_FIELD], dtype=np.float32) for r in rows}
            content = {
                i: dense_hits[i].score if i in dense_hits else float((dense @ vectors[i]).max())
                for i in candidates
                if i in dense_hits or i in vectors
            }
        fused = fused_scores({i: collab_hits[i] for i in candidates if i in collab_hits}, content, self._content_weight)
        ranked = sorted(candidates, key=lambda i: (-fused[i], i))[:k]
        return [
            replace(
                found[i],
                score=round(fused[i], 6),
                channel="+".join(
                    c for c, hit in (("collab", i in collab_hits and collab_hits[i] > 0), ("dense", i in dense_hits)) if hit
                )
                or "fused",
            )
            for i in ranked
        ]

    async def _known(self, items: CollectionSpec, ids: list[str], where: str, level: Consistency) -> list[Recalled]:
        """The `ids` that the live items collection holds and `where` admits, with their fields."""
        if not ids:
            return []
        rows = await self._sink.query(
            items.name,
            f"{where} and item_id in {milvus_strings(ids)}",
            ["item_id", *ITEM_FIELDS],
            limit=len(ids),
            consistency=level,
        )
        return [
            Recalled(
                str(r["item_id"]),
                0.0,
                str(r.get("creator_id", "")),
                int(r.get("created_at_ms", 0)),
                str(r.get("model_version", "")),
            )
            for r in rows
        ]

    async def item_to_item(
        self,
        item_id: str,
        k: int = 10,
        created_after_ms: int | None = None,
        exclude_creator: str | None = None,
        dim: int | None = None,
        consistency: str = "Bounded",
        channel: str | None = None,
    ) -> list[Recalled]:
        """Top-k items most similar to `item_id` (itself excluded) through `channel` (None: the recall's
        default; sid: sharing its semantic-ID prefixes; collab: engaged with together; fused: collab and
        dense scored together).

        Raises:
            RecallError: unknown item (404), a bad parameter (400), or sid/mixed without a codebook (409).
            VersionMismatch: the item's vector and the items searched are of different model versions (409).
        """
        channel = channel or self.channel
        version, items, _ = await self._live()
        level = self._check(k, dim, consistency, items, channel, version)
        _ids("item_id", [item_id])
        _ids("exclude_creator", [exclude_creator] if exclude_creator else [])
        rows = await self._get(items.name, [item_id], [VECTOR_FIELD, "model_version"], level)
        if not rows:
            raise RecallError(404, f"no embedding for item {item_id!r} yet")
        query = _query_version(f"item {item_id!r}", rows, version, items)
        vector = np.asarray(rows[0][VECTOR_FIELD], dtype=np.float32)[None, :]
        if channel in COLLAB_CHANNELS:
            assert self._collab is not None  # _check
            own = await self._get(self._collab[0].name, [item_id], [COLLAB_COPY], level)
            if not own and channel == "collab":
                raise RecallError(404, f"no collaborative vector for item {item_id!r} yet")
            sparse = swap(unpack_sparse(str(own[0][COLLAB_COPY]))) if own else {}
            found = await self._collab_search(
                channel, sparse, vector, query, version, items, k, created_after_ms, exclude_creator, [item_id], level
            )
            return _served(found, query, f"item {item_id!r}")
        found = await self._channels(
            channel, version, items, vector, [item_id], k, _filter(created_after_ms, exclude_creator, [item_id], query), level
        )
        return _served(found, query, f"item {item_id!r}")
