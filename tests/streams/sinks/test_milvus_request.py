"""`upsert_request` packs rows column by column into what pymilvus's row path would send, and leaves
every case it does not handle to that path (None)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pymilvus.client.prepare import Prepare

from streams.sinks.milvus import _TYPES, upsert_request
from topology.collections import CollectionSpec, collab_user_row, collab_users_collection, user_row, users_collection


def described(spec: CollectionSpec) -> dict[str, Any]:
    """`spec` as pymilvus's describe_collection returns it (the fields the packers read)."""
    fields = []
    for f in spec.fields:
        params = {"max_length": f.max_length} if f.type == "varchar" else {"dim": f.dim} if f.type == "float_vector" else {}
        fields.append(
            {"name": f.name, "type": _TYPES[f.type], "params": params, **({"is_primary": True} if f.is_primary else {})}
        )
    return {"collection_name": spec.name, "fields": fields, "functions": [], "enable_dynamic_field": False}


USERS = users_collection("t_", 8)
COLLAB = collab_users_collection("t_")
RNG = np.random.default_rng(7)


def users_rows(n: int, kind: str = "float32") -> list[dict[str, object]]:
    """Rows as the workers build them (float32 arrays), or with float64 arrays or lists of floats."""
    ids = ",".join(f"item-{i}" for i in range(5))
    vectors = [RNG.standard_normal(8) for _ in range(n)]
    held = {
        "float32": [v.astype(np.float32) for v in vectors],
        "float64": vectors,
        "list": [v.tolist() for v in vectors],
    }[kind]
    return [user_row(f"user-{i}", 0, 1_700_000_000_000 + i, i, ids, "v1", held[i], ids) for i in range(n)]


def collab_rows(n: int) -> list[dict[str, object]]:
    rows = []
    for i in range(n):
        dims = RNG.choice(2**20, size=1 + i % 7, replace=False)
        rows.append(collab_user_row(f"user-{i}", "item-1", i, 1_700_000_000_000, {int(d): float(RNG.random()) for d in dims}))
    return rows


def by_field(request: Any) -> dict[str, Any]:
    return {data.field_name: data for data in request.fields_data}


def test_the_columns_hold_what_the_row_path_sends() -> None:
    cases = [(USERS, users_rows(17, kind)) for kind in ("float32", "float64", "list")] + [(COLLAB, collab_rows(17))]
    for spec, rows in cases:
        schema = described(spec)
        ours = upsert_request(spec.name, rows, schema)
        theirs = Prepare.row_upsert_param(spec.name, rows, "", schema["fields"])
        assert ours is not None and ours.num_rows == theirs.num_rows == 17
        assert ours.collection_name == theirs.collection_name == spec.name
        mine, pymilvus = by_field(ours), by_field(theirs)
        assert mine.keys() == pymilvus.keys() == {f.name for f in spec.fields}
        for name, data in mine.items():
            if data.type == _TYPES["sparse_vector"]:
                # the same bytes per row; the width is the rows' (pymilvus's column path sets it too, its row path leaves 0)
                assert list(data.vectors.sparse_float_vector.contents) == list(
                    pymilvus[name].vectors.sparse_float_vector.contents
                )
                widest = max(max(r[name]) for r in rows)  # type: ignore[type-var, call-overload]
                assert data.vectors.sparse_float_vector.dim == widest + 1
            else:
                assert data == pymilvus[name], name


@pytest.mark.parametrize(
    "spoil",
    [
        lambda rows: rows[3].pop("slot"),  # a field missing
        lambda rows: rows[5].update(note="x"),  # a field the schema lacks
    ],
    ids=["missing-field", "extra-field"],
)
def test_rows_off_the_schema_are_left_to_pymilvus(spoil: Any) -> None:
    rows = users_rows(8)
    spoil(rows)
    assert upsert_request(USERS.name, rows, described(USERS)) is None


@pytest.mark.parametrize(
    "value",
    [
        np.array([0.0] * 7 + [np.nan], dtype=np.float32),
        np.zeros(7, dtype=np.float32),  # not the schema's width
        np.arange(8),  # integers
        ["0.5"] * 8,  # text numpy would read as numbers
        [[0.5] * 8],  # ragged across the rows
    ],
    ids=["nan", "narrow", "int-array", "text", "nested"],
)
def test_a_dense_vector_pymilvus_would_refuse_or_convert_is_left_to_it(value: Any) -> None:
    rows = users_rows(4)
    rows[2]["embedding"] = value
    assert upsert_request(USERS.name, rows, described(USERS)) is None


@pytest.mark.parametrize(
    "value",
    [{1: math.nan}, {-1: 0.5}, {2**32 - 1: 0.5}, {"3": 0.5}, [(1, 0.5)]],
    ids=["nan", "negative", "last-uint32", "text-dimension", "not-a-mapping"],
)
def test_a_sparse_row_pymilvus_would_refuse_is_left_to_it(value: Any) -> None:
    rows = collab_rows(4)
    rows[2]["collab"] = value
    assert upsert_request(COLLAB.name, rows, described(COLLAB)) is None


def test_schemas_with_nullable_defaulted_or_dynamic_fields_are_left_to_pymilvus() -> None:
    rows = users_rows(3)
    nullable = described(USERS)
    nullable["fields"][2]["nullable"] = True
    dynamic = described(USERS) | {"enable_dynamic_field": True}
    defaulted = described(USERS)
    defaulted["fields"][3]["default_value"] = 0
    for schema in (nullable, dynamic, defaulted):
        assert upsert_request(USERS.name, rows, schema) is None
    assert upsert_request(USERS.name, rows, described(USERS)) is not None
