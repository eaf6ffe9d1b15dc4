"""The recall HTTP API (aiohttp) over `streams.recall.query.Recall`."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict
from typing import Any

from aiohttp import web

from streams.recall.query import Recall, Recalled, RecallError, VersionMismatch
from streams.sinks.milvus import timed_calls


def _int_arg(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise RecallError(400, f"{name} must be an integer, got {raw!r}") from exc


def _error_body(exc: RecallError) -> dict[str, str]:
    """{"error": message}, with "reason" when the error has one, and both versions for a version mismatch."""
    body = {"error": str(exc)}
    if exc.reason:
        body["reason"] = exc.reason
    if isinstance(exc, VersionMismatch):
        body |= {"model_version": exc.model_version, "query_model_version": exc.query_model_version}
    return body


def server_timing(calls: list[tuple[str, float]], total_s: float) -> str:
    """The W3C Server-Timing header of a recall answer: Milvus's time per operation (summed over its
    calls) and the whole request's, in ms: `milvus-get;dur=3.1, milvus-search;dur=12.4, total;dur=16.9`."""
    per: dict[str, float] = defaultdict(float)
    for operation, seconds in calls:
        per[operation] += seconds
    parts = [f"milvus-{operation};dur={seconds * 1000:.1f}" for operation, seconds in per.items()]
    return ", ".join([*parts, f"total;dur={total_s * 1000:.1f}"])


def recall_app(recall: Recall) -> web.Application:
    """GET /v1/users/{user_id}/items, GET /v1/items/{item_id}/similar, GET /healthz.

    Query parameters: k, created_after_ms, exclude_creator, exclude (comma list, users only), dim,
    consistency (Strong | Session | Bounded | Eventually), channel (dense | sid | mixed | collab | fused;
    absent: SAIL_RECALL_CHANNEL, fused by default).

    200: {"items": [{item_id, score, creator_id, created_at_ms, model_version, channel, query_model_version}]},
    the item's `model_version` equal to the query vector's `query_model_version` in every item. Errors:
    {"error": message} with 400 (bad parameter), 404 (unknown user or item) or 409 (no codebook for
    sid/mixed; or "reason": "model_version.mismatch" with "model_version" and "query_model_version":
    the query vector is of another model version than the items, so nothing is served).
    Every answer has a Server-Timing header: Milvus's time per operation and the request's (`server_timing`).
    """

    async def respond(request: web.Request, call: Any) -> web.Response:
        began = time.perf_counter()
        with timed_calls() as calls:
            try:
                results = await call(
                    k=_int_arg(request, "k") or 10,
                    created_after_ms=_int_arg(request, "created_after_ms"),
                    exclude_creator=request.query.get("exclude_creator") or None,
                    dim=_int_arg(request, "dim"),
                    consistency=request.query.get("consistency", "Bounded"),
                    channel=request.query.get("channel") or None,
                )
                response = web.json_response({"items": [asdict(r) for r in results]})
            except RecallError as exc:
                response = web.json_response(_error_body(exc), status=exc.status)
        response.headers["Server-Timing"] = server_timing(calls, time.perf_counter() - began)
        return response

    async def user_items(request: web.Request) -> web.Response:
        exclude = [i for i in request.query.get("exclude", "").split(",") if i]

        async def call(**kwargs: Any) -> list[Recalled]:
            return await recall.user_to_item(request.match_info["user_id"], exclude_items=exclude, **kwargs)

        return await respond(request, call)

    async def similar_items(request: web.Request) -> web.Response:
        async def call(**kwargs: Any) -> list[Recalled]:
            return await recall.item_to_item(request.match_info["item_id"], **kwargs)

        return await respond(request, call)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/v1/users/{user_id}/items", user_items)
    app.router.add_get("/v1/items/{item_id}/similar", similar_items)
    app.router.add_get("/healthz", healthz)
    return app
