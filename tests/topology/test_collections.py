import numpy as np
import pytest

from topology.collections import (
    CANARY,
    collab_item_row,
    collab_items_collection,
    index_for,
    item_row,
    items_collection,
    probe_row,
    row_problem,
    user_key,
    user_row,
    users_collection,
)


def test_items_collection_is_keyed_by_item_id_with_the_scalars_recall_filters_on() -> None:
    spec = items_collection("x_", dim=64)
    assert spec.name == "x_items"
    assert spec.primary_key == "item_id"
    assert spec.dim == 64
    assert {f.name for f in spec.fields} >= {"creator_id", "created_at_ms", "encoded_at_ms", "model_version"}


def test_users_collection_rows_are_user_slots() -> None:
    spec = users_collection("x_", dim=32)
    assert spec.primary_key == "user_key"
    assert spec.dim == 32
    assert user_key("u42", 0) == "u42#0"
    assert {"user_id", "slot", "model_version"} <= {f.name for f in spec.fields}


def test_index_follows_the_backend() -> None:
    assert index_for("lite").index_type == "FLAT"  # Lite 2.5 has no HNSW
    server = index_for("server")
    assert server.index_type == "HNSW" and dict(server.build_params)["M"] == 16
    assert {index_for(b).metric_type for b in ("lite", "server")} == {"IP"}


def _item(**overrides: object) -> dict[str, object]:
    row = item_row("i1", "c1", 1, 2, "m", [0.6, 0.8, 0.0, 0.0])
    row.update(overrides)
    return row


def test_a_row_that_fits_the_schema_has_no_problem() -> None:
    assert row_problem(items_collection("x_", dim=4), _item()) is None
    assert row_problem(items_collection("x_", dim=4), _item(item_id="猫" * 42)) is None  # 126 bytes


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"created_at_ms": 2**63}, "x_items.created_at_ms: 9223372036854775808 is not an int64"),
        ({"created_at_ms": True}, "is not an int64"),
        ({"item_id": "é" * 65}, "x_items.item_id: 130 UTF-8 bytes > VARCHAR(128)"),
        ({"creator_id": 7}, "x_items.creator_id: expected str, got int"),
        ({"embedding": [1.0, 0.0]}, "x_items.embedding: expected 4 floats"),
        ({"embedding": [float("nan"), 0.0, 0.0, 0.0]}, "NaN or infinite"),
        ({"embedding": [float("inf"), 0.0, 0.0, 0.0]}, "NaN or infinite"),
        ({"embedding": [float("inf"), float("-inf"), 0.0, 0.0]}, "NaN or infinite"),
        ({"embedding": [0.0, 0.0, 0.0, float("-inf")]}, "NaN or infinite"),
    ],
)
def test_a_row_milvus_would_refuse_says_why(overrides: dict[str, object], problem: str) -> None:
    found = row_problem(items_collection("x_", dim=4), _item(**overrides))
    assert found is not None and problem in found


def test_the_largest_float32_components_are_finite() -> None:
    assert row_problem(items_collection("x_", dim=4), _item(embedding=[3.4e38, 3.4e38, -3.4e38, 3.4e38])) is None


def test_a_row_missing_a_field_says_which() -> None:
    row = _item()
    del row["model_version"]
    assert row_problem(items_collection("x_", dim=4), row) == "x_items.model_version: missing"


def test_probe_rows_fit_their_collection_and_are_marked_as_canaries() -> None:
    for spec in (items_collection("x_", dim=8), users_collection("x_", dim=8)):
        row = probe_row(spec, "__canary__-probe")
        assert row_problem(spec, row) is None
        assert row[spec.primary_key] == "__canary__-probe"
    assert probe_row(items_collection("x_", dim=8), "k")["creator_id"] == CANARY  # recall leaves canaries out


def test_row_builders_fill_exactly_the_fields_of_their_collection() -> None:
    items, users = items_collection("x_", dim=3), users_collection("x_", dim=3)
    item = item_row("i1", "c1", 1, 2, "m", np.array([0.6, 0.8, 0.0], dtype=np.float32))
    user = user_row("u1", 2, 5, 7, "i1,i2", "m", [1.0, 0.0, 0.0])
    assert set(item) == {f.name for f in items.fields} and row_problem(items, item) is None
    assert set(user) == {f.name for f in users.fields} and row_problem(users, user) is None
    assert user["user_key"] == user_key("u1", 2) and user["slot"] == 2
    # an array stays one (the sink packs its bytes); any other sequence becomes a list of floats
    assert isinstance(item[items.vector_field], np.ndarray) and item[items.vector_field].tolist() == pytest.approx(
        [0.6, 0.8, 0.0]
    )
    assert user[users.vector_field] == [1.0, 0.0, 0.0] and isinstance(user[users.vector_field], list)


@pytest.mark.parametrize(
    ("vector", "problem"),
    [
        (np.array([0.6, 0.8, 0.0, 0.0], dtype=np.float32), None),
        (np.array([0.6, 0.8, 0.0, 0.0]), None),  # float64: Milvus gets it as float32
        (np.array([3.4e38, 3.4e38, -3.4e38, 3.4e38], dtype=np.float32), None),  # the sum in float64 stays finite
        (np.array([1.0, 0.0], dtype=np.float32), "expected 4 floats"),
        (np.zeros((1, 4), dtype=np.float32), "expected 4 floats"),  # a (slots, dim) matrix, not a row's vector
        (np.array([1, 0, 0, 0]), "expected 4 floats"),  # integers
        (np.array([0.0, np.nan, 0.0, 0.0], dtype=np.float32), "NaN or infinite"),
        (np.array([0.0, 0.0, 0.0, -np.inf], dtype=np.float32), "NaN or infinite"),
    ],
)
def test_an_array_vector_is_checked_as_a_list_is(vector: np.ndarray, problem: str | None) -> None:
    found = row_problem(items_collection("x_", dim=4), _item(embedding=vector))
    assert found is None if problem is None else found is not None and problem in found


@pytest.mark.parametrize(
    ("vector", "problem"),
    [
        ({}, "expected a non-empty"),
        ({-1: 1.0}, "a dimension outside"),
        ({2**32 - 1: 1.0}, "a dimension outside"),
        ({"7": 1.0}, "a dimension outside"),
        ({3: 1.0, 5: float("nan")}, "NaN or infinite weight"),
        ({3: float("inf"), 5: 1.0}, "NaN or infinite weight"),
        ({3: float("inf"), 5: float("-inf")}, "NaN or infinite weight"),
        ({0: 1.0, 2**32 - 2: 3.4e38}, None),
    ],
)
def test_a_sparse_vector_milvus_would_refuse_says_why(vector: dict[object, float], problem: str | None) -> None:
    row = collab_item_row("a", 1, 0, {1: 1.0})
    row["collab"] = vector
    found = row_problem(collab_items_collection("x_"), row)
    assert found is None if problem is None else (found is not None and problem in found), found
