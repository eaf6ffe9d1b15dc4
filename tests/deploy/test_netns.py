"""`deploy.local.netns`: a server that binds every interface, run in a network namespace of its own,
reachable on one forwarded loopback port and on nothing else (the Milvus server's containment)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from deploy.local.process import group_members, listening_addresses
from deploy.local.stack import free_ports


def test_a_server_bound_to_every_interface_is_reached_through_loopback_only() -> None:
    outside, inside = free_ports(2)
    forwarder = [sys.executable, "-m", "deploy.local.netns", "--listen", f"127.0.0.1:{outside}", "--to-port", str(inside)]
    server = [sys.executable, "-m", "http.server", str(inside), "--bind", "0.0.0.0"]
    proc = subprocess.Popen(
        [*forwarder, "--", *server],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline, body = time.monotonic() + 30, b""
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{outside}/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        assert b"Directory listing" in body  # the server answered through the forwarded port
        assert len(group_members(proc.pid)) == 2  # the forwarder and the server
        # From this namespace: only the forwarded port, on loopback; the server's 0.0.0.0 socket is not here
        assert listening_addresses(proc.pid) == {("127.0.0.1", outside)}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    assert group_members(proc.pid) == []
