"""`sail-stream stack up|down|status`: the real services on loopback, one state folder for all.

Layout of the state folder:
    <state>/kafka/      server.properties, data/, kafka.log, kafka.json (pid record), cluster.json
    <state>/kafka-2/    ... the other nodes of a multi-broker cluster (`kafka_brokers` 3: kafka-2, kafka-3)
    <state>/milvus/     sail.db (Lite) or server data, milvus.log, milvus.json
    <state>/triton/     triton.log, triton.json
A service whose address in the settings is not loopback (or Milvus given as a `.db` file) is
treated as external/embedded: the stack neither starts nor stops it, only probes it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from deploy.local import kafka
from deploy.local.process import ManagedProcess, ServiceFailed
from encoders.bench_double import NAME as STANDIN
from encoders.bench_double import ServiceTime, write_control
from encoders.client import check_triton
from encoders.signature import PROBE, SAIL_ENCODER
from streams.sinks.kafka import check_broker, ensure_topics
from streams.sinks.milvus import check_milvus, ensure_collections
from topology.settings import LOOPBACK_HOSTS, Settings, host_port

logger = logging.getLogger(__name__)

SERVICES: Final = ("kafka", "milvus", "triton")
SERVER_TIME_TICK_MS: Final = 50  # the Milvus server's proxy time tick (its default 200 ms is what a Strong read waits)
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


def free_kafka_ports(brokers: int, host: str = "127.0.0.1") -> tuple[str, int]:
    """(bootstrap list, controller port) for a local Kafka of `brokers` nodes on ports free a moment ago:
    node i's controller listens on the controller port + 100*i (`Stack.kafka_addresses`)."""
    bootstrap = ",".join(f"{host}:{p}" for p in free_ports(brokers, host))
    while True:
        base = free_ports(1, host)[0]
        if base + 100 * (brokers - 1) < 65536 and all(port_free(host, base + 100 * i) for i in range(brokers)):
            return bootstrap, base


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
    if (
        s.kafka_security_protocol == "SASL_PLAINTEXT"
        and s.kafka_sasl_mechanism == "PLAIN"
        and s.kafka_sasl_username
        and s.kafka_sasl_password
    ):
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
        self._kafka_nodes = [self._procs["kafka"]] + [
            ManagedProcess(f"kafka-{i + 1}", self.state_dir / f"kafka-{i + 1}") for i in range(1, len(self.kafka_addresses()))
        ]

    def kafka_addresses(self) -> list[tuple[str, int, int]]:
        """(host, client port, controller port) of each local Kafka node: one per bootstrap address,
        node i's controller on `kafka_controller_port` + 100*i."""
        addresses = [host_port(a.strip()) for a in self.settings.kafka_bootstrap.split(",")]
        return [(host, port, self.settings.kafka_controller_port + 100 * i) for i, (host, port) in enumerate(addresses)]

    def processes(self, service: Service) -> list[ManagedProcess]:
        """The processes of a service this stack runs: one each, Kafka one per node."""
        return list(self._kafka_nodes) if service == "kafka" else [self._procs[service]]

    def _strays(self, service: Service) -> list[ManagedProcess]:
        """Kafka nodes beyond the settings' count that a larger `stack up --kafka-brokers` left in the state folder."""
        if service != "kafka":
            return []
        known = {p.run_dir for p in self._kafka_nodes}
        return [
            ManagedProcess(d.name, d)
            for d in sorted(self.state_dir.glob("kafka-*"))
            if d not in known and (d / f"{d.name}.json").exists()
        ]

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
            return all(host in LOOPBACK_HOSTS for host, _, _ in self.kafka_addresses())
        if service == "milvus":
            return not s.milvus_embedded and host_port(s.milvus_uri)[0] in LOOPBACK_HOSTS
        return host_port(s.triton_url)[0] in LOOPBACK_HOSTS

    def _ports(self, service: Service, node: int = 0) -> list[tuple[str, int]]:
        s = self.settings
        if service == "kafka":
            host, port, controller = self.kafka_addresses()[node]
            return [(host, port), (host, controller)]
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
            nodes = len(self._kafka_nodes)
            if self.is_local(service) and info.broker_count < nodes:
                raise RuntimeError(f"{info.broker_count} of the {nodes} brokers registered")
            return f"cluster {info.cluster_id}, {info.broker_count} broker(s), {info.topic_count} topics"
        if service == "milvus":
            token = s.milvus_token_value
            # pymilvus logs each failed connection at ERROR before it raises; a probe of a server still
            # starting fails by design (the wait reports what is wrong when it gives up), so it stays quiet
            quiet = logging.getLogger("pymilvus.milvus_client._utils")
            level = quiet.level
            quiet.setLevel(logging.CRITICAL)
            try:
                collections = check_milvus(s.milvus_uri, token, timeout_s, s.milvus_tls())
            finally:
                quiet.setLevel(level)
            return f"{s.milvus_backend}, {len(collections)} collections"
        health = check_triton(s.triton_grpc_address, (PROBE.name, SAIL_ENCODER.name), timeout_s, s.triton_tls())
        if not (health.live and health.ready and all(health.models_ready.values())):
            raise RuntimeError(f"triton live={health.live} ready={health.ready} models={health.models_ready}")
        return f"tritonserver {health.server_version}, models ready: {', '.join(health.models_ready)}"

    @property
    def standin_control(self) -> Path:
        """The control file of a stand-in encoder (`SAIL_ENCODER=standin`): `encoders.bench_double.write_control`
        on it changes the running server's service time."""
        return self.state_dir / "triton" / "standin.json"

    # ------------------------------------------------------------------ commands

    def _kafka_cluster_id(self) -> str:
        """The KRaft cluster id every node is formatted with, kept in `<state>/kafka/cluster.json` with
        the node count (a state folder formatted for another count cannot be reused).

        Raises:
            ServiceFailed: the folder holds a cluster of another size.
        """
        path = self.state_dir / "kafka" / "cluster.json"
        nodes = len(self._kafka_nodes)
        if path.exists():
            known = json.loads(path.read_text())
            if known["nodes"] != nodes:
                raise ServiceFailed(
                    f"the local Kafka in {path.parent} was formatted with {known['nodes']} node(s), the settings ask for "
                    f"{nodes}: run `sail-stream stack down`, then remove {self.state_dir}/kafka* or use another SAIL_STATE_DIR"
                )
            return str(known["cluster_id"])
        if (
            self.state_dir / "kafka" / "data" / "meta.properties"
        ).exists():  # formatted by a release before cluster.json: one node
            if nodes > 1:
                raise ServiceFailed(
                    f"the local Kafka in {path.parent} has one node; remove {self.state_dir}/kafka* to make a cluster of {nodes}"
                )
            return kafka.new_cluster_id()  # unused: a formatted node is not formatted again
        cluster_id = kafka.new_cluster_id()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"nodes": nodes, "cluster_id": cluster_id}))
        return cluster_id

    def _command(self, service: Service, node: int = 0) -> tuple[list[str], dict[str, str]]:
        s = self.settings
        env = dict(os.environ)
        if service == "kafka":
            java = kafka.require_java()
            libs = kafka.resolve_jars(s.kafka_version, s.cache_dir, self.progress)
            addresses = self.kafka_addresses()
            host, port, controller = addresses[node]
            voters = [(i + 1, c) for i, (_, _, c) in enumerate(addresses)]
            command = kafka.prepare(
                self._kafka_nodes[node].run_dir,
                libs,
                java,
                host,
                port,
                controller,
                s.max_message_bytes + 128 * 1024,
                s.kafka_heap_mb,
                local_sasl(s),
                node_id=node + 1,
                voters=voters,
                cluster_id=self._kafka_cluster_id(),
            )
            return command, env
        run_dir = self.state_dir / service
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
            # Its internal gRPC and metrics ports bind every interface (not configurable in 2.3.5): it runs in a
            # network namespace of its own, and only the proxy port is forwarded from the host's loopback.
            # A Strong read waits for the proxy's next time tick: 200 ms by default, 50 ms at this setting (measured:
            # get p50 201 -> 50 ms; the idle server's CPU 3.4 % -> 7.2 % of a core). Workers and tests read Strong.
            server_command = [
                *(str(server), "--data", str(run_dir / "data"), "--proxy-port", str(port)),
                *("--extra-config", f"proxy.timeTickInterval={SERVER_TIME_TICK_MS}"),
            ]
            contained = [sys.executable, "-m", "deploy.local.netns", "--listen", f"{host}:{port}", "--to-port", str(port)]
            return [*contained, "--", *server_command], env
        host, port = host_port(s.triton_url)
        # The Python backend stub links libpython; put this interpreter's own first (see shared FACTS).
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = f"{libdir}:{env.get('LD_LIBRARY_PATH', '')}"
        command = [
            sys.executable,
            "-m",
            "encoders.serving",
            "--encoder",
            s.encoder,
            "--host",
            host,
            "--grpc-port",
            str(port),
            "--http-port",
            str(s.triton_http_port),
            "--metrics-port",
            str(s.triton_metrics_port),
            "--max-batch-size",
            str(s.triton_max_batch_size),
            "--queue-delay-us",
            str(s.triton_queue_delay_us),
            "--instances",
            str(s.triton_instances),
            "--max-queue-size",
            str(s.triton_max_queue_size),
        ]
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
        started: dict[Service, list[ManagedProcess]] = {}
        for name in wanted:
            if not self.is_local(name):
                self.progress(f"{name}: external at {self.address(name)}, not started here")
                continue
            for node, proc in enumerate(self.processes(name)):
                if proc.is_running():
                    record = proc.record()
                    self.progress(f"{proc.name}: already running (pid {record.pid if record else '?'})")
                    continue
                for host, port in self._ports(name, node):
                    if not port_free(host, port):
                        raise PortBusy(
                            f"{proc.name}: port {host}:{port} is in use by another process; stop it or choose other ports in "
                            "the settings"
                        )
                command, env = self._command(name, node)
                record = proc.start(command, env, cwd=proc.run_dir)
                self.progress(f"{proc.name}: starting (pid {record.pid}), log {proc.log_path}")
                started.setdefault(name, []).append(proc)
        self._wait_healthy(wanted, started)
        self._create_contracts(wanted)
        return self.status(wanted)

    def _wait_healthy(self, services: list[Service], started: dict[Service, list[ManagedProcess]]) -> None:
        """Probe every service round-robin until all are healthy, so each start time is its own.

        Raises:
            ServiceFailed: a started process exited, or a service stayed unhealthy past the timeout.
        """
        deadline = time.monotonic() + self.settings.start_timeout_s
        pending = list(services)
        errors: dict[str, str] = {}
        while pending:
            for name in list(pending):
                for proc in started.get(name, []):
                    proc.ensure_alive()
                try:
                    self.probe(name, timeout_s=2.0)
                except Exception as exc:
                    errors[name] = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                    continue
                pending.remove(name)
                for proc in started.get(name, []):
                    record = proc.record()
                    took = time.time() - record.started_at if record else 0.0
                    proc.mark_healthy(took)
                    self.progress(f"{proc.name}: healthy after {took:.1f}s at {self.address(name)}")
            if pending and time.monotonic() > deadline:
                name = pending[0]
                tail = "\n".join(proc.log_tail() for proc in started.get(name, []))
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
            wanted = s.stored_collections()
            created = ensure_collections(s.milvus_uri, token, wanted, s.milvus_backend, tls=s.milvus_tls())
            self.progress(f"milvus: collections ready ({len(created)} created, {len(wanted) - len(created)} existed)")

    def lower_priority(self, service: Service, niceness: int = 19) -> None:
        """Run a started service's processes at `niceness`: on shared cores they get the CPU only when the
        rest leave it (a re-embed's own Triton, so the workers' fresh uploads keep priority)."""
        record = self._procs[service].record()
        if record is not None:
            os.setpriority(os.PRIO_PGRP, record.pgid, niceness)

    def _stop_grace_s(self, service: Service) -> float:
        """Seconds between SIGTERM and SIGKILL. The Milvus server's graceful stop outlasts any grace here
        (15 s measured, then killed); the `milvus` package's own launcher stops it with SIGTERM, 1 s, SIGKILL,
        and what it acknowledged is in its write-ahead log by then (`tests/integration/test_milvus_server.py`
        reads rows back after a stop and start). 3 s, not 15."""
        return 3.0 if service == "milvus" and self.settings.milvus_backend == "server" else 15.0

    def down(self, services: Iterable[Service] = SERVICES) -> list[str]:
        """Stop the services this stack started (reverse order); returns the names that were running."""
        stopped: list[str] = []
        for name in reversed([s for s in SERVICES if s in set(services)]):
            procs = self.processes(name) + self._strays(name)
            # every node at once: a KRaft node stopped after the quorum lost its majority waits for it until killed
            grace_s = self._stop_grace_s(name)
            with ThreadPoolExecutor(max_workers=len(procs)) as pool:
                stops = list(pool.map(lambda proc: proc.stop(grace_s), procs))
            if any(stops):
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
            down = [p.name for p in self.processes(name) if not p.is_running()] if local else []
            if down and len(down) == len(self.processes(name)):
                result.append(ServiceStatus(name, "stopped", self.address(name)))
                continue
            try:
                detail = self.probe(name, timeout_s=2.0)
                state: State = "running" if local else ("embedded" if self.settings.milvus_embedded else "external")
                if down:
                    raise RuntimeError(f"{', '.join(down)} stopped; {detail}")
            except Exception as exc:
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
