"""A codebook's Milvus rows and back (pure: the rows as the sink writes and reads them)."""

from __future__ import annotations

import numpy as np
import pytest

from streams.sid.codebooks import CodebookMissing, codebook_from_rows, codebook_meta
from streams.sid.maths import fit
from topology.collections import codebook_collection, codebook_rows, row_problem


def _book():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(64, 8)).astype(np.float32)
    return fit(
        vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
        levels=2,
        codes=4,
        seed=1,
        codebook_id="m_sid2x4_5",
        model_version="m",
        fitted_at_ms=5,
    )


def test_a_codebook_round_trips_through_its_rows_and_every_row_fits_the_collection() -> None:
    book = _book()
    rows = codebook_rows(book.codebook_id, book.centroids, codebook_meta(book))
    assert len(rows) == 1 + 2 * 4
    spec = codebook_collection("sail_items", 8)
    assert spec.name == "sail_items_codebooks" and all(row_problem(spec, row) is None for row in rows)
    back = codebook_from_rows(list(reversed(rows)))  # Milvus returns them in any order
    np.testing.assert_array_equal(back.centroids, book.centroids)
    assert (back.codebook_id, back.model_version, back.seed, back.fitted_at_ms, back.health) == (
        book.codebook_id,
        "m",
        1,
        5,
        book.health,
    )


def test_a_codebook_with_a_centroid_or_its_description_missing_is_refused() -> None:
    book = _book()
    rows = codebook_rows(book.codebook_id, book.centroids, codebook_meta(book))
    with pytest.raises(CodebookMissing, match="1 of 8 centroids missing"):
        codebook_from_rows(rows[:-1])
    with pytest.raises(CodebookMissing, match="no description"):
        codebook_from_rows(rows[1:])


def test_a_codebook_whose_collection_is_gone_is_missing_and_milvus_down_is_not() -> None:
    import asyncio

    from streams.sid.codebooks import Codebooks
    from streams.sinks.milvus import MilvusUnavailable

    class Sink:
        def __init__(self, message: str) -> None:
            self.message = message

        async def query(self, *args: object, **kwargs: object) -> list[dict[str, object]]:
            raise MilvusUnavailable(self.message)

    spec = codebook_collection("sail_items", 8)
    with pytest.raises(CodebookMissing, match="its collection sail_items_codebooks does not exist"):
        asyncio.run(
            Codebooks(Sink("query of sail_items_codebooks: collection not found[collection=sail_items_codebooks]")).load(
                spec, "cb"
            )
        )  # type: ignore[arg-type]
    with pytest.raises(MilvusUnavailable):  # down: the worker retries
        asyncio.run(Codebooks(Sink("query of sail_items_codebooks: no answer within 11s")).load(spec, "cb"))  # type: ignore[arg-type]
