"""The pymilvus adapter: collections from `topology.collections` specs, and the async sink.

Collection admin (create, index, load) is synchronous and runs at start-up; upserts and reads on the
hot path go through `AsyncMilvusClient`. Library errors become ours, so callers choose by type:
`MilvusUnavailable` (retry with backoff) or `MilvusRejected` (the request carries a value Milvus will
never accept). `upsert_each` stores what Milvus accepts of a batch and names the rows it refuses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import grpc
import numpy as np
from numpy.typing import NDArray
from pymilvus import AsyncMilvusClient, DataType, MilvusClient, MilvusException
from pymilvus.client.prepare import Prepare
from pymilvus.exceptions import (
    ConnectError,
    DataNotMatchException,
    DataTypeNotMatchException,
    FieldTypeException,
    MilvusUnavailableException,
    ParamError,
    PrimaryKeyException,
)

from streams.sinks.isolation import Verdict, isolate
from topology.collections import (
    CANARY,
    SPARSE_INDEX,
    Backend,
    CollectionSpec,
    FieldSpec,
    IndexSpec,
    index_for,
    probe_row,
    row_problem,
)
from topology.settings import Settings, TlsFiles

logger = logging.getLogger(__name__)

T = TypeVar("T")
Consistency = Literal["Strong", "Session", "Bounded", "Eventually"]

_TYPES = {
    "varchar": DataType.VARCHAR,
    "int64": DataType.INT64,
    "float_vector": DataType.FLOAT_VECTOR,
    "sparse_vector": DataType.SPARSE_FLOAT_VECTOR,
}


class MilvusUnavailable(RuntimeError):
    """Milvus did not answer or failed a request; retry with backoff, never dead-letter.

    `suspect`: Milvus answered with an error it does not explain (not a lost connection), which may
    come from a record in the request: `upsert_each` then looks for it before retrying.
    """

    def __init__(self, message: str, suspect: bool = False) -> None:
        super().__init__(message)
        self.suspect = suspect


class MilvusRejected(RuntimeError):
    """Milvus refused the request for what it carries (a value its schema cannot hold); retrying the
    same request cannot help."""


# pymilvus raises its own exceptions for most failures, but a connection lost mid-call surfaces as
# the gRPC error itself (seen when Milvus is stopped under load).
MILVUS_FAILURES = (MilvusException, grpc.RpcError)
# pymilvus checks rows against the schema before sending them (an int beyond int64 is
# DataNotMatchException); Milvus's own codes 1100-1199 are invalid parameters.
_INVALID_REQUEST = (ParamError, DataNotMatchException, DataTypeNotMatchException, FieldTypeException, PrimaryKeyException)
_LOST_CONNECTION = (grpc.RpcError, ConnectError, MilvusUnavailableException)


def _failure(exc: Exception, what: str) -> MilvusUnavailable | MilvusRejected:
    """Our error for a pymilvus/gRPC error raised while doing `what`."""
    message = f"{what} failed: {exc}"
    if isinstance(exc, _INVALID_REQUEST) or (isinstance(exc, MilvusException) and 1100 <= exc.code < 1200):
        return MilvusRejected(message)
    return MilvusUnavailable(message, suspect=not isinstance(exc, _LOST_CONNECTION))


_COLLECTION_MISSING = ("collection not found", "can't find collection", "collection_not_exists")


def collection_missing(exc: Exception) -> bool:
    """Whether a failed read failed because its collection does not exist (not Milvus being down)."""
    return any(marker in str(exc).lower() for marker in _COLLECTION_MISSING)


def milvus_verdict(exc: Exception) -> Verdict:
    """How `streams.sinks.isolation` reads a sink error."""
    if isinstance(exc, MilvusRejected):
        return "rejected"
    if isinstance(exc, MilvusUnavailable) and exc.suspect:
        return "suspect"
    return "down"


def milvus_string(value: str) -> str:
    """`value` as a string literal of Milvus's filter expressions (quotes and backslashes escaped,
    other characters as they are: the parser reads `\\uXXXX` escapes as literal text)."""
    return json.dumps(value, ensure_ascii=False)


def milvus_strings(values: Iterable[str]) -> str:
    """A list literal of strings for `field in [...]` filters."""
    return "[" + ", ".join(milvus_string(v) for v in values) + "]"


_timings: ContextVar[list[tuple[str, float]] | None] = ContextVar("milvus_timings", default=None)


@contextmanager
def timed_calls() -> Iterator[list[tuple[str, float]]]:
    """Collects (operation, seconds) of every sink call made in this context: `get`, `search`, `query`...
    (the recall API's Server-Timing header). Tasks started inside it (`asyncio.gather`) add theirs; work
    that belongs to no request runs in a context of its own (the registry's re-read, `Versions.latest`)."""
    calls: list[tuple[str, float]] = []
    token = _timings.set(calls)
    try:
        yield calls
    finally:
        _timings.reset(token)


class SchemaMismatch(RuntimeError):
    """A collection exists with a different shape than its spec (e.g. another embedding width)."""


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    fields: dict[str, Any]


def _client(uri: str, token: str | None, timeout_s: float, tls: TlsFiles | None = None) -> MilvusClient:
    try:
        return MilvusClient(uri=uri, token=token or "", timeout=timeout_s, **(tls.milvus_kwargs() if tls else {}))
    except MILVUS_FAILURES as exc:
        raise MilvusUnavailable(f"Milvus at {uri} did not answer: {exc}") from exc


def check_milvus(uri: str, token: str | None, timeout_s: float = 5.0, tls: TlsFiles | None = None) -> list[str]:
    """The collections Milvus lists, as a health check.

    Raises:
        MilvusUnavailable: no answer within `timeout_s`.
    """
    client = _client(uri, token, timeout_s, tls)
    try:
        return list(client.list_collections(timeout=timeout_s))
    except MILVUS_FAILURES as exc:
        raise MilvusUnavailable(f"Milvus at {uri} failed list_collections: {exc}") from exc
    finally:
        client.close()


def drop_collections(
    uri: str, token: str | None, names: Iterable[str], timeout_s: float = 30.0, tls: TlsFiles | None = None
) -> list[str]:
    """Drop each collection that exists; returns the names dropped.

    Raises:
        MilvusUnavailable: Milvus did not answer.
    """
    client = _client(uri, token, timeout_s, tls)
    dropped = []
    try:
        for name in names:
            if client.has_collection(name):
                client.drop_collection(name)
                dropped.append(name)
    except MILVUS_FAILURES as exc:
        raise MilvusUnavailable(f"Milvus at {uri} refused to drop collections: {exc}") from exc
    finally:
        client.close()
    return dropped


def scan_rows(
    uri: str,
    token: str | None,
    collection: str,
    filter_expr: str,
    fields: Sequence[str],
    batch: int = 1000,
    timeout_s: float = 30.0,
    tls: TlsFiles | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Every row of `collection` matching `filter_expr`, `batch` at a time (pymilvus's query iterator:
    a plain query stops at 16,384 rows). Synchronous: run each step in a thread from async code.

    Raises:
        MilvusUnavailable: Milvus did not answer.
    """
    client = _client(uri, token, timeout_s, tls)
    try:
        iterator = client.query_iterator(collection, batch_size=batch, filter=filter_expr, output_fields=list(fields))
        try:
            while page := iterator.next():
                yield [dict(row) for row in page]
        finally:
            iterator.close()
    except MILVUS_FAILURES as exc:
        raise MilvusUnavailable(f"Milvus at {uri} failed a scan of {collection}: {exc}") from exc
    finally:
        client.close()


def _add_field(schema: Any, spec: FieldSpec) -> None:
    kwargs: dict[str, Any] = {}
    if spec.type == "varchar":
        kwargs["max_length"] = spec.max_length
    if spec.type == "float_vector":
        kwargs["dim"] = spec.dim
    schema.add_field(spec.name, _TYPES[spec.type], is_primary=spec.is_primary, **kwargs)


def _index_params(client: MilvusClient, spec: CollectionSpec, index: IndexSpec) -> Any:
    params = client.prepare_index_params()
    params.add_index(
        field_name=spec.vector_field,
        index_type=index.index_type,
        metric_type=index.metric_type,
        params=dict(index.build_params),
    )
    return params


def ensure_collections(
    uri: str,
    token: str | None,
    specs: Iterable[CollectionSpec],
    backend: Backend,
    timeout_s: float = 30.0,
    tls: TlsFiles | None = None,
) -> list[str]:
    """Create (with index) and load each missing collection; returns the names created (idempotent).

    Raises:
        MilvusUnavailable: Milvus did not answer.
        SchemaMismatch: an existing collection's vector width differs from its spec, or it lacks a field.
    """
    client = _client(uri, token, timeout_s, tls)
    created: list[str] = []
    try:
        for spec in specs:
            if client.has_collection(spec.name):
                _check_schema(client, spec)
            else:
                schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=spec.description)
                for field in spec.fields:
                    _add_field(schema, field)
                client.create_collection(
                    spec.name,
                    schema=schema,
                    index_params=_index_params(client, spec, SPARSE_INDEX if spec.sparse else index_for(backend)),
                    consistency_level="Bounded",
                )
                created.append(spec.name)
                logger.info("created collection=%s dim=%d backend=%s", spec.name, spec.dim, backend)
            client.load_collection(spec.name)
    except MILVUS_FAILURES as exc:
        raise MilvusUnavailable(f"Milvus at {uri} refused collection setup: {exc}") from exc
    finally:
        client.close()
    return created


def _check_schema(client: MilvusClient, spec: CollectionSpec) -> None:
    described = client.describe_collection(spec.name)
    have = {field["name"] for field in described["fields"]}
    missing = [field.name for field in spec.fields if field.name not in have]
    if missing:
        raise SchemaMismatch(
            f"collection {spec.name} has no field {', '.join(missing)}: it was created by an older sail-stream "
            f"(the sid_* fields came with semantic IDs). Re-embed into a new model version (sail-stream reembed), "
            f"which creates its collections with every field, or use another SAIL_MILVUS_COLLECTION_PREFIX"
        )
    for field in described["fields"]:
        if field["name"] == spec.vector_field:
            if spec.sparse:
                if field["type"] != DataType.SPARSE_FLOAT_VECTOR:
                    raise SchemaMismatch(f"collection {spec.name}: {spec.vector_field} is not a sparse vector field")
                return
            dim = int(field["params"]["dim"])
            if dim != spec.dim:
                raise SchemaMismatch(
                    f"collection {spec.name} stores dim={dim} vectors but the settings say {spec.dim}: "
                    f"use another SAIL_MILVUS_COLLECTION_PREFIX or drop the collection"
                )
            return
    raise SchemaMismatch(f"collection {spec.name} has no vector field {spec.vector_field!r}")


def upsert_request(collection: str, rows: Sequence[Mapping[str, Any]], schema: Mapping[str, Any]) -> Any:
    """The `UpsertRequest` of `rows`, packed column by column; None when the rows are not the plain
    case it handles (every row with exactly the schema's fields, none nullable or defaulted, no dynamic
    field, each sparse value an {int dimension: float weight} mapping without NaN, each dense vector the
    schema's width of finite numbers): pymilvus's row path then packs them and names what is wrong.

    pymilvus 2.5's row path packs every field of every row on its own and a sparse vector element by
    element (`struct.pack` twice each): measured here, 64 `users` rows 1.9 ms row-wise against 0.5 ms
    column-wise, and 64 `collab_users` rows of 200 dimensions 15.3 ms against 7.9 (its column path)
    and less again with the sparse rows packed here, one `struct.pack` each. In the live interest
    path the row path was 16 % of the worker's event-loop time (py-spy, bench.interest at 1,600/s).
    Built with pymilvus's own column packer (`Prepare.batch_upsert_param`, what its ORM's upsert
    uses) and Milvus's sparse row format (uint32 dimension, float32 weight pairs, little-endian,
    ascending dimensions); a dense column goes in as its float32 bytes (`_dense_rows`)."""
    fields = schema["fields"]
    names = [f["name"] for f in fields]
    if schema.get("enable_dynamic_field") or schema.get("functions") or not rows:
        return None
    if any(f.get("nullable") or f.get("default_value") is not None or f.get("auto_id") for f in fields):
        return None
    wanted = set(names)
    if len(wanted) != len(names) or any(row.keys() != wanted for row in rows):
        return None
    sparse: dict[str, tuple[list[bytes], int]] = {}
    dense: dict[str, tuple[bytes, int]] = {}
    columns = []
    for f in fields:
        values = [row[f["name"]] for row in rows]
        if f["type"] == DataType.SPARSE_FLOAT_VECTOR:
            packed = _sparse_rows(values)
            if packed is None:
                return None
            sparse[f["name"]] = packed
            values = [{} for _ in values]  # packed above; pymilvus packs empty rows (no elements) in their place
        elif f["type"] == DataType.FLOAT_VECTOR:
            dim = int(f.get("params", {}).get("dim", 0))
            floats = _dense_rows(values, dim)
            if floats is None:
                return None
            dense[f["name"]] = floats, dim
            values = [[] for _ in values]  # packed above, as the sparse rows
        columns.append({"name": f["name"], "type": f["type"], "values": values})
    request = Prepare.batch_upsert_param(collection, columns, "", fields)
    for data in request.fields_data:
        if data.field_name in sparse:
            contents, dim = sparse[data.field_name]
            array = data.vectors.sparse_float_vector
            del array.contents[:]
            array.contents.extend(contents)
            array.dim = dim
        elif data.field_name in dense:
            raw, dim = dense[data.field_name]
            data.vectors.dim = dim
            # FloatArray's `repeated float data = 1`, packed: its tag, the byte length, the little-endian floats
            data.vectors.float_vector.MergeFromString(b"\x0a" + _varint(len(raw)) + raw)
    return request


def _dense_rows(values: Sequence[Any], dim: int) -> bytes | None:
    """The float32 bytes of the rows' vectors, one after the other; None unless every
    value is `dim` finite numbers, an array's of a float type (pymilvus then packs them itself, as
    floats one by one: 1.5 ms for 256 rows of 256, against 0.1 ms from float arrays' bytes here)."""
    if any(isinstance(value, np.ndarray) and value.dtype.kind != "f" for value in values):
        return None
    try:
        matrix = np.asarray(values)
    except ValueError:  # ragged
        return None
    if matrix.ndim != 2 or matrix.shape[1] != dim or matrix.dtype.kind not in "fi":  # not text, bools or objects
        return None
    if not np.isfinite(matrix).all():
        return None
    return matrix.astype("<f4").tobytes()


def _varint(n: int) -> bytes:
    """`n` as a protobuf base-128 varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _sparse_rows(values: Sequence[Any]) -> tuple[list[bytes], int] | None:
    """Milvus's bytes of each sparse row and the width they span; None for anything but int
    dimensions below uint32's last value with float weights, none NaN (pymilvus then packs the rows
    itself: it converts some other types and refuses the rest with its own message)."""
    contents, dim = [], 0
    for value in values:
        if not isinstance(value, Mapping):
            return None
        if not all(type(d) is int and 0 <= d < 2**32 - 1 for d in value):
            return None
        if not all(type(w) is float and not math.isnan(w) for w in value.values()):
            return None
        dims = sorted(value)
        contents.append(struct.pack(f"<{'If' * len(dims)}", *[x for d in dims for x in (d, value[d])]))
        if dims:
            dim = max(dim, dims[-1] + 1)
    return contents, dim


class MilvusSink:
    """Async upserts and reads against one Milvus; open with `await sink.start()`."""

    def __init__(
        self, uri: str, token: str | None, backend: Backend, timeout_s: float = 10.0, tls: TlsFiles | None = None
    ) -> None:
        self._uri = uri
        self._token = token
        self._tls = tls
        self._index = index_for(backend)
        self._timeout_s = timeout_s
        self._client: AsyncMilvusClient | None = None
        self._schemas: dict[str, dict[str, Any]] = {}  # by collection: see `_schema`

    @classmethod
    def for_settings(cls, settings: Settings, timeout_s: float = 10.0) -> MilvusSink:
        """The sink for `settings`: URI, token, backend and TLS."""
        s = settings
        return cls(s.milvus_uri, s.milvus_token_value, s.milvus_backend, timeout_s, s.milvus_tls())

    async def start(self) -> None:
        self._client = AsyncMilvusClient(
            uri=self._uri, token=self._token or "", timeout=self._timeout_s, **(self._tls.milvus_kwargs() if self._tls else {})
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._schemas.clear()

    @property
    def _c(self) -> AsyncMilvusClient:
        if self._client is None:
            raise RuntimeError("MilvusSink used before start()")
        return self._client

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        """`call` within the sink's time limit, its errors translated to ours.

        pymilvus's own `timeout` does not bound everything: a client that has never reached Milvus
        waits for its channel to become ready without a deadline (a worker started while Milvus was
        down hung in its first upsert, silently).
        """
        began = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s + 1.0):
                return await call
        except MILVUS_FAILURES as exc:
            raise _failure(exc, what) from exc
        except TimeoutError as exc:
            raise MilvusUnavailable(f"{what}: no answer within {self._timeout_s + 1.0:.0f}s") from exc
        finally:
            timings = _timings.get()
            if timings is not None:
                timings.append((what.split(" ", 1)[0], time.perf_counter() - began))

    async def _schema(self, collection: str) -> dict[str, Any]:
        """`collection`'s schema as pymilvus describes it, read once and kept. Given to pymilvus, it
        spares the round trip pymilvus otherwise makes before every upsert, get and delete (a
        `DescribeCollection` each: measured on Lite, a 64-row upsert 8.6 -> 7.8 ms, an 8-row get
        1.7 -> 1.2 ms). Forgotten after any failed call that used it, so a collection made again
        with other fields is described again (`upsert` retries a refusal once with a fresh one).

        Raises:
            MilvusUnavailable: the describe failed (the collection missing included).
        """
        schema = self._schemas.get(collection)
        if schema is None:
            # AsyncMilvusClient 2.5 has no public describe; its connection's is what upsert and get call
            describe = self._c._get_connection().describe_collection(collection, timeout=self._timeout_s)
            schema = self._schemas[collection] = await self._call(f"describe {collection}", describe)
        return schema

    def _primary_filter(self, schema: dict[str, Any], ids: Sequence[str]) -> str:
        """`pk in [...]` over the schema's primary field, the ids as escaped string literals."""
        (key,) = (field["name"] for field in schema["fields"] if field.get("is_primary"))
        return f"{key} in {milvus_strings(ids)}"

    async def _with_schema(self, collection: str, what: str, call: Callable[[dict[str, Any]], Awaitable[T]]) -> T:
        """`call(schema)` through `_call`; the kept schema is forgotten when it fails."""
        try:
            return await self._call(what, call(await self._schema(collection)))
        except (MilvusUnavailable, MilvusRejected):
            self._schemas.pop(collection, None)
            raise

    async def upsert(self, collection: str, rows: Sequence[dict[str, Any]]) -> int:
        """Upsert rows keyed by primary key; returns the count Milvus acknowledged.

        Raises:
            MilvusUnavailable: the upsert was not acknowledged.
            MilvusRejected: Milvus refused a value in the rows.
        """
        if not rows:
            return 0
        what = f"upsert of {len(rows)} rows into {collection}"

        async def send(schema: dict[str, Any]) -> int:
            request = upsert_request(collection, rows, schema)
            if request is None:
                result = await self._c.upsert(collection, list(rows), timeout=self._timeout_s, schema=schema)
                return int(result["upsert_count"])
            # the connection's column upsert (what the async client's row upsert hands its packed rows to)
            connection = self._c._get_connection()
            mutation = await connection.upsert(collection, [], timeout=self._timeout_s, upsert_param=request, schema=schema)
            return int(mutation.upsert_count)

        kept = collection in self._schemas
        try:
            result = await self._with_schema(collection, what, send)
        except MilvusRejected:
            if not kept:
                raise
            result = await self._with_schema(collection, what, send)  # the kept schema may be stale: once more, described again
        return result

    async def upsert_each(self, spec: CollectionSpec, rows: Sequence[dict[str, Any]]) -> dict[int, str]:
        """Upsert what Milvus accepts of `rows`; returns the refused rows by index, with the reason
        (checked against `spec` first, then Milvus's own message for what only Milvus knows).

        Raises:
            MilvusUnavailable: Milvus is down or failing every request; nothing is blamed on a row.
        """
        refused = {i: problem for i, row in enumerate(rows) if (problem := row_problem(spec, row)) is not None}
        fit = [i for i in range(len(rows)) if i not in refused]
        if not fit:
            return refused

        async def attempt(part: Sequence[dict[str, Any]]) -> list[None]:
            await self.upsert(spec.name, part)
            return [None] * len(part)

        outcome = await isolate([rows[i] for i in fit], attempt, milvus_verdict, lambda: self.takes_writes(spec))
        refused.update({fit[j]: message for j, message in outcome.rejected.items()})
        return refused

    async def takes_writes(self, spec: CollectionSpec) -> bool:
        """Whether Milvus accepts a known-good row into `spec` now (written, then deleted)."""
        key = f"{CANARY}-probe"
        try:
            await self.upsert(spec.name, [probe_row(spec, key)])
            await self.delete(spec.name, [key])
        except (MilvusUnavailable, MilvusRejected) as exc:
            logger.warning("milvus write probe failed collection=%s: %s", spec.name, str(exc).splitlines()[0][:200])
            return False
        return True

    async def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Delete rows by primary key.

        Raises:
            MilvusUnavailable: the delete failed.
        """
        await self._with_schema(
            collection,
            f"delete from {collection}",
            lambda schema: self._c.delete(collection, filter=self._primary_filter(schema, ids), timeout=self._timeout_s),
        )

    async def get(
        self, collection: str, ids: Sequence[str], fields: Sequence[str] | None = None, consistency: Consistency = "Strong"
    ) -> list[dict[str, Any]]:
        """Rows by primary key, read at Strong consistency unless told otherwise (a get must see the latest
        upsert; recall's reads at Bounded may not).

        Raises:
            MilvusUnavailable: the read failed.
        """
        if not ids:
            return []
        rows = await self._with_schema(
            collection,
            f"get from {collection}",
            lambda schema: self._c.query(
                collection,
                filter=self._primary_filter(schema, ids),
                output_fields=list(fields) if fields else ["*"],
                timeout=self._timeout_s,
                consistency_level=consistency,
            ),
        )
        return [dict(row) for row in rows]

    async def count(self, collection: str, filter_expr: str = "") -> int:
        """Rows of `collection` matching `filter_expr` (all: ""), read-your-writes.

        Raises:
            MilvusUnavailable: the query failed.
        """
        rows = await self._call(
            f"count of {collection}",
            self._c.query(
                collection, filter=filter_expr, output_fields=["count(*)"], consistency_level="Strong", timeout=self._timeout_s
            ),
        )
        return int(rows[0]["count(*)"])

    async def query(
        self, collection: str, filter_expr: str, fields: Sequence[str], limit: int = 16384, consistency: Consistency = "Strong"
    ) -> list[dict[str, Any]]:
        """Rows matching a scalar filter (e.g. `encoded_at_ms >= 1700000000000`).

        Raises:
            MilvusUnavailable: the query failed.
        """
        rows = await self._call(
            f"query of {collection}",
            self._c.query(
                collection,
                filter=filter_expr,
                output_fields=list(fields),
                limit=limit,
                consistency_level=consistency,
                timeout=self._timeout_s,
            ),
        )
        return [dict(row) for row in rows]

    async def search(
        self,
        collection: str,
        vectors: NDArray[np.float32] | Sequence[Mapping[int, float]],
        limit: int,
        vector_field: str,
        output_fields: Sequence[str] = (),
        filter_expr: str = "",
        consistency: Consistency = "Bounded",
    ) -> list[list[Hit]]:
        """Top-`limit` hits for each query vector, best first: dense vectors of shape (n, dim), or
        sparse ones ({dimension: weight} each, searched by exact inner product).

        Raises:
            MilvusUnavailable: the search failed.
        """
        sparse = isinstance(vectors, list | tuple) and bool(vectors) and isinstance(vectors[0], Mapping)
        index = SPARSE_INDEX if sparse else self._index
        results = await self._call(
            f"search in {collection}",
            self._c.search(
                collection,
                data=[dict(v) for v in vectors] if sparse else np.asarray(vectors, dtype=np.float32).tolist(),
                limit=limit,
                anns_field=vector_field,
                filter=filter_expr,
                output_fields=list(output_fields),
                search_params={"metric_type": index.metric_type, "params": dict(index.search_params)},
                consistency_level=consistency,
                timeout=self._timeout_s,
            ),
        )
        return [
            [Hit(id=str(h["id"]), score=float(h["distance"]), fields=dict(h.get("entity", {}))) for h in hits] for hits in results
        ]
