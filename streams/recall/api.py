"""The recall HTTP API (aiohttp) over `streams.recall.query.Recall`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from streams.recall.query import Recall, Recalled, RecallError


def _int_arg(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise RecallError(400, f"{name} must be an integer, got {raw!r}") from exc


def recall_app(recall: Recall) -> web.Application:
    """GET /v1/users/{user_id}/items, GET /v1/items/{item_id}/similar, GET /healthz.

    Query parameters: k, created_after_ms, exclude_creator, exclude (comma list, users only), dim,
    consistency (Strong | Session | Bounded | Eventually), channel (dense | sid | mixed).
    """

    async def respond(request: web.Request, call: Any) -> web.Response:
        try:
            results = await call(
                k=_int_arg(request, "k") or 10,
                created_after_ms=_int_arg(request, "created_after_ms"),
                exclude_creator=request.query.get("exclude_creator") or None,
                dim=_int_arg(request, "dim"),
                consistency=request.query.get("consistency", "Bounded"),
                channel=request.query.get("channel", "dense"),
            )
        except RecallError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        return web.json_response({"items": [asdict(r) for r in results]})

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
