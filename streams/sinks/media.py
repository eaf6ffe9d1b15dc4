"""Resolve an upload's media to bytes: inline, `file://` or `http(s)://`, safe by default.

Media URIs come from untrusted messages, so they are claims to check, not paths to follow:
- `file://` only under the configured media roots (after resolving symlinks and `..`): that is what
  keeps `/proc` out, since some of its entries (`/proc/self/environ`) are regular files to `stat`;
  regular files only (no device or FIFO), read to at most the size limit whatever `stat` says;
- `http(s)://` only to public addresses or the allowed hosts: every host name is checked after DNS
  resolution, at connect time (the checked address is the one connected to, so DNS rebinding gets
  nothing), literal addresses before the request, and every redirect hop again; size and time limits.
A URI outside the policy is `media.forbidden`; one that cannot be read within its limits is
`media.unreadable`. Both are bad input for that item only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from topology import reasons
from topology.codec import BadInput
from topology.messages import Media
from topology.settings import MediaPolicy

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ForbiddenAddress(OSError):
    """A host resolved only to addresses the media policy refuses."""


class AddressPolicy:
    """Which hosts and addresses http(s) media may come from: public addresses, plus allowed names,
    addresses and networks."""

    def __init__(self, allow_hosts: Sequence[str] = ()) -> None:
        self._names = frozenset(h for h in allow_hosts if not _is_network(h))
        self._networks = tuple(ipaddress.ip_network(h, strict=False) for h in allow_hosts if _is_network(h))

    def allows_name(self, host: str) -> bool:
        return host.lower().rstrip(".") in self._names

    def allows_address(self, address: str) -> bool:
        ip: IpAddress = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
        if str(ip) in self._names or any(ip in net for net in self._networks):
            return True
        return ip.is_global and not ip.is_multicast


def _is_network(host: str) -> bool:
    try:
        ipaddress.ip_network(host, strict=False)
    except ValueError:
        return False
    return True


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, keeping only the addresses the policy allows (checked where the socket is
    opened, so a name cannot resolve to a public address for the check and a private one after)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._policy.allows_name(host):
            return results
        allowed = [r for r in results if self._policy.allows_address(r["host"])]
        if not allowed:
            raise ForbiddenAddress(
                f"{host} resolves to {', '.join(sorted({r['host'] for r in results}))}: not a public address and not allowed"
            )
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class MediaResolver:
    """Fetches media for the content agent; open with `await start()` (one HTTP session per worker)."""

    def __init__(self, max_bytes: int, timeout_s: float, policy: MediaPolicy = MediaPolicy()) -> None:
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._roots = tuple(Path(os.path.realpath(root)) for root in policy.roots)
        self._addresses = AddressPolicy(policy.allow_hosts)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._addresses))
        # no per-request timeout here: `resolve` bounds the whole fetch, every redirect hop included
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None), trust_env=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def resolve(self, media: Media | None, where: str) -> bytes | None:
        """The bytes of `media` (None stays None).

        Raises:
            BadInput: `media.forbidden` - outside the policy; `media.unreadable` - missing file, HTTP
                error, timeout, over the size limit.
        """
        if media is None:
            return None
        if media.data is not None:
            return media.data
        assert media.uri is not None
        parts = urlsplit(media.uri)
        try:
            if parts.scheme == "file":
                return await asyncio.to_thread(self._read_file, unquote(parts.path), where)
            async with asyncio.timeout(self._timeout_s):
                return await self._fetch(media.uri, where)
        except BadInput:
            raise
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ForbiddenAddress):
                raise BadInput(reasons.MEDIA_FORBIDDEN, f"{where}: {media.uri}: {exc.os_error}"[:300]) from exc
            raise BadInput(reasons.MEDIA_UNREADABLE, f"{where}: {media.uri}: {type(exc).__name__}: {exc}"[:300]) from exc
        except (OSError, aiohttp.ClientError, TimeoutError) as exc:
            raise BadInput(reasons.MEDIA_UNREADABLE, f"{where}: {media.uri}: {type(exc).__name__}: {exc}"[:300]) from exc

    def _read_file(self, raw_path: str, where: str) -> bytes:
        path = Path(os.path.realpath(raw_path))  # symlinks and `..` resolved before the root check
        if not any(path.is_relative_to(root) for root in self._roots):
            allowed = ", ".join(map(str, self._roots)) or "none configured (SAIL_MEDIA_ROOTS)"
            raise BadInput(reasons.MEDIA_FORBIDDEN, f"{where}: {raw_path} is outside the media roots ({allowed})")
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: no symlink swapped in since
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BadInput(reasons.MEDIA_FORBIDDEN, f"{where}: {raw_path} is not a regular file")
            body = bytearray()
            while chunk := os.read(fd, min(1 << 20, self._max_bytes + 1 - len(body))):  # bounded, whatever stat says
                body += chunk
                if len(body) > self._max_bytes:
                    raise BadInput(reasons.MEDIA_UNREADABLE, f"{where}: {raw_path}: more than {self._max_bytes} bytes")
            return bytes(body)
        finally:
            os.close(fd)

    def _check_url(self, url: str, where: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadInput(reasons.MEDIA_FORBIDDEN, f"{where}: {url}: only http(s) URLs with a host are fetched")
        host = parts.hostname
        # literal addresses never reach the resolver, so they are checked here; names are checked there
        if _is_address(host) and not self._addresses.allows_address(host):
            raise BadInput(reasons.MEDIA_FORBIDDEN, f"{where}: {url}: {host} is not a public address and not allowed")

    async def _fetch(self, uri: str, where: str) -> bytes:
        if self._session is None:
            raise RuntimeError("MediaResolver used before start()")
        url = uri
        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(url, where)
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                    url = urljoin(url, response.headers["Location"])  # the next hop is checked like the first
                    continue
                if response.status != 200:
                    raise BadInput(reasons.MEDIA_UNREADABLE, f"{where}: {url}: HTTP {response.status}")
                return await self._read_body(response, url, where)
        raise BadInput(reasons.MEDIA_UNREADABLE, f"{where}: {uri}: more than {MAX_REDIRECTS} redirects")

    async def _read_body(self, response: Any, url: str, where: str) -> bytes:
        declared = response.content_length
        if declared is not None and declared > self._max_bytes:
            raise BadInput(reasons.MEDIA_UNREADABLE, f"{where}: {url}: {declared} bytes > limit {self._max_bytes}")
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > self._max_bytes:
                raise BadInput(reasons.MEDIA_UNREADABLE, f"{where}: {url}: more than {self._max_bytes} bytes")
        return bytes(body)
