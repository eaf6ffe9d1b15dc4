"""`stack up` twice is harmless, the default stack listens on loopback only, and `down` leaves no process
behind, on a stack of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.cli import main
from deploy.local.process import group_members, listening_addresses
from deploy.local.stack import SERVICES, PortBusy, Stack, port_free
from tests.support.stack import stack_settings

pytestmark = pytest.mark.integration
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def test_up_twice_then_down_leaves_nothing_running(tmp_path: Path) -> None:
    lines: list[str] = []
    stack = Stack(stack_settings(tmp_path / "state"), progress=lines.append)
    try:
        first = stack.up()
        assert [s.state for s in first] == ["running"] * 3
        records = {name: stack._procs[name].record() for name in SERVICES}
        assert all(r is not None and r.start_s > 0 for r in records.values())
        # nothing of the default stack listens beyond loopback: every listening socket of every process of
        # Kafka, Milvus Lite and Triton (the JVM's and Triton's own ports included), not only the configured ones
        listening = {name: listening_addresses(r.pgid) for name, r in records.items() if r is not None}
        assert all(listening.values()) and set(listening) == set(SERVICES)
        assert all(ip in LOOPBACK for found in listening.values() for ip, _ in found), listening
        assert any(f"topics ready ({len(stack.settings.topics().all())} created" in line for line in lines)

        lines.clear()
        second = stack.up()
        assert [s.pid for s in second] == [s.pid for s in first]  # nothing restarted
        assert sum("already running" in line for line in lines) == 3
        assert any(f"topics ready (0 created, {len(stack.settings.topics().all())} existed)" in line for line in lines)
        wanted = len(stack.settings.stored_collections())  # items and users, and the collaborative pair
        assert any(f"collections ready (0 created, {wanted} existed)" in line for line in lines)
    finally:
        stopped = stack.down()
    assert sorted(stopped) == sorted(SERVICES)
    for record in records.values():
        assert record is not None and group_members(record.pgid) == []
    assert all(s.state == "stopped" for s in stack.status())
    for name in SERVICES:
        assert all(port_free(host, port) for host, port in stack._ports(name))
    assert stack.down() == []  # down twice is harmless too


def test_status_command_reports_a_stopped_stack_with_exit_code_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = stack_settings(tmp_path / "state")
    monkeypatch.setenv("SAIL_STATE_DIR", str(settings.state_dir))
    monkeypatch.setenv("SAIL_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    assert main(["stack", "status"]) == 3
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["SERVICE", "STATE", "ADDRESS"]
    assert "kafka    stopped" in out


def test_port_taken_by_a_foreign_process_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    settings = stack_settings(tmp_path / "state")
    host, port = settings.milvus_uri.removeprefix("http://").split(":")
    with socket.socket() as squatter:
        squatter.bind((host, int(port)))
        squatter.listen()
        with pytest.raises(PortBusy, match=f"milvus: port 127.0.0.1:{port} is in use"):
            Stack(settings).up(["milvus"])
