"""A small synchronous client of the recall HTTP API (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from streams.recall.query import Recalled, RecallError


class RecallClient:
    """A small synchronous client of the recall HTTP API (standard library only)."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self._base = base_url.rstrip("/")
        self._timeout_s = timeout_s

    def _get(self, path: str, params: dict[str, Any]) -> list[Recalled]:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        try:
            with urllib.request.urlopen(f"{self._base}{path}?{query}", timeout=self._timeout_s) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("error", str(exc))
            raise RecallError(exc.code if exc.code in (400, 404) else 400, detail) from exc  # type: ignore[arg-type]
        return [Recalled(**item) for item in body["items"]]

    def user_items(self, user_id: str, k: int = 10, **filters: Any) -> list[Recalled]:
        """Top-k unseen items for a user; filters: created_after_ms, exclude_creator, exclude (list), dim, consistency."""
        if isinstance(filters.get("exclude"), list):
            filters["exclude"] = ",".join(filters["exclude"])
        return self._get(f"/v1/users/{urllib.parse.quote(user_id, safe='')}/items", {"k": k, **filters})

    def similar_items(self, item_id: str, k: int = 10, **filters: Any) -> list[Recalled]:
        """Top-k items similar to an item; filters: created_after_ms, exclude_creator, dim, consistency."""
        return self._get(f"/v1/items/{urllib.parse.quote(item_id, safe='')}/similar", {"k": k, **filters})
