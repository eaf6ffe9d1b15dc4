"""Milvus collection specs as plain data; `streams.sinks.milvus` translates them for pymilvus.

`items` holds one row per item (primary key `item_id`); `users` one row per user interest slot
(primary key `user_key` = `<user_id>#<slot>`, slot 0 for the single-vector default), so a replayed
upsert overwrites the same row with the same value.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
CANARY: Final = "__canary__"  # creator (and every other text field) of the rows workers write to probe Milvus; recall skips them

ITEMS: Final = "items"
USERS: Final = "users"
VECTOR_FIELD: Final = "embedding"
COLLAB_ITEMS: Final = "collab_items"
COLLAB_USERS: Final = "collab_users"
COLLAB_FIELD: Final = "collab"  # the sparse collaborative vector (`streams.collab.maths`), searched
COLLAB_COPY: Final = "collab_copy"  # the same vector packed in a VARCHAR, read (see `pack_sparse`)
_COPY_CHARS: Final = 16384  # base64 of 8 bytes per dimension: up to 1,536 dimensions
SPARSE_DIMS: Final = 2**32 - 1  # Milvus: a sparse vector's dimensions are below this
METRIC: Final = "IP"  # vectors are L2-normalised, so inner product is cosine similarity

FieldType = Literal["varchar", "int64", "float_vector", "sparse_vector"]
Backend = Literal["lite", "server"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: FieldType
    max_length: int = 0  # varchar only
    dim: int = 0  # float_vector only (a sparse_vector has no width)
    is_primary: bool = False


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """The vector index and the search parameters that go with it."""

    index_type: str
    metric_type: str
    build_params: tuple[tuple[str, int], ...] = ()
    search_params: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    name: str
    fields: tuple[FieldSpec, ...]
    vector_field: str
    description: str

    @property
    def primary_key(self) -> str:
        return next(f.name for f in self.fields if f.is_primary)

    @property
    def dim(self) -> int:
        return next(f.dim for f in self.fields if f.name == self.vector_field)

    @property
    def sparse(self) -> bool:
        return next(f.type for f in self.fields if f.name == self.vector_field) == "sparse_vector"


SPARSE_INDEX: Final = IndexSpec(index_type="SPARSE_INVERTED_INDEX", metric_type="IP")  # exact inner product


def index_for(backend: Backend) -> IndexSpec:
    """Index per backend: Milvus Lite 2.5 offers FLAT/IVF_FLAT/AUTOINDEX only (FLAT is exact and
    fast enough at the local scale, ~3 ms p50 at 20k x 256); the standalone server gets HNSW."""
    if backend == "lite":
        return IndexSpec(index_type="FLAT", metric_type=METRIC)
    return IndexSpec(
        index_type="HNSW",
        metric_type=METRIC,
        build_params=(("M", 16), ("efConstruction", 200)),
        search_params=(("ef", 128),),
    )


_ID_CHARS: Final = 128
RECENT_ITEMS_CHARS: Final = 8192
SID_CHARS: Final = 64  # up to 8 levels of 65,536 codes: "65535." x 8
CODEBOOKS: Final = "_codebooks"  # a version's codebooks: `<its items collection>_codebooks` (model versions add "__<slug>")
_META_CHARS: Final = 8192


def items_collection(prefix: str, dim: int) -> CollectionSpec:
    """One row per item: its vector and the scalars recall filters on (fresh-only, exclude creator)."""
    return CollectionSpec(
        name=f"{prefix}{ITEMS}",
        fields=(
            FieldSpec("item_id", "varchar", max_length=_ID_CHARS, is_primary=True),
            FieldSpec("creator_id", "varchar", max_length=_ID_CHARS),
            FieldSpec("created_at_ms", "int64"),
            FieldSpec("encoded_at_ms", "int64"),
            FieldSpec("model_version", "varchar", max_length=128),
            # the semantic ID (issue 18): the L codes as "12.200.7" ("" before a codebook), the collision
            # suffix (-1: none yet) and the codebook that assigned them
            FieldSpec("sid_codes", "varchar", max_length=SID_CHARS),
            FieldSpec("sid_suffix", "int64"),
            FieldSpec("sid_codebook", "varchar", max_length=128),
            FieldSpec(VECTOR_FIELD, "float_vector", dim=dim),
        ),
        vector_field=VECTOR_FIELD,
        description="sail-stream item embeddings",
    )


def users_collection(prefix: str, dim: int) -> CollectionSpec:
    """One row per (user, interest slot): K slots when multi-interest clustering is on."""
    return CollectionSpec(
        name=f"{prefix}{USERS}",
        fields=(
            FieldSpec("user_key", "varchar", max_length=_ID_CHARS + 8, is_primary=True),
            FieldSpec("user_id", "varchar", max_length=_ID_CHARS),
            FieldSpec("slot", "int64"),
            FieldSpec("updated_at_ms", "int64"),
            FieldSpec("event_count", "int64"),
            # the items in the interest windows, comma-separated: recall excludes what the user has seen
            FieldSpec("recent_item_ids", "varchar", max_length=RECENT_ITEMS_CHARS),
            # the positive ones alone, newest first: the sid recall channel matches their semantic IDs
            FieldSpec("positive_item_ids", "varchar", max_length=RECENT_ITEMS_CHARS),
            FieldSpec("model_version", "varchar", max_length=128),
            FieldSpec(VECTOR_FIELD, "float_vector", dim=dim),
        ),
        vector_field=VECTOR_FIELD,
        description="sail-stream user interest embeddings",
    )


def collab_items_collection(prefix: str) -> CollectionSpec:
    """One row per item: its collaborative vector (sparse; no model version: interactions, not the
    encoder, make it) and its positives so far. Items collection fields are joined by `item_id`."""
    return CollectionSpec(
        name=f"{prefix}{COLLAB_ITEMS}",
        fields=(
            FieldSpec("item_id", "varchar", max_length=_ID_CHARS, is_primary=True),
            FieldSpec("likes", "int64"),
            FieldSpec("updated_at_ms", "int64"),
            FieldSpec(COLLAB_COPY, "varchar", max_length=_COPY_CHARS),
            FieldSpec(COLLAB_FIELD, "sparse_vector"),
        ),
        vector_field=COLLAB_FIELD,
        description="sail-stream collaborative item vectors",
    )


def collab_users_collection(prefix: str) -> CollectionSpec:
    """One row per user: their recent positives (ids, newest first) and their collaborative vector."""
    return CollectionSpec(
        name=f"{prefix}{COLLAB_USERS}",
        fields=(
            FieldSpec("user_id", "varchar", max_length=_ID_CHARS, is_primary=True),
            FieldSpec("item_ids", "varchar", max_length=RECENT_ITEMS_CHARS),
            FieldSpec("event_count", "int64"),
            FieldSpec("updated_at_ms", "int64"),
            FieldSpec(COLLAB_COPY, "varchar", max_length=_COPY_CHARS),
            FieldSpec(COLLAB_FIELD, "sparse_vector"),
        ),
        vector_field=COLLAB_FIELD,
        description="sail-stream collaborative user vectors",
    )


def pack_sparse(vector: Mapping[int, float]) -> str:
    """A sparse vector as base64 text (uint32 dimensions, then float32 weights, little-endian): the copy
    that readers get. Milvus Lite 2.5.1 can fail a get of a sparse field while the collection takes
    upserts (a segcore assertion, "Growing segment loss raw data", in runs of consecutive reads:
    measured 20 of 4,369 gets; runs of 3 at 10 ms apart), so the sparse field is only searched."""
    dims = sorted(vector)
    return base64.b64encode(struct.pack(f"<{len(dims)}I{len(dims)}f", *dims, *(vector[d] for d in dims))).decode()


def unpack_sparse(text: str) -> dict[int, float]:
    """Inverse of `pack_sparse` (float32 weights)."""
    raw = base64.b64decode(text)
    n = len(raw) // 8
    numbers = struct.unpack(f"<{n}I{n}f", raw)
    return dict(zip(numbers[:n], numbers[n:]))


def collab_item_row(item_id: str, likes: int, updated_at_ms: int, vector: Mapping[int, float]) -> dict[str, object]:
    return {
        "item_id": item_id,
        "likes": likes,
        "updated_at_ms": updated_at_ms,
        COLLAB_COPY: pack_sparse(vector),
        COLLAB_FIELD: dict(vector),
    }


def collab_user_row(
    user_id: str, item_ids: str, event_count: int, updated_at_ms: int, vector: Mapping[int, float]
) -> dict[str, object]:
    return {
        "user_id": user_id,
        "item_ids": item_ids,
        "event_count": event_count,
        "updated_at_ms": updated_at_ms,
        COLLAB_COPY: pack_sparse(vector),
        COLLAB_FIELD: dict(vector),
    }


def user_key(user_id: str, slot: int) -> str:
    """The primary key of one user interest slot."""
    return f"{user_id}#{slot}"


def _vector(vector: Sequence[float] | Any) -> Any:
    """A vector as a row holds it: a float array as it is (the sink packs an upsert's vectors from
    their bytes, `streams.sinks.milvus.upsert_request`; a float each for 256 rows of 256 dimensions
    was 2.4 ms), any other sequence as a list of floats."""
    return vector if hasattr(vector, "dtype") else [float(v) for v in vector]


@dataclass(frozen=True, slots=True)
class SemanticId:
    """An item's semantic ID as stored: its codes ("12.200.7"), collision suffix and codebook."""

    codes: str = ""
    suffix: int = -1
    codebook: str = ""


