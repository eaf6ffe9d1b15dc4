"""A small synchronous client of the recall HTTP API (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Literal

from streams.recall.query import VERSION_MISMATCH, Recalled, RecallError, VersionMismatch


def parse_server_timing(header: str) -> dict[str, float]:
    """`name;dur=ms, ...` -> {name: ms}; entries without a duration are left out."""
    out: dict[str, float] = {}
    for entry in header.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if name and key == "dur":
                out[name] = float(value)
    return out


class RecallClient:
    """A small synchronous client of the recall HTTP API (standard library only).

    Each `Recalled` carries the item's `model_version` and the query vector's `query_model_version`;
    a 409 for a version mismatch raises `VersionMismatch` (a `RecallError`) with both versions.
    """

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self._base = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self.last_timing: dict[str, float] = {}  # the last answer's Server-Timing, ms by name

    def _get(self, path: str, params: dict[str, Any]) -> list[Recalled]:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        try:
            with urllib.request.urlopen(f"{self._base}{path}?{query}", timeout=self._timeout_s) as response:
                body = json.loads(response.read())
                self.last_timing = parse_server_timing(response.headers.get("Server-Timing", ""))
        except urllib.error.HTTPError as exc:
            error = json.loads(exc.read() or b"{}")
            detail = str(error.get("error", exc))
            if exc.code == 409 and error.get("reason") == VERSION_MISMATCH:
                raise VersionMismatch(
                    str(error.get("query_model_version", "")), str(error.get("model_version", "")), detail
                ) from exc
            status: Literal[400, 404, 409] = 404 if exc.code == 404 else 409 if exc.code == 409 else 400
            raise RecallError(status, detail, str(error.get("reason", ""))) from exc
        return [Recalled(**item) for item in body["items"]]

    def user_items(self, user_id: str, k: int = 10, **filters: Any) -> list[Recalled]:
        """Top-k unseen items for a user; filters: created_after_ms, exclude_creator, exclude (list), dim, consistency."""
        if isinstance(filters.get("exclude"), list):
            filters["exclude"] = ",".join(filters["exclude"])
        return self._get(f"/v1/users/{urllib.parse.quote(user_id, safe='')}/items", {"k": k, **filters})

    def similar_items(self, item_id: str, k: int = 10, **filters: Any) -> list[Recalled]:
        """Top-k items similar to an item; filters: created_after_ms, exclude_creator, dim, consistency."""
        return self._get(f"/v1/items/{urllib.parse.quote(item_id, safe='')}/similar", {"k": k, **filters})
