"""Background service processes with pid files: start detached, probe, stop the whole group."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """What `up` wrote down about a started service, read back by `status` and `down`."""

    pid: int
    pgid: int
    started_at: float
    command: tuple[str, ...]
    log: str
    start_s: float = 0.0  # how long the service took to become healthy


class ServiceFailed(RuntimeError):
    """A service exited or stayed unhealthy; the message carries the tail of its log."""


class ManagedProcess:
    """One service process in its own session (process group), tracked by `<dir>/<name>.json`."""

    def __init__(self, name: str, run_dir: Path) -> None:
        self.name = name
        self.run_dir = run_dir
        self.record_path = run_dir / f"{name}.json"
        self.log_path = run_dir / f"{name}.log"

    def record(self) -> ProcessRecord | None:
        try:
            raw = json.loads(self.record_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        raw["command"] = tuple(raw["command"])
        return ProcessRecord(**raw)

    def is_running(self) -> bool:
        record = self.record()
        return record is not None and _group_alive(record.pgid)

    def start(self, command: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> ProcessRecord:
        """Start `command` detached, its output appended to the service log."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(command)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,  # its own process group: `down` signals the group, children included
            )
        record = ProcessRecord(
            pid=proc.pid, pgid=proc.pid, started_at=time.time(), command=tuple(command), log=str(self.log_path)
        )
        self._write(record)
        return record

    def mark_healthy(self, start_s: float) -> None:
        record = self.record()
        if record is not None:
            self._write(ProcessRecord(**{**asdict(record), "start_s": round(start_s, 2)}))

    def _write(self, record: ProcessRecord) -> None:
        self.record_path.write_text(json.dumps(asdict(record)))

    def ensure_alive(self) -> None:
        """Raises:
        ServiceFailed: the process has exited; with the tail of its log.
        """
        if not self.is_running():
            raise ServiceFailed(f"{self.name} exited during start-up. Last log lines ({self.log_path}):\n{self.log_tail()}")

    def stop(self, grace_s: float = 15.0) -> bool:
        """SIGTERM the process group, then SIGKILL what is left after `grace_s`; True if it was running."""
        record = self.record()
        if record is None:
            return False
        was_running = _group_alive(record.pgid)
        if was_running:
            _signal_group(record.pgid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while _group_alive(record.pgid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _group_alive(record.pgid):
                logger.warning("service=%s ignored SIGTERM for %.0fs, sending SIGKILL", self.name, grace_s)
                _signal_group(record.pgid, signal.SIGKILL)
                while _group_alive(record.pgid):
                    time.sleep(0.1)
        _reap(record.pid)
        self.record_path.unlink(missing_ok=True)
        return was_running

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    """Collect the exit status if the service is our own child, so no zombie stays behind."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes in a process group."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):  # gone meanwhile
            continue
    return members


def listening_addresses(pgid: int) -> set[tuple[str, int]]:
    """(address, port) of every socket listening in this host's network namespace in process group `pgid`
    (a process in a namespace of its own shows none: they are not reachable from here)."""
    found: set[tuple[str, int]] = set()
    for pid in group_members(pgid):
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found.update((c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN)
    return found