NO_SID: Final = SemanticId()


def item_row(
    item_id: str,
    creator_id: str,
    created_at_ms: int,
    encoded_at_ms: int,
    model_version: str,
    vector: Sequence[float] | Any,
    sid: SemanticId = NO_SID,
) -> dict[str, object]:
    """One row of `items_collection`, every field named as the spec names it."""
    return {
        "item_id": item_id,
        "creator_id": creator_id,
        "created_at_ms": created_at_ms,
        "encoded_at_ms": encoded_at_ms,
        "model_version": model_version,
        "sid_codes": sid.codes,
        "sid_suffix": sid.suffix,
        "sid_codebook": sid.codebook,
        VECTOR_FIELD: _vector(vector),
    }


def codebook_collection(items_name: str, dim: int) -> CollectionSpec:
    """The codebooks of one model version (its items collection `items_name`, vectors `dim` wide): one row
    per (codebook, level, code) holding a centroid, and one per codebook (level -1) holding its
    description as JSON (`meta`)."""
    return CollectionSpec(
        name=f"{items_name}{CODEBOOKS}",
        fields=(
            FieldSpec("key", "varchar", max_length=192, is_primary=True),
            FieldSpec("codebook_id", "varchar", max_length=128),
            FieldSpec("level", "int64"),
            FieldSpec("code", "int64"),
            FieldSpec("meta", "varchar", max_length=_META_CHARS),
            FieldSpec(VECTOR_FIELD, "float_vector", dim=dim),
        ),
        vector_field=VECTOR_FIELD,
        description="sail-stream semantic-ID codebooks (residual k-means centroids)",
    )


