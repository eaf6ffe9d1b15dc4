"""Resolve an upload's media to bytes: inline, `file://` or `http(s)://`, with size and time limits.

A URI that cannot be read within its limits is bad input for that item (`media.unreadable`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp

from topology import reasons
from topology.codec import BadInput
from topology.messages import Media

logger = logging.getLogger(__name__)


class MediaResolver:
    """Fetches media for the content agent; open with `await start()` (one HTTP session per worker)."""

    def __init__(self, max_bytes: int, timeout_s: float) -> None:
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def resolve(self, media: Media | None, where: str) -> bytes | None:
        """The bytes of `media` (None stays None).

        Raises:
            BadInput: `media.unreadable` - missing file, HTTP error, timeout, over the size limit.
        """
        if media is None:
            return None
        if media.data is not None:
            return media.data
        assert media.uri is not None
        parts = urlsplit(media.uri)
        try:
            if parts.scheme == "file":
                return await asyncio.to_thread(self._read_file, Path(unquote(parts.path)))
            return await self._fetch(media.uri)
        except BadInput:
            raise
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise BadInput(reasons.MEDIA_UNREADABLE, f"{where}: {media.uri}: {type(exc).__name__}: {exc}"[:300]) from exc

    def _read_file(self, path: Path) -> bytes:
        size = path.stat().st_size
        if size > self._max_bytes:
            raise BadInput(reasons.MEDIA_UNREADABLE, f"{path}: {size} bytes > limit {self._max_bytes}")
        return path.read_bytes()

    async def _fetch(self, uri: str) -> bytes:
        if self._session is None:
            raise RuntimeError("MediaResolver used before start()")
        async with self._session.get(uri) as response:
            if response.status != 200:
                raise BadInput(reasons.MEDIA_UNREADABLE, f"{uri}: HTTP {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > self._max_bytes:
                    raise BadInput(reasons.MEDIA_UNREADABLE, f"{uri}: more than {self._max_bytes} bytes")
            return bytes(body)
