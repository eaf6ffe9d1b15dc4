"""Streaming workers as background processes (`sail-stream worker`), for the demo and the tests."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from deploy.local.process import ManagedProcess, ServiceFailed
from streams.sinks.kafka import group_assignment
from topology.settings import Settings


def start_worker(settings: Settings, web_port: int, run_dir: Path, loglevel: str = "info", static: bool = True) -> ManagedProcess:
    """Start one worker with these settings on `web_port`; its log is `<run_dir>/worker-<port>.log`.
    `static`: its group membership id is `<app_id or the settings' id>-<port>`, one per worker, so a
    worker restarted on the same port gets its partitions back without a rebalance, like a
    StatefulSet's pod; otherwise a dynamic member (the settings' id is dropped)."""
    proc = ManagedProcess(f"worker-{web_port}", run_dir)
    env = {**os.environ, **settings.as_env(), "SAIL_WORKER_WEB_PORT": str(web_port)}
    env.pop("SAIL_KAFKA_GROUP_INSTANCE_ID", None)
    if static:
        env["SAIL_KAFKA_GROUP_INSTANCE_ID"] = f"{settings.kafka_group_instance_id or settings.app_id}-{web_port}"
    proc.start([sys.executable, "-m", "deploy.cli", "worker", "--loglevel", loglevel], env, cwd=Path.cwd())
    return proc


def wait_for_group(
    settings: Settings, workers: list[ManagedProcess], timeout_s: float = 120.0
) -> dict[str, set[tuple[str, int]]]:
    """Block until every worker serves HTTP and the consumer group is Stable with all of them.

    Raises:
        ServiceFailed: a worker exited, or the group did not settle in time.
    """
    deadline = time.monotonic() + timeout_s
    ports = [int(w.name.rsplit("-", 1)[1]) for w in workers]
    while time.monotonic() < deadline:
        for worker in workers:
            worker.ensure_alive()
        if all(_listening(port) for port in ports):
            try:
                state, members = group_assignment(settings.kafka_bootstrap, settings.kafka_security(), settings.app_id)
            except Exception:
                state, members = "", {}
            if state == "Stable" and len(members) == len(workers):
                return members
        time.sleep(0.5)
    raise ServiceFailed(
        f"consumer group {settings.app_id} did not become stable with {len(workers)} worker(s) in {timeout_s:.0f}s"
    )


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