def codebook_rows(codebook_id: str, centroids: Any, meta: str) -> list[dict[str, object]]:
    """The rows of one codebook: `centroids` (L, K, dim) and its `meta` JSON (a level -1 row)."""
    levels, codes, dim = centroids.shape
    if len(meta.encode()) > _META_CHARS:
        raise ValueError(f"codebook description is {len(meta.encode())} bytes, over {_META_CHARS}")
    rows: list[dict[str, object]] = [
        {
            "key": f"{codebook_id}/meta",
            "codebook_id": codebook_id,
            "level": -1,
            "code": -1,
            "meta": meta,
            VECTOR_FIELD: [0.0] * dim,
        }
    ]
    for level in range(levels):
        for code in range(codes):
            rows.append(
                {
                    "key": f"{codebook_id}/{level}/{code}",
                    "codebook_id": codebook_id,
                    "level": level,
                    "code": code,
                    "meta": "",
                    VECTOR_FIELD: _vector(centroids[level, code]),
                }
            )
    return rows


def user_row(
    user_id: str,
    slot: int,
    updated_at_ms: int,
    event_count: int,
    recent_item_ids: str,
    model_version: str,
    vector: Sequence[float] | Any,
    positive_item_ids: str = "",
) -> dict[str, object]:
    """One row of `users_collection` (one interest slot of a user; the key is `user_key`)."""
    return {
        "user_key": user_key(user_id, slot),
        "user_id": user_id,
        "slot": slot,
        "updated_at_ms": updated_at_ms,
        "event_count": event_count,
        "recent_item_ids": recent_item_ids,
        "positive_item_ids": positive_item_ids,
        "model_version": model_version,
        VECTOR_FIELD: _vector(vector),
    }


