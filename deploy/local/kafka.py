"""Apache Kafka in KRaft mode on loopback: jars from Maven Central (once), one or more combined
broker+controller nodes (a quorum of all of them), run with the machine's Java 17."""

from __future__ import annotations

import base64
import logging
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from topology.topics import replication

logger = logging.getLogger(__name__)

_POM_TEMPLATE = Path(__file__).with_name("kafka-pom.xml")
_LOG4J2 = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: org.apache.kafka
        level: WARN
      - name: kafka
        level: WARN
      - name: kafka.server.KafkaRaftServer
        level: INFO
"""


class ToolMissing(RuntimeError):
    """A tool the local stack needs (Java 17+, Maven) is not installed; the message says how to get it."""


def java_major_version() -> int:
    """The major version of `java` on PATH.

    Raises:
        ToolMissing: no `java`, or its version cannot be read.
    """
    java = shutil.which("java")
    if java is None:
        raise ToolMissing("Java 17+ is needed to run the local Kafka broker: apt-get install openjdk-17-jre-headless")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match is None:
        raise ToolMissing(f"cannot read the Java version from: {out.strip()[:200]}")
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major  # "1.8" -> 8


def require_java(minimum: int = 17) -> str:
    """The path of a usable `java`.

    Raises:
        ToolMissing: absent or older than `minimum`.
    """
    major = java_major_version()
    if major < minimum:
        raise ToolMissing(f"Kafka 4 needs Java {minimum}+, found Java {major}: apt-get install openjdk-17-jre-headless")
    return shutil.which("java") or "java"


def resolve_jars(version: str, cache_dir: Path, progress: Callable[[str], None]) -> Path:
    """The folder of Kafka `version`'s jars, resolved from Maven Central with `mvn` on first use.

    Raises:
        ToolMissing: Maven is not installed.
        RuntimeError: Maven failed (network, unknown version); with its output.
    """
    target = cache_dir / f"kafka-{version}"
    libs = target / "libs"
    if (target / ".complete").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ToolMissing("Maven is needed once to fetch the Kafka jars from Maven Central: apt-get install maven")
    target.mkdir(parents=True, exist_ok=True)
    pom = target / "pom.xml"
    pom.write_text(_POM_TEMPLATE.read_text().replace("@KAFKA_VERSION@", version))
    progress(f"resolving Apache Kafka {version} from Maven Central into {libs} (once) ...")
    staging = target / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={staging}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"mvn could not resolve org.apache.kafka:kafka_2.13:{version}:\n{(result.stdout + result.stderr)[-3000:]}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (target / ".complete").write_text(version)
    progress(f"resolved {len(list(libs.glob('*.jar')))} jars")
    return libs


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64 without padding (22 chars)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # Kafka rejects ids that look like a command-line flag
            return cluster_id


def server_properties(
    data_dir: Path,
    host: str,
    port: int,
    controller_port: int,
    max_message_bytes: int,
    sasl_plain: tuple[str, str] | None = None,
    node_id: int = 1,
    voters: list[tuple[int, int]] | None = None,
) -> str:
    """One node that is both broker and controller, listening on loopback only; with `sasl_plain`
    (user, password) its client listener is SASL_PLAINTEXT with the PLAIN mechanism and that one user.
    `voters` are the (node id, controller port) of every node of the cluster (default: this one alone);
    with three or more, Kafka's own topics and new topics get 3 replicas and min.insync.replicas 2.

    Raises:
        ValueError: a user name or password the JAAS configuration cannot quote.
    """
    voters = voters or [(node_id, controller_port)]
    factor, min_isr = replication(len(voters))
    listener = "PLAINTEXT"
    sasl: list[str] = []
    if sasl_plain is not None:
        user, password = sasl_plain
        if any(c in value for value in (user, password) for c in '"\\;\n') or not user.isidentifier():
            raise ValueError(
                "the local broker's SASL user must be an identifier "
                "and the password free of quotes, backslashes, ';' and newlines"
            )
        listener = "SASL_PLAINTEXT"
        sasl = [
            "sasl.enabled.mechanisms=PLAIN",
            "sasl.mechanism.inter.broker.protocol=PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config="
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{user}" password="{password}" user_{user}="{password}";',
        ]
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node_id}",
            "controller.quorum.voters=" + ",".join(f"{i}@{host}:{p}" for i, p in voters),
            f"listeners={listener}://{host}:{port},CONTROLLER://{host}:{controller_port}",
            f"advertised.listeners={listener}://{host}:{port}",
            "controller.listener.names=CONTROLLER",
            f"listener.security.protocol.map={listener}:{listener},CONTROLLER:PLAINTEXT",
            f"inter.broker.listener.name={listener}",
            *sasl,
            f"log.dirs={data_dir}",
            # Topics come from topology/ specs; a typo must fail, not create a 1-partition topic.
            "auto.create.topics.enable=false",
            f"message.max.bytes={max_message_bytes}",
            f"default.replication.factor={factor}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={factor}",
            "offsets.topic.num.partitions=10",
            f"transaction.state.log.replication.factor={factor}",
            f"transaction.state.log.min.isr={min_isr}",
            f"share.coordinator.state.topic.replication.factor={factor}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            "group.initial.rebalance.delay.ms=0",
            "num.partitions=1",
            "log.retention.check.interval.ms=60000",
            "",
        ]
    )


def prepare(
    state_dir: Path,
    libs: Path,
    java: str,
    host: str,
    port: int,
    controller_port: int,
    max_message_bytes: int,
    heap_mb: int,
    sasl_plain: tuple[str, str] | None = None,
    node_id: int = 1,
    voters: list[tuple[int, int]] | None = None,
    cluster_id: str | None = None,
) -> list[str]:
    """Write the config (owner-only: it may hold the SASL password), format the storage on first
    use (with `cluster_id`: the one every node of a cluster shares), and return the node's command line.

    Raises:
        RuntimeError: the storage could not be formatted.
    """
    data_dir = state_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir / "server.properties"
    config.touch(mode=0o600)
    config.chmod(0o600)
    config.write_text(server_properties(data_dir, host, port, controller_port, max_message_bytes, sasl_plain, node_id, voters))
    log4j = state_dir / "log4j2.yaml"
    log4j.write_text(_LOG4J2)
    base = [java, f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*"]
    if not (data_dir / "meta.properties").exists():
        result = subprocess.run(
            [*base, "kafka.tools.StorageTool", "format", "-t", cluster_id or new_cluster_id(), "-c", str(config)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return [base[0], f"-Xmx{heap_mb}m", f"-Xms{min(heap_mb, 256)}m", "-XX:+UseG1GC", *base[1:], "kafka.Kafka", str(config)]
