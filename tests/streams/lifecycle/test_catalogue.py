"""The catalogue import's pure parts: each row checked and normalised, one per item, the file's arrays
checked, and the checkpoint a rerun resumes from."""

from pathlib import Path

import numpy as np
import pytest

from streams.lifecycle.catalogue import Catalogue, CatalogueError, Checkpoint, Page, Rejected, file_key, prepare_page
from topology.collections import VECTOR_FIELD


def _page(
    ids: list[str], vectors: np.ndarray, start: int = 100, creators: list[str] | None = None, created: list[int] | None = None
) -> Page:
    return prepare_page(start, ids, vectors, creators, created, "sail-tiny-abc", 5_000, 128)


def test_rows_are_normalised_and_named_as_the_items_collection_names_them() -> None:
    page = _page(["a", "b"], np.array([[3.0, 4.0], [0.0, 2.0]]), created=[1_000, 2_000], creators=["c1", "c2"])
    assert page.indices == [100, 101] and page.rejected == [] and page.replaced == 0
    a, b = page.rows
    assert np.allclose(a[VECTOR_FIELD], [0.6, 0.8]) and np.allclose(b[VECTOR_FIELD], [0.0, 1.0])
    assert (a["item_id"], a["creator_id"], a["created_at_ms"], a["encoded_at_ms"], a["model_version"]) == (
        "a",
        "c1",
        1_000,
        5_000,
        "sail-tiny-abc",
    )
    assert a["sid_codebook"] == "" and a["sid_suffix"] == -1  # no semantic ID until `sid backfill`


def test_bad_rows_are_rejected_with_their_reason_and_their_neighbours_kept() -> None:
    ids = ["ok-1", "it's", "", "zero", "nan", "ok-2", "__canary__-x", "x" * 129]
    vectors = np.ones((len(ids), 2))
    vectors[3] = 0.0
    vectors[4, 0] = np.nan
    page = _page(ids, vectors, start=0)
    assert [row["item_id"] for row in page.rows] == ["ok-1", "ok-2"]
    reasons = {r.item_id: r.reason for r in page.rejected}
    assert set(reasons) == {"it's", "", "zero", "nan", "__canary__-x", "x" * 129}
    assert "not finite or all zero" in reasons["zero"] and "not finite or all zero" in reasons["nan"]
    assert "> limit 128" in reasons["x" * 129]
    assert [r.index for r in page.rejected] == [1, 2, 3, 4, 6, 7]


def test_the_last_row_of_an_item_in_a_page_wins_as_a_later_upload_would() -> None:
    page = _page(["a", "b", "a"], np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    assert [row["item_id"] for row in page.rows] == ["b", "a"] and page.indices == [101, 102]
    assert np.allclose(page.rows[1][VECTOR_FIELD], [0.0, 1.0]) and page.replaced == 1


def _npz(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_a_file_that_is_not_a_catalogue_is_refused_with_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"missing array.*embedding"):
        Catalogue.load(_npz(tmp_path / "a.npz", item_id=np.array(["a"])))
    with pytest.raises(CatalogueError, match="item_id must be n strings"):
        Catalogue.load(_npz(tmp_path / "b.npz", item_id=np.array(["a"]), embedding=np.ones((2, 4))))
    with pytest.raises(CatalogueError, match=r"\(n, dim\) float"):
        Catalogue.load(_npz(tmp_path / "c.npz", item_id=np.array(["a"]), embedding=np.ones(4)))
    with pytest.raises(CatalogueError, match="created_at_ms has 1 entries for 2"):
        Catalogue.load(
            _npz(tmp_path / "d.npz", item_id=np.array(["a", "b"]), embedding=np.ones((2, 4)), created_at_ms=np.array([1]))
        )
    (tmp_path / "e.npz").write_text("not numpy")
    with pytest.raises(CatalogueError, match=r"not a readable \.npz"):
        Catalogue.load(tmp_path / "e.npz")
    good = Catalogue.load(_npz(tmp_path / "f.npz", item_id=np.array(["a"]), embedding=np.ones((1, 4)), model_version="v1"))
    assert good.model_version == "v1" and good.creators is None


def test_the_checkpoint_resumes_a_file_until_it_changes_or_is_cleared(tmp_path: Path) -> None:
    source = _npz(tmp_path / "cat.npz", item_id=np.array(["a"]), embedding=np.ones((1, 4)))
    key = file_key(source, "items")
    assert file_key(source, "other_items") != key  # the same file into another collection starts over
    point = Checkpoint(tmp_path / "import", key)
    assert point.done() == 0
    point.save(4_000, source, "items")
    point.reject([Rejected(7, "it's", "bad id")])
    assert Checkpoint(tmp_path / "import", key).done() == 4_000  # a rerun reads it
    assert point.rejects.read_text().count("\n") == 1
    _npz(source, item_id=np.array(["a", "b"]), embedding=np.ones((2, 4)))  # rewritten: another file
    assert file_key(source, "items") != key
    point.clear()
    assert point.done() == 0 and not point.rejects.exists()
