"""Media resolution against a real file system and a real HTTP server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from streams.media import MediaResolver
from topology import reasons
from topology.codec import BadInput
from topology.messages import Media


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(body=b"JPEGDATA" * 10)

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    app = web.Application()
    app.router.add_get("/ok.jpg", ok)
    app.router.add_get("/big.jpg", big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def resolver() -> AsyncIterator[MediaResolver]:
    r = MediaResolver(max_bytes=1000, timeout_s=5.0)
    await r.start()
    yield r
    await r.close()


async def test_inline_and_file_and_http_media_resolve_to_bytes(resolver: MediaResolver, server: str, tmp_path: Path) -> None:
    (tmp_path / "cover.jpg").write_bytes(b"\xff\xd8cover")
    assert await resolver.resolve(None, "cover") is None
    assert await resolver.resolve(Media.inline(b"abc"), "cover") == b"abc"
    assert await resolver.resolve(Media.at(f"file://{tmp_path}/cover.jpg"), "cover") == b"\xff\xd8cover"
    assert await resolver.resolve(Media.at(f"{server}/ok.jpg"), "cover") == b"JPEGDATA" * 10


@pytest.mark.parametrize(("path", "message"), [("/missing.jpg", "HTTP 404"), ("/big.jpg", "more than 1000 bytes")])
async def test_unreadable_http_media_is_bad_input(resolver: MediaResolver, server: str, path: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as info:
        await resolver.resolve(Media.at(f"{server}{path}"), "cover")
    assert info.value.reason == reasons.MEDIA_UNREADABLE


async def test_missing_or_oversized_file_is_bad_input(resolver: MediaResolver, tmp_path: Path) -> None:
    (tmp_path / "huge.jpg").write_bytes(b"x" * 2000)
    for uri, message in ((f"file://{tmp_path}/nope.jpg", "FileNotFoundError"), (f"file://{tmp_path}/huge.jpg", "2000 bytes > limit 1000")):
        with pytest.raises(BadInput, match=message) as info:
            await resolver.resolve(Media.at(uri), "frames[0]")
        assert info.value.reason == reasons.MEDIA_UNREADABLE


async def test_unreachable_host_is_bad_input_after_the_timeout(tmp_path: Path) -> None:
    from deploy.local.stack import free_ports

    (port,) = free_ports(1)
    r = MediaResolver(max_bytes=1000, timeout_s=1.0)
    await r.start()
    try:
        with pytest.raises(BadInput, match="ClientConnectorError|Connect") as info:
            await r.resolve(Media.at(f"http://127.0.0.1:{port}/x.jpg"), "cover")
        assert info.value.reason == reasons.MEDIA_UNREADABLE
    finally:
        await r.close()
