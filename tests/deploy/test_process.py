"""ManagedProcess against real processes: a shell that forks a child, so group handling is tested."""

import socket
import sys
import time
from pathlib import Path

import pytest

from deploy.local.process import ManagedProcess, ServiceFailed, group_members
from deploy.local.stack import port_free

FORKING = [
    sys.executable,
    "-c",
    "import subprocess,time; subprocess.Popen(['sleep','300']); print('up', flush=True); time.sleep(300)",
]


def test_stop_kills_the_whole_group_and_forgets_the_record(tmp_path: Path) -> None:
    proc = ManagedProcess("svc", tmp_path)
    record = proc.start(FORKING, env={"PATH": "/usr/bin:/bin"})
    deadline = time.monotonic() + 10
    while len(group_members(record.pgid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(group_members(record.pgid)) == 2  # the python parent and its sleep child
    assert proc.is_running()
    assert proc.stop(grace_s=5)
    assert group_members(record.pgid) == []
    assert not proc.is_running()
    assert proc.record() is None
    assert proc.stop() is False  # stopping twice is harmless


def test_sigterm_ignoring_process_is_killed_after_grace(tmp_path: Path) -> None:
    proc = ManagedProcess("stubborn", tmp_path)
    code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(300)"
    record = proc.start([sys.executable, "-c", code], env={})
    deadline = time.monotonic() + 10
    while "ready" not in proc.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.stop(grace_s=0.5)
    assert group_members(record.pgid) == []


def test_dead_process_is_reported_with_its_log(tmp_path: Path) -> None:
    proc = ManagedProcess("crashy", tmp_path)
    proc.start([sys.executable, "-c", "import sys; print('boom: bad config', flush=True); sys.exit(3)"], env={})
    deadline = time.monotonic() + 10
    while proc.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ServiceFailed, match="boom: bad config"):
        proc.ensure_alive()
    proc.stop()


def test_port_free_sees_a_listening_socket() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not port_free("127.0.0.1", port)
    assert port_free("127.0.0.1", port)
