"""Media resolution against a real file system and a real HTTP server on loopback, and the policy
that keeps untrusted URIs away from local files and internal addresses."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from streams.sinks.media import AddressPolicy, MediaResolver
from topology import reasons
from topology.codec import BadInput
from topology.messages import Media
from topology.settings import MediaPolicy


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(body=b"JPEGDATA" * 10)

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    app = web.Application()
    app.router.add_get("/ok.jpg", ok)
    app.router.add_get("/big.jpg", big)
    app.router.add_get("/hop", hop)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def resolver(tmp_path: Path) -> AsyncIterator[MediaResolver]:
    """A resolver whose policy allows this test's folder and the loopback test server by address."""
    r = MediaResolver(max_bytes=1000, timeout_s=5.0, policy=MediaPolicy(roots=(tmp_path,), allow_hosts=("127.0.0.1",)))
    await r.start()
    yield r
    await r.close()


@pytest.fixture
async def default_resolver() -> AsyncIterator[MediaResolver]:
    """The default policy: no media roots, public addresses only."""
    r = MediaResolver(max_bytes=1000, timeout_s=5.0)
    await r.start()
    yield r
    await r.close()


async def _forbidden(resolver: MediaResolver, uri: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as info:
        await resolver.resolve(Media.at(uri), "cover")
    assert info.value.reason == reasons.MEDIA_FORBIDDEN


async def test_inline_and_file_and_http_media_resolve_to_bytes(resolver: MediaResolver, server: str, tmp_path: Path) -> None:
    (tmp_path / "cover.jpg").write_bytes(b"\xff\xd8cover")
    assert await resolver.resolve(None, "cover") is None
    assert await resolver.resolve(Media.inline(b"abc"), "cover") == b"abc"
    assert await resolver.resolve(Media.at(f"file://{tmp_path}/cover.jpg"), "cover") == b"\xff\xd8cover"
    assert await resolver.resolve(Media.at(f"{server}/ok.jpg"), "cover") == b"JPEGDATA" * 10


@pytest.mark.parametrize(("path", "message"), [("/missing.jpg", "HTTP 404"), ("/big.jpg", "5000 bytes > limit 1000")])
async def test_unreadable_http_media_is_bad_input(resolver: MediaResolver, server: str, path: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as info:
        await resolver.resolve(Media.at(f"{server}{path}"), "cover")
    assert info.value.reason == reasons.MEDIA_UNREADABLE


async def test_missing_or_oversized_file_is_bad_input(resolver: MediaResolver, tmp_path: Path) -> None:
    (tmp_path / "huge.jpg").write_bytes(b"x" * 2000)
    for uri, message in (
        (f"file://{tmp_path}/nope.jpg", "FileNotFoundError"),
        (f"file://{tmp_path}/huge.jpg", "more than 1000 bytes"),
    ):
        with pytest.raises(BadInput, match=message) as info:
            await resolver.resolve(Media.at(uri), "frames[0]")
        assert info.value.reason == reasons.MEDIA_UNREADABLE


async def test_a_refused_connection_is_bad_input() -> None:
    from deploy.local.stack import free_ports

    (port,) = free_ports(1)  # nothing listens there
    r = MediaResolver(max_bytes=1000, timeout_s=5.0, policy=MediaPolicy(allow_hosts=("127.0.0.0/8",)))
    await r.start()
    try:
        with pytest.raises(BadInput, match=r"ClientConnectorError|Connect") as info:
            await r.resolve(Media.at(f"http://127.0.0.1:{port}/x.jpg"), "cover")
        assert info.value.reason == reasons.MEDIA_UNREADABLE
    finally:
        await r.close()


async def test_a_host_that_accepts_and_never_answers_is_bad_input_after_the_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # holds the connection open and says nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r = MediaResolver(max_bytes=1000, timeout_s=0.5, policy=MediaPolicy(allow_hosts=("127.0.0.0/8",)))
    await r.start()
    try:
        with pytest.raises(BadInput, match="TimeoutError") as info:
            await asyncio.wait_for(
                r.resolve(Media.at(f"http://127.0.0.1:{port}/x.jpg"), "cover"), timeout=30
            )  # 30: a hang fails here, not at pytest's limit
        assert info.value.reason == reasons.MEDIA_UNREADABLE
        assert accepted  # the request reached the host: it was the silence that timed out
    finally:
        await r.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_by_default_no_local_file_is_read(default_resolver: MediaResolver, tmp_path: Path) -> None:
    (tmp_path / "cover.jpg").write_bytes(b"\xff\xd8cover")
    for uri in (f"file://{tmp_path}/cover.jpg", "file:///etc/passwd", "file:///proc/self/environ"):
        await _forbidden(default_resolver, uri, "outside the media roots")


async def test_paths_escaping_the_root_are_forbidden(resolver: MediaResolver, tmp_path: Path) -> None:
    (tmp_path / "link.jpg").symlink_to("/etc/passwd")
    await _forbidden(resolver, f"file://{tmp_path}/link.jpg", "outside the media roots")
    await _forbidden(resolver, f"file://{tmp_path}/../../etc/passwd", "outside the media roots")


async def test_special_files_under_a_root_are_never_read(tmp_path: Path) -> None:
    """A device reads forever and a FIFO blocks its reader: neither is a regular file, so neither is opened for reading."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    r = MediaResolver(max_bytes=1000, timeout_s=5.0, policy=MediaPolicy(roots=(tmp_path, Path("/dev"))))
    await r.start()
    try:
        await _forbidden(r, f"file://{fifo}", "not a regular file")
        await _forbidden(r, "file:///dev/zero", "not a regular file")
        await _forbidden(r, f"file://{tmp_path}", "not a regular file")
    finally:
        await r.close()


async def test_a_file_is_read_to_the_limit_whatever_its_size_reads_as(tmp_path: Path) -> None:
    """`/proc` files report size 0; the read itself is bounded."""
    r = MediaResolver(max_bytes=16, timeout_s=5.0, policy=MediaPolicy(roots=(Path("/proc"),)))
    await r.start()
    try:
        assert Path("/proc/self/maps").stat().st_size == 0
        with pytest.raises(BadInput, match="more than 16 bytes") as info:
            await r.resolve(Media.at("file:///proc/self/maps"), "cover")
        assert info.value.reason == reasons.MEDIA_UNREADABLE
    finally:
        await r.close()


async def test_internal_addresses_are_refused_by_default(default_resolver: MediaResolver, server: str) -> None:
    port = server.rsplit(":", 1)[1]
    await _forbidden(default_resolver, f"{server}/ok.jpg", "127.0.0.1 is not a public address")
    await _forbidden(default_resolver, f"http://localhost:{port}/ok.jpg", "localhost resolves to .*not a public address")
    await _forbidden(default_resolver, "http://169.254.169.254/latest/meta-data/", "not a public address")
    await _forbidden(default_resolver, "http://10.1.2.3/x.jpg", "not a public address")
    await _forbidden(default_resolver, f"http://[::ffff:127.0.0.1]:{port}/ok.jpg", "not a public address")


async def test_every_redirect_hop_is_checked_again(resolver: MediaResolver, server: str) -> None:
    port = server.rsplit(":", 1)[1]
    assert await resolver.resolve(Media.at(f"{server}/hop?to=/ok.jpg"), "cover") == b"JPEGDATA" * 10
    await _forbidden(resolver, f"{server}/hop?to=http://127.0.0.2:{port}/ok.jpg", "127.0.0.2 is not a public address")
    await _forbidden(resolver, f"{server}/hop?to=http://[::1]:{port}/ok.jpg", "::1 is not a public address")
    await _forbidden(resolver, f"{server}/hop?to=file:///etc/passwd", "only http")


def test_address_policy_allows_public_addresses_and_named_networks() -> None:
    policy = AddressPolicy(("10.0.0.0/8", "media.internal", "fd00::1"))
    assert policy.allows_address("93.184.216.34") and policy.allows_address("2606:4700::1111")
    assert policy.allows_address("10.9.8.7") and policy.allows_address("fd00::1") and policy.allows_name("Media.Internal.")
    for address in (
        "127.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "0.0.0.0",
        "224.0.0.1",
        "100.64.0.1",
        "::ffff:192.168.0.1",
    ):
        assert not policy.allows_address(address), address
