"""`sail-stream stack up|down|status`: the real services on loopback, one state folder for all.

Layout of the state folder:
    <state>/kafka/      server.properties, data/, kafka.log, kafka.json (pid record)
    <state>/milvus/     sail.db (Lite) or server data, milvus.log, milvus.json
    <state>/triton/     triton.log, triton.json
A service whose address in the settings is not loopback (or Milvus given as a `.db` file) is
treated as external/embedded: the stack neither starts nor stops it, only probes it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from deploy.local import kafka
from deploy.local.process import ManagedProcess, ServiceFailed
from encoders.client import check_triton
from encoders.signature import PROBE, SAIL_ENCODER
from encoders.standin import NAME as STANDIN
from encoders.standin import ServiceTime, write_control
from streams.sinks.kafka import check_broker, ensure_topics
from streams.sinks.milvus import check_milvus, ensure_collections
from topology.settings import LOOPBACK_HOSTS, Settings, host_port

logger = logging.getLogger(__name__)

SERVICES: Final = ("kafka", "milvus", "triton")
Service = Literal["kafka", "milvus", "triton"]
State = Literal["running", "starting", "stopped", "external", "embedded", "unhealthy"]


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    state: State
    address: str
    pid: int | None = None
    start_s: float | None = None
    uptime_s: float | None = None
    detail: str = ""


class PortBusy(RuntimeError):
    """A port the stack must listen on is taken by a process the stack did not start."""


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct ports that were free on `host` a moment ago (for tests and benchmarks)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def local_sasl(settings: Settings) -> tuple[str, str] | None:
    """The (user, password) the local broker accepts, from the Kafka security settings.

    Raises:
        ToolMissing: a protocol the local broker does not offer (SSL needs your own certificates:
            point SAIL_KAFKA_BOOTSTRAP at a cluster that has them).
    """
    s = settings
    if s.kafka_security_protocol == "PLAINTEXT":
        return None
    if s.kafka_security_protocol == "SASL_PLAINTEXT" and s.kafka_sasl_mechanism == "PLAIN" and s.kafka_sasl_username and s.kafka_sasl_password:
        return s.kafka_sasl_username, s.kafka_sasl_password.get_secret_value()
    raise kafka.ToolMissing(
        f"the local Kafka broker runs PLAINTEXT or SASL_PLAINTEXT with PLAIN, not {s.kafka_security_protocol} "
        f"with {s.kafka_sasl_mechanism}; use an external cluster for that"
    )


class Stack:
    """The local stack for one `Settings`: starts, probes and stops Kafka, Milvus and Triton.

    It takes the whole settings object because it is an entry point: it hands each service only
    the values that service needs.
    """

    def __init__(self, settings: Settings, progress: Callable[[str], None] = lambda line: None) -> None:
        self.settings = settings
        self.progress = progress
        self.state_dir = settings.state_dir.resolve()
        self._procs = {name: ManagedProcess(name, self.state_dir / name) for name in SERVICES}

    # ------------------------------------------------------------------ addresses

    def address(self, service: Service) -> str:
        s = self.settings
        if service == "kafka":
            return s.kafka_bootstrap
        if service == "milvus":
            return s.milvus_uri
        return s.triton_grpc_address

    def is_local(self, service: Service) -> bool:
        """True when the stack owns this service (loopback address, not an embedded Milvus file)."""
        s = self.settings
        if service == "kafka":
            hosts = [host_port(a.strip())[0] for a in s.kafka_bootstrap.split(",")]
            return len(hosts) == 1 and hosts[0] in LOOPBACK_HOSTS
        if service == "milvus":
            return not s.milvus_embedded and host_port(s.milvus_uri)[0] in LOOPBACK_HOSTS
        return host_port(s.triton_url)[0] in LOOPBACK_HOSTS

    def _ports(self, service: Service) -> list[tuple[str, int]]:
        s = self.settings
        if service == "kafka":
            host, port = host_port(s.kafka_bootstrap)
            return [(host, port), (host, s.kafka_controller_port)]
        if service == "milvus":
            return [host_port(s.milvus_uri)]
        host, port = host_port(s.triton_url)
        return [(host, port), (host, s.triton_http_port), (host, s.triton_metrics_port)]

    # ------------------------------------------------------------------ probes

    def probe(self, service: Service, timeout_s: float = 3.0) -> str:
        """One health check; returns a short description.

        Raises:
            BrokerUnavailable | MilvusUnavailable | EncoderUnavailable | RuntimeError: not healthy.
        """
        s = self.settings
        if self.is_local(service):
            for host, port in self._ports(service)[:1]:
                with socket.create_connection((host, port), timeout=timeout_s):
                    pass  # refused fast while the service boots, before any client library retries
        if service == "kafka":
            info = check_broker(s.kafka_bootstrap, s.kafka_security(), timeout_s)
            return f"cluster {info.cluster_id}, {info.broker_count} broker(s), {info.topic_count} topics"
        if service == "milvus":
            token = s.milvus_token_value
            collections = check_milvus(s.milvus_uri, token, timeout_s, s.milvus_tls())
            return f"{s.milvus_backend}, {len(collections)} collections"
        health = check_triton(s.triton_grpc_address, (PROBE.name, SAIL_ENCODER.name), timeout_s, s.triton_tls())
        if not (health.live and health.ready and all(health.models_ready.values())):
            raise RuntimeError(f"triton live={health.live} ready={health.ready} models={health.models_ready}")
        return f"tritonserver {health.server_version}, models ready: {', '.join(health.models_ready)}"

    @property
    def standin_control(self) -> Path:
        """The control file of a stand-in encoder (`SAIL_ENCODER=standin`): `encoders.standin.write_control`
        on it changes the running server's service time."""
        return self.state_dir / "triton" / "standin.json"

    # ------------------------------------------------------------------ commands

    def _command(self, service: Service) -> tuple[list[str], dict[str, str]]:
        s = self.settings
        run_dir = self.state_dir / service
        env = dict(os.environ)
        if service == "kafka":
            java = kafka.require_java()
            libs = kafka.resolve_jars(s.kafka_version, s.cache_dir, self.progress)
            host, port = host_port(s.kafka_bootstrap)
            command = kafka.prepare(
                run_dir, libs, java, host, port, s.kafka_controller_port, s.max_message_bytes + 128 * 1024, s.kafka_heap_mb, local_sasl(s)
            )
            return command, env
        if service == "milvus":
            host, port = host_port(s.milvus_uri)
            if s.milvus_backend == "lite":
                spec = importlib.util.find_spec("milvus_lite")
                if spec is None or spec.origin is None:
                    raise kafka.ToolMissing("Milvus Lite is not installed: pip install 'milvus-lite>=2.5,<2.6'")
                lib = Path(spec.origin).parent / "lib"
                env["LD_LIBRARY_PATH"] = f"{lib}:{env.get('LD_LIBRARY_PATH', '')}"
                # args: <db file> <grpc address> <log level>; the file name must stay short (<= 36 chars)
                return [str(lib / "milvus"), str(run_dir / "sail.db"), f"{host}:{port}", "ERROR"], env
            server = Path(sys.executable).with_name("milvus-server")
            if not server.exists():
                raise kafka.ToolMissing("the Milvus standalone server is not installed: pip install 'sail-stream[milvus-server]'")
            return [str(server), "--data", str(run_dir / "data"), "--proxy-port", str(port)], env
        host, port = host_port(s.triton_url)
        # The Python backend stub links libpython; put this interpreter's own first (see shared FACTS).
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = f"{libdir}:{env.get('LD_LIBRARY_PATH', '')}"
        command = [
            sys.executable, "-m", "encoders.serving",
            "--encoder", s.encoder,
            "--host", host,
            "--grpc-port", str(port),
            "--http-port", str(s.triton_http_port),
            "--metrics-port", str(s.triton_metrics_port),
            "--max-batch-size", str(s.triton_max_batch_size),
            "--queue-delay-us", str(s.triton_queue_delay_us),
            "--instances", str(s.triton_instances),
            "--max-queue-size", str(s.triton_max_queue_size),
        ]  # fmt: skip
        if s.encoder == STANDIN:
            write_control(self.standin_control, ServiceTime(s.standin_fixed_ms, s.standin_per_item_ms, s.embedding_dim))
            command += ["--standin-control", str(self.standin_control)]
        if s.triton_tls_server_cert_file and s.triton_tls_server_key_file:
            command += ["--tls-cert", str(s.triton_tls_server_cert_file), "--tls-key", str(s.triton_tls_server_key_file)]
        return command, env

    def up(self, services: Iterable[Service] = SERVICES) -> list[ServiceStatus]:
        """Start what is not running, wait until every service is healthy, then create the topics
        and collections (idempotent: a second `up` starts nothing).

        Raises:
            ToolMissing: Java or Maven or a package is missing.
            PortBusy: a port is taken by a foreign process.
            ServiceFailed: a service exited or stayed unhealthy; with its log tail.
        """
        wanted = [s for s in SERVICES if s in set(services)]
        started: list[Service] = []
        for name in wanted:
            proc = self._procs[name]
            if not self.is_local(name):
                self.progress(f"{name}: external at {self.address(name)}, not started here")
                continue
            if proc.is_running():
                record = proc.record()
                self.progress(f"{name}: already running (pid {record.pid if record else '?'}) at {self.address(name)}")
                continue
            for host, port in self._ports(name):
                if not port_free(host, port):
                    raise PortBusy(f"{name}: port {host}:{port} is in use by another process; stop it or choose other ports in the settings")
            command, env = self._command(name)
            record = proc.start(command, env, cwd=proc.run_dir)
            self.progress(f"{name}: starting (pid {record.pid}), log {proc.log_path}")
            started.append(name)
        self._wait_healthy(wanted, started)
        self._create_contracts(wanted)
        return self.status(wanted)

    def _wait_healthy(self, services: list[Service], started: list[Service]) -> None:
        """Probe every service round-robin until all are healthy, so each start time is its own.

        Raises:
            ServiceFailed: a started service exited, or one stayed unhealthy past the timeout.
        """
        deadline = time.monotonic() + self.settings.start_timeout_s
        pending = list(services)
        errors: dict[str, str] = {}
        while pending:
            for name in list(pending):
                proc = self._procs[name]
                if name in started:
                    proc.ensure_alive()
                try:
                    self.probe(name, timeout_s=2.0)
                except Exception as exc:  # noqa: BLE001 - any probe failure means "not yet"
                    errors[name] = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                    continue
                pending.remove(name)
                if name in started:
                    record = proc.record()
                    took = time.time() - record.started_at if record else 0.0
                    proc.mark_healthy(took)
                    self.progress(f"{name}: healthy after {took:.1f}s at {self.address(name)}")
            if pending and time.monotonic() > deadline:
                name = pending[0]
                tail = self._procs[name].log_tail() if name in started else ""
                raise ServiceFailed(
                    f"{name} at {self.address(name)} not healthy after {self.settings.start_timeout_s:.0f}s "
                    f"(last probe error: {errors.get(name)}).\n{tail}"
                )
            if pending:
                time.sleep(0.25)

    def _create_contracts(self, services: list[Service]) -> None:
        s = self.settings
        if "kafka" in services:
            created = ensure_topics(s.kafka_bootstrap, s.kafka_security(), s.topics().all())
            self.progress(f"kafka: topics ready ({len(created)} created, {len(s.topics().all()) - len(created)} existed)")
        if "milvus" in services:
            token = s.milvus_token_value
            created = ensure_collections(s.milvus_uri, token, s.collections(), s.milvus_backend, tls=s.milvus_tls())
            self.progress(f"milvus: collections ready ({len(created)} created, {2 - len(created)} existed)")

    def lower_priority(self, service: Service, niceness: int = 19) -> None:
        """Run a started service's processes at `niceness`: on shared cores they get the CPU only when the
        rest leave it (a re-embed's own Triton, so the workers' fresh uploads keep priority)."""
        record = self._procs[service].record()
        if record is not None:
            os.setpriority(os.PRIO_PGRP, record.pgid, niceness)

    def down(self, services: Iterable[Service] = SERVICES) -> list[str]:
        """Stop the services this stack started (reverse order); returns the names that were running."""
        stopped = []
        for name in reversed([s for s in SERVICES if s in set(services)]):
            if self._procs[name].stop():
                stopped.append(name)
                self.progress(f"{name}: stopped")
            else:
                self.progress(f"{name}: was not running")
        return stopped

    def status(self, services: Iterable[Service] = SERVICES) -> list[ServiceStatus]:
        """The state of each service, probing its health with a short timeout."""
        result = []
        for name in [s for s in SERVICES if s in set(services)]:
            proc = self._procs[name]
            record = proc.record()
            local = self.is_local(name)
            if local and not proc.is_running():
                result.append(ServiceStatus(name, "stopped", self.address(name)))
                continue
            try:
                detail = self.probe(name, timeout_s=2.0)
                state: State = "running" if local else ("embedded" if self.settings.milvus_embedded else "external")
            except Exception as exc:  # noqa: BLE001 - reported, not raised: status must always answer
                detail = str(exc).splitlines()[0][:200]
                state = "unhealthy" if local else "external"
            result.append(
                ServiceStatus(
                    name,
                    state,
                    self.address(name),
                    pid=record.pid if local and record else None,
                    start_s=record.start_s if local and record else None,
                    uptime_s=time.time() - record.started_at if local and record else None,
                    detail=detail,
                )
            )
        return result
