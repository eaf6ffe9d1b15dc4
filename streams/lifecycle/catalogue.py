"""`sail-stream import items`: load an existing catalogue's item vectors into the live version's items
collection at bulk rate, so an operator starts from a million items instead of streaming them one by one
(issue 33).

The input is one NumPy `.npz` file of vectors already computed by the live version's encoder:
`item_id` (n strings), `embedding` (n x dim floats), and optionally `creator_id` (n strings),
`created_at_ms` (n integers) and `model_version` (one string). Each row is checked as an upload's would
be (the codec's identifier rules, a finite non-zero vector of the live version's width), L2-normalised
as the encoder's are, and upserted in pages; a row that fails a check or that Milvus refuses is written
to the rejects file with its reason, and the rows around it go on. Within a page the last row of an
item wins, as a later upload of it would.

Resumable: after each acknowledged page the number of rows done is saved in a checkpoint next to the
rejects (`<state>/import/<key>.json`, the key naming the file and the collection); a rerun of the same
file (same path, size and mtime) into the same collection starts after it. Rows are upserts, so a page
redone after a crash writes the same rows again.

Imported rows carry no semantic ID (`sail-stream sid backfill` gives them theirs) and no content on
the item-content topic, so `sail-stream reembed` cannot re-encode them: import the new version's
vectors instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from encoders.client import EncoderClient
from streams.lifecycle.reembed import Session
from streams.sinks.milvus import ensure_collections
from topology.codec import BadInput, check_identifier
from topology.collections import item_row
from topology.settings import Settings


class CatalogueError(RuntimeError):
    """An import that cannot be done as asked (with what to do instead)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    index: int  # the row's position in the file
    item_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, object]]
    indices: list[int]  # each row's position in the file
    rejected: list[Rejected]
    replaced: int  # rows of an item that a later row of the same page replaced


@dataclass(frozen=True, slots=True)
class Imported:
    collection: str
    model_version: str
    rows: int  # in the file
    upserted: int  # by this run
    rejected: int  # by this run
    resumed_at: int  # rows already done by an earlier run
    seconds: float


def prepare_page(
    start: int,
    ids: Sequence[str],
    vectors: NDArray[Any],
    creators: Sequence[str] | None,
    created_ms: Sequence[int] | None,
    model_version: str,
    encoded_at_ms: int,
    max_id_bytes: int,
) -> Page:
    """Rows of one page of the file (rows `start` .. `start + len(ids)`): checked, normalised, one per
    item (the last). Pure."""
    rejected: list[Rejected] = []
    chosen: dict[str, tuple[int, dict[str, object]]] = {}
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    for offset, item_id in enumerate(ids):
        index = start + offset
        try:
            check_identifier(str(item_id), "item_id", max_id_bytes)
            creator = str(creators[offset]) if creators is not None else "import"
            check_identifier(creator, "creator_id", max_id_bytes)
        except BadInput as exc:
            rejected.append(Rejected(index, str(item_id), exc.detail))
            continue
        norm = float(norms[offset])
        if not math.isfinite(norm) or norm == 0.0:
            rejected.append(Rejected(index, str(item_id), "embedding: not finite or all zero"))
            continue
        created = int(created_ms[offset]) if created_ms is not None else encoded_at_ms
        if created < 0:
            rejected.append(Rejected(index, str(item_id), f"created_at_ms: {created} < 0"))
            continue
        vector = (vectors[offset] / norm).astype(np.float32)
        chosen[str(item_id)] = (index, item_row(str(item_id), creator, created, encoded_at_ms, model_version, vector))
    kept = sorted(chosen.values(), key=lambda pair: pair[0])
    replaced = len(ids) - len(rejected) - len(kept)
    return Page([row for _, row in kept], [index for index, _ in kept], rejected, replaced)


def file_key(path: Path, collection: str) -> str:
    """What names one import's checkpoint: the file (its absolute path, size and modification time) and the
    collection it goes to (the same file imported into another collection starts from its first row)."""
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{collection}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Catalogue:
    ids: NDArray[Any]
    vectors: NDArray[Any]
    creators: NDArray[Any] | None
    created_ms: NDArray[Any] | None
    model_version: str | None

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        """Read `path` (.npz), checking its arrays' names, lengths and shapes.

        Raises:
            CatalogueError: the file is not a catalogue as described in this module.
        """
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CatalogueError(f"{path}: not a readable .npz file ({exc})") from exc
        names = set(data.files)
        missing = {"item_id", "embedding"} - names
        if missing:
            raise CatalogueError(f"{path}: missing array(s) {', '.join(sorted(missing))} (has: {', '.join(sorted(names))})")
        ids, vectors = data["item_id"], data["embedding"]
        if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
            raise CatalogueError(f"{path}: embedding must be an (n, dim) float array, got {vectors.dtype} {vectors.shape}")
        if ids.ndim != 1 or len(ids) != len(vectors):
            raise CatalogueError(f"{path}: item_id must be n strings for the n={len(vectors)} vectors, got shape {ids.shape}")
        optional: dict[str, NDArray[Any] | None] = {}
        for name in ("creator_id", "created_at_ms"):
            column = data[name] if name in names else None
            if column is not None and len(column) != len(ids):
                raise CatalogueError(f"{path}: {name} has {len(column)} entries for {len(ids)} items")
            optional[name] = column
        version = str(data["model_version"]) if "model_version" in names else None
        return cls(ids, vectors, optional["creator_id"], optional["created_at_ms"], version)