def row_problem(spec: CollectionSpec, row: Mapping[str, object]) -> str | None:
    """Why Milvus would refuse `row` for `spec` (None: it fits): a missing field, a VARCHAR over its
    length in UTF-8 bytes, an integer outside int64, a vector of another width or with NaN/inf."""
    for field in spec.fields:
        if field.name not in row:
            return f"{spec.name}.{field.name}: missing"
        value = row[field.name]
        if field.type == "varchar":
            if not isinstance(value, str):
                return f"{spec.name}.{field.name}: expected str, got {type(value).__name__}"
            size = len(value.encode("utf-8", "surrogatepass"))
            if size > field.max_length:
                return f"{spec.name}.{field.name}: {size} UTF-8 bytes > VARCHAR({field.max_length})"
        elif field.type == "int64":
            if isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
                return f"{spec.name}.{field.name}: {value!r} is not an int64"
        elif field.type == "sparse_vector":
            if not isinstance(value, Mapping) or not value:
                return f"{spec.name}.{field.name}: expected a non-empty {{dimension: weight}} mapping"
            if not all(isinstance(d, int) for d in value) or min(value) < 0 or max(value) >= SPARSE_DIMS:
                return f"{spec.name}.{field.name}: a dimension outside 0..{SPARSE_DIMS - 1}"
            if not math.isfinite(sum(value.values())):  # (as for dense vectors below)
                return f"{spec.name}.{field.name}: NaN or infinite weight"
        elif hasattr(value, "dtype"):  # an array (what the workers' rows hold): the same checks, in its own code
            array: Any = value
            if getattr(array, "ndim", 0) != 1 or len(array) != field.dim or array.dtype.kind != "f":
                return f"{spec.name}.{field.name}: expected {field.dim} floats"
            if not math.isfinite(float(array.sum(dtype="float64"))):  # (as below)
                return f"{spec.name}.{field.name}: NaN or infinite component"
        else:
            values = value if isinstance(value, list | tuple) else None
            if values is None or len(values) != field.dim:
                return f"{spec.name}.{field.name}: expected {field.dim} floats"
            # one C-level sum is finite exactly when every component is (NaN and inf carry through it, and
            # float32-sized values cannot overflow a double): 1 us a row against 9 us for a check per component
            if not math.isfinite(sum(values)):
                return f"{spec.name}.{field.name}: NaN or infinite component"
    return None


def probe_row(spec: CollectionSpec, key: str) -> dict[str, object]:
    """A row `spec` certainly accepts, keyed `key`, for probing that Milvus takes writes (then delete it)."""
    row: dict[str, object] = {}
    for field in spec.fields:
        if field.type == "varchar":
            row[field.name] = key if field.is_primary else CANARY
        elif field.type == "int64":
            row[field.name] = 0
        elif field.type == "sparse_vector":
            row[field.name] = {0: 1.0}
        else:
            row[field.name] = [1.0] + [0.0] * (field.dim - 1)
    return row
