"""`sail-stream sid fit` and `sail-stream sid backfill`: the semantic-ID codebook of the live model
version, and semantic IDs for the items stored before it (issue 18).

**fit** reads the live version's stored item vectors (one `model_version`: rows of another are left
out), fits a residual k-means codebook (`streams.sid.maths`, L levels x K codes, seeded), saves it in
the version's codebooks collection (`<items>_codebooks`) and names it in the model-version registry
(`Version.codebook`). Every worker reads the registry each SAIL_VERSION_REFRESH_S, loads the codebook
and assigns semantic IDs to the items it encodes from then on. A refit is a new codebook id; the rows
of the old one stay (items keep the IDs they have until a backfill gives them the new codebook's).

**backfill** gives every stored item without a semantic ID of the live codebook its ID: it scans the
items collection for rows whose `sid_codebook` is another one (or none), assigns codes and suffixes
like the workers do, and rewrites those rows. Run twice, the second run finds nothing to do. An item a
worker rewrites meanwhile keeps the worker's row: the backfill re-reads each page just before writing
and leaves out rows whose `encoded_at_ms` moved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streams.lifecycle.reembed import Session
from streams.sid.codebooks import Codebooks
from streams.sid.maths import Codebook, assign, fit, sid_text
from streams.sinks.milvus import ensure_collections, milvus_string, scan_rows
from topology.collections import CANARY, VECTOR_FIELD, item_row
from topology.settings import Settings
from topology.versions import Version, version_slug

_ITEM_FIELDS = [
    "item_id",
    "creator_id",
    "created_at_ms",
    "encoded_at_ms",
    "model_version",
    "sid_codes",
    "sid_suffix",
    "sid_codebook",
    VECTOR_FIELD,
]
MAX_CODES = (
    16383  # a codebook's L x K centroid rows are read back in one Milvus query (16,384 rows at most, its meta row included)
)


class SidError(RuntimeError):
    """A fit or backfill that cannot be done as asked (with what to do instead)."""


@dataclass(frozen=True, slots=True)
class Fitted:
    codebook: Codebook
    version: Version
    items: int  # stored items of the version's model_version
    fitted_on: int  # of which the fit used (a sample when over --max-items)
    seconds: float


@dataclass(frozen=True, slots=True)
class Backfilled:
    codebook_id: str
    assigned: int
    collisions: int  # assigned with a suffix > 0
    skipped: int  # rewritten by a worker while the page was in hand: theirs stands
    seconds: float


async def _pages(
    s: Settings, collection: str, filter_expr: str, fields: list[str], batch: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """`scan_rows` with each page fetched in a thread (pymilvus's iterator is synchronous)."""
    pages = scan_rows(s.milvus_uri, s.milvus_token_value, collection, filter_expr, fields, batch=batch, tls=s.milvus_tls())
    while (page := await asyncio.to_thread(next, pages, None)) is not None:
        yield page


async def fit_codebook(
    s: Settings, levels: int, codes: int, seed: int, max_items: int = 200_000, progress: Callable[[str], None] = print
) -> Fitted:
    """Fit, save and name live the codebook of the live version's stored items.

    Raises:
        SidError: too few items, items of several model versions with none named, a registry changed meanwhile.
        MilvusUnavailable: Milvus did not answer (the registry is not changed).
    """
    if levels * codes > MAX_CODES:
        raise SidError(f"{levels} x {codes} = {levels * codes} codes: at most {MAX_CODES} fit in one codebook")
    began = time.monotonic()
    async with Session(s) as session:
        registry = await session.registry()
        version = registry.live
        items, _ = version.specs(*s.collections())
        where = f"creator_id != {milvus_string(CANARY)}"
        if version.model_version:
            where += f" and model_version == {milvus_string(version.model_version)}"
        ids: list[str] = []
        vectors: list[NDArray[np.float32]] = []
        seen_versions: set[str] = set()
        async for page in _pages(s, items.name, where, ["item_id", "model_version", VECTOR_FIELD], 2000):
            for row in page:
                ids.append(str(row["item_id"]))
                seen_versions.add(str(row["model_version"]))
                vectors.append(np.asarray(row[VECTOR_FIELD], dtype=np.float32))
            progress(f"sid fit: read {len(ids):,} item vectors from {items.name}")
        if len(seen_versions) > 1:
            raise SidError(
                f"{items.name} holds vectors of several model versions ({', '.join(sorted(seen_versions))}) and the registry "
                "names none: re-embed into one version first (sail-stream reembed)"
            )
        model_version = version.model_version or next(iter(seen_versions), "")
        if len(ids) < codes:
            raise SidError(
                f"{items.name} holds {len(ids)} items of {model_version or 'any version'}: a codebook of {codes} codes needs at "
                "least as many (wait for more uploads, or set SAIL_SID_CODES lower)"
            )
        order = np.argsort(
            np.asarray(ids)
        )  # the scan's order is Milvus's: sort by item_id so the same items give the same codebook
        matrix = np.stack(vectors)[order]
        if len(matrix) > max_items:
            matrix = matrix[np.sort(np.random.default_rng(seed).choice(len(matrix), max_items, replace=False))]
        fitted_at_ms = int(time.time() * 1000)
        codebook_id = f"{version_slug(model_version or 'default')}_sid{levels}x{codes}_{fitted_at_ms}"
        progress(
            f"sid fit: residual k-means, {levels} levels x {codes} codes over {len(matrix):,} vectors of "
            f"{model_version or '(unnamed)'} (seed {seed})"
        )
        codebook = await asyncio.to_thread(fit, matrix, levels, codes, seed, codebook_id, model_version, fitted_at_ms)
        spec = version.codebooks()
        await asyncio.to_thread(
            ensure_collections, s.milvus_uri, s.milvus_token_value, [spec], s.milvus_backend, 30.0, s.milvus_tls()
        )
        await session.retry.retrying(
            "milvus", f"save codebook {codebook_id}", lambda: Codebooks(session.sink).save(spec, codebook)
        )
        now = await session.registry()
        if now.generation != registry.generation:
            raise SidError(
                f"the model-version registry changed while fitting (generation {registry.generation} -> {now.generation}, live "
                f"{now.live.model_version or '(default)'}): codebook {codebook_id} is saved but not live; run sid fit again"
            )
        await session.write(registry.with_codebook(codebook_id))
        return Fitted(codebook, version, len(ids), len(matrix), time.monotonic() - began)


async def backfill_sids(s: Settings, batch: int = 1000, progress: Callable[[str], None] = print) -> Backfilled:
    """Give every stored item of the live version without an ID of the live codebook its semantic ID.

    Raises:
        SidError: the live version has no codebook.
        MilvusUnavailable, CodebookMissing: Milvus did not answer, or the codebook's rows are gone.
    """
    began = time.monotonic()
    async with Session(s) as session:
        version = (await session.registry()).live
        if not version.codebook:
            raise SidError(
                f"the live version {version.model_version or '(default)'} has no codebook: run sail-stream sid fit first"
            )
        items, _ = version.specs(*s.collections())
        codebooks = Codebooks(session.sink)
        codebook = await session.retry.retrying(
            "milvus", "load the codebook", lambda: codebooks.load(version.codebooks(), version.codebook)
        )
        where = f"creator_id != {milvus_string(CANARY)} and sid_codebook != {milvus_string(codebook.codebook_id)}"
        total = await session.retry.retrying("milvus", "count items to backfill", lambda: session.sink.count(items.name, where))
        progress(f"sid backfill: {total:,} items of {items.name} have no semantic ID of {codebook.codebook_id}")
        assigned = collisions = skipped = 0
        async for page in _pages(s, items.name, where, _ITEM_FIELDS, batch):
            page = sorted(
                page, key=lambda row: str(row["item_id"])
            )  # suffixes in item_id order: the same items give the same IDs
            codes, _ = assign(codebook, np.stack([np.asarray(row[VECTOR_FIELD], dtype=np.float32) for row in page]))
            texts = [sid_text(c) for c in codes]
            ids = [str(row["item_id"]) for row in page]
            found = await session.retry.retrying(
                "milvus", "read semantic-ID buckets", lambda: codebooks.semantic_ids(items, codebook, ids, texts)
            )
            now = await session.retry.retrying(
                "milvus", "re-read the page", lambda: session.sink.get(items.name, ids, ["encoded_at_ms", "sid_codebook"])
            )
            current = {str(r["item_id"]): r for r in now}
            rows = []
            for row, sid in zip(page, found):
                mine = current.get(str(row["item_id"]))
                if (
                    mine is None
                    or int(mine["encoded_at_ms"]) != int(row["encoded_at_ms"])
                    or mine["sid_codebook"] == codebook.codebook_id
                ):
                    skipped += 1  # deleted, or a worker rewrote it meanwhile (with its own ID)
                    continue
                rows.append(
                    item_row(
                        str(row["item_id"]),
                        str(row["creator_id"]),
                        int(row["created_at_ms"]),
                        int(row["encoded_at_ms"]),
                        str(row["model_version"]),
                        row[VECTOR_FIELD],
                        sid,
                    )
                )
                collisions += sid.suffix > 0
            refused = await session.retry.retrying(
                "milvus", f"upsert {items.name}", lambda: session.sink.upsert_each(items, rows)
            )
            if refused:
                raise SidError(f"Milvus refused {len(refused)} rows it had stored before, e.g. {next(iter(refused.values()))}")
            assigned += len(rows)
            progress(
                f"sid backfill: {assigned:,} of {total:,} assigned ({collisions:,} with a collision suffix, {skipped:,} "
                "rewritten by a worker meanwhile)"
            )
        return Backfilled(codebook.codebook_id, assigned, collisions, skipped, time.monotonic() - began)
