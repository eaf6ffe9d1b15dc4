"""Run a server that binds every interface in a network namespace of its own, reachable on one
loopback port of the host only.

Why: the `milvus` package's standalone server (2.3.5, the newest served here) binds its internal
gRPC ports and its metrics port on every interface, and its configuration cannot change that
(milvus-io/milvus#26538). In a fresh network namespace the only interface is its own loopback, so
nothing it opens can be reached from another host, or from this one; the one port clients need is
forwarded from the host's loopback.

How, in one process: the host-side socket is bound on 127.0.0.1 first; then the process moves to a new
network namespace (`unshare(CLONE_NEWNET)`: root or CAP_SYS_ADMIN), brings its
loopback up and starts the server, which inherits the namespace. The socket bound before the move
stays in the host's namespace; each connection accepted on it is joined to one the process opens after
the move, to the server's port inside. The forwarder exits when the server does, with its exit code,
and passes SIGTERM and SIGINT on.

    python -m deploy.local.netns --listen 127.0.0.1:19530 --to-port 19530 -- milvus-server ...
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import fcntl
import os
import signal
import socket
import struct
import sys
from collections.abc import Sequence

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


class NamespaceUnavailable(RuntimeError):
    """This process may not make a network namespace (not root, no CAP_SYS_ADMIN)."""


def enter_new_network_namespace() -> None:
    """Move this process into a new network namespace with its loopback up.

    Raises:
        NamespaceUnavailable: the kernel refused (with its reason).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise NamespaceUnavailable(f"unshare(CLONE_NEWNET) failed: {os.strerror(errno)} (needs root or CAP_SYS_ADMIN)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy `reader` to `writer` until either side ends, then close `writer` (one direction of a TCP
    forward; the tests' TLS proxy uses it too)."""
    try:
        while chunk := await reader.read(256 * 1024):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def forward(listener: socket.socket, to_port: int, child: asyncio.subprocess.Process) -> int:
    """Join each connection on `listener` to 127.0.0.1:`to_port` of this namespace until `child` exits;
    its exit code."""

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", to_port)
        except OSError:  # not listening yet: the client sees the connection closed and tries again
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    server = await asyncio.start_server(serve, sock=listener)
    async with server:
        return await child.wait()


async def _run(listen: tuple[str, int], to_port: int, command: Sequence[str]) -> int:
    listener = socket.create_server(listen, reuse_port=False)  # in the host's namespace: bound before the move
    enter_new_network_namespace()
    child = await asyncio.create_subprocess_exec(*command)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, child.send_signal, sig)
    return await forward(listener, to_port, child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.netns",
        description="Run COMMAND in a network namespace of its own, reachable only through one port forwarded from "
        "the host's loopback.",
    )
    parser.add_argument("--listen", required=True, metavar="HOST:PORT", help="the host-side address (loopback)")
    parser.add_argument("--to-port", type=int, required=True, help="the port COMMAND listens on inside the namespace")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a COMMAND to run is required after --")
    host, _, port = args.listen.rpartition(":")
    try:
        return asyncio.run(_run((host, int(port)), args.to_port, command))
    except NamespaceUnavailable as exc:
        print(f"deploy.local.netns: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