class Checkpoint:
    """Rows done of one file, saved after each acknowledged page, and the rejects beside it."""

    def __init__(self, folder: Path, key: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{key}.json"
        self.rejects = folder / f"{key}.rejects.jsonl"

    def done(self) -> int:
        if not self.path.exists():
            return 0
        return int(json.loads(self.path.read_text())["rows_done"])

    def save(self, rows_done: int, source: Path, collection: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"rows_done": rows_done, "file": str(source.resolve()), "collection": collection}))
        tmp.replace(self.path)  # atomic: a crash leaves the old count or the new one

    def reject(self, rejected: Sequence[Rejected]) -> None:
        if rejected:
            with self.rejects.open("a") as out:
                for r in rejected:
                    out.write(json.dumps({"index": r.index, "item_id": r.item_id, "reason": r.reason}) + "\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.rejects.unlink(missing_ok=True)


async def import_items(
    s: Settings,
    path: Path,
    batch: int = 2000,
    model_version: str | None = None,
    restart: bool = False,
    probe_encoder: bool = True,
    progress: Callable[[str], None] = print,
    every_s: float = 5.0,
) -> Imported:
    """Upsert the catalogue at `path` into the live version's items collection. The vectors' model version
    must be the live one: the registry's, or (a deployment without one) what the workers' Triton reports,
    unless `probe_encoder` is off.

    Raises:
        CatalogueError: the file or its model version does not fit the live version.
        MilvusUnavailable: Milvus stayed down (after the retry policy's tries).
    """
    began = time.perf_counter()
    catalogue = Catalogue.load(path)
    async with Session(s) as session:
        registry = await session.registry()
        live = registry.live
        items, _ = live.specs(*s.collections())
        checkpoint = Checkpoint(s.state_dir / "import", file_key(path, items.name))
        if restart:
            checkpoint.clear()
        given = model_version or catalogue.model_version
        expected = live.model_version
        if not expected and probe_encoder:  # a deployment from before the registry: what its workers' encoder is
            encoder = EncoderClient.for_settings(s)
            await encoder.start()
            try:
                expected = (await session.probe(encoder, "live"))[0]
            finally:
                await encoder.close()
        if not given:
            raise CatalogueError(
                "the vectors' model version is not known: put a model_version string in the file or pass --model-version"
            )
        if expected and given != expected:
            raise CatalogueError(
                f"the vectors are from {given} but the live version is {expected}: import vectors of the live encoder "
                "(vectors of two encoders in one collection are not comparable)"
            )
        if catalogue.vectors.shape[1] != live.dim:
            raise CatalogueError(
                f"the vectors are {catalogue.vectors.shape[1]} wide, the live collection {items.name} {live.dim}"
            )
        ensure_collections(s.milvus_uri, s.milvus_token_value, [items], s.milvus_backend, tls=s.milvus_tls())
        total = len(catalogue.ids)
        start = done = checkpoint.done()
        if done:
            progress(f"import: resuming {path.name} at row {done:,} of {total:,} (a checkpoint of an earlier run)")
        upserted = rejected = 0
        said_at = time.monotonic()
        while done < total:
            end = min(done + batch, total)
            page = prepare_page(
                done,
                [str(i) for i in catalogue.ids[done:end]],
                catalogue.vectors[done:end],
                [str(c) for c in catalogue.creators[done:end]] if catalogue.creators is not None else None,
                [int(t) for t in catalogue.created_ms[done:end]] if catalogue.created_ms is not None else None,
                given,
                int(time.time() * 1000),
                s.limits().max_id_bytes,
            )
            refused: dict[int, str] = {}
            if page.rows:
                refused = await session.retry.retrying(
                    "milvus", f"upsert {items.name}", partial(session.sink.upsert_each, items, page.rows)
                )
            bad = page.rejected + [Rejected(page.indices[i], str(page.rows[i]["item_id"]), why) for i, why in refused.items()]
            checkpoint.reject(bad)
            upserted += len(page.rows) - len(refused)
            rejected += len(bad)
            done = end
            checkpoint.save(done, path, items.name)
            if time.monotonic() - said_at >= every_s or done == total:
                said_at = time.monotonic()
                rate = (done - start) / max(time.perf_counter() - began, 1e-9)
                eta = (total - done) / rate if rate > 0 else float("inf")
                progress(
                    f"import: {done:,} of {total:,} rows ({done / total:.1%}), {rate:,.0f} rows/s, ETA {eta:,.0f}s, "
                    f"{rejected:,} rejected"
                )
    if rejected:
        progress(f"import: {rejected:,} rows rejected, each with its reason, in {checkpoint.rejects}")
    return Imported(items.name, given, total, upserted, rejected, start, time.perf_counter() - began)
