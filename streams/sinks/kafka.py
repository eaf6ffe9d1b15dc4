"""The kafka-python adapter: admin work (health, topic creation) and the reads of offsets and record
timestamps behind lag, done outside the Faust app.

Faust (over aiokafka) owns the hot path; this module is for the stack, the CLI, the worker's lag
sampler and item-wait check, and tests. Every read a running worker repeats is bounded in time
(`_bounded`): kafka-python 3.0's metadata fetch behind `partitions_for_topic` waits without a
timeout, and was seen waiting for good (a fault-test monitor thread stuck for 10 minutes beside a
healthy broker); a caller must get an error it can retry instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    CoordinatorNotAvailableError,
    GroupIdNotFoundError,
    KafkaError,
    TopicAlreadyExistsError,
    UnknownBrokerIdError,
)

from topology.settings import KafkaSecurity
from topology.topics import TopicSpec

logger = logging.getLogger(__name__)

T = TypeVar("T")


class BrokerUnavailable(RuntimeError):
    """No broker answered within the timeout; the message says which bootstrap list was tried."""


def _bounded(call: Callable[[], T], timeout_s: float, what: str) -> T:
    """`call()` on a daemon thread, given up on after `timeout_s` (the thread is left to finish or
    hang on its own; its clients are its own).

    Raises:
        BrokerUnavailable: no result within `timeout_s`.
    """
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name=f"kafka-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        logger.warning(
            "kafka-python did not return from %s within %.0fs; given up (the call is left on its thread)", what, timeout_s
        )
        raise BrokerUnavailable(f"{what}: no answer within {timeout_s:.0f}s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    cluster_id: str | None
    broker_count: int
    topic_count: int


def client_kwargs(bootstrap: str, security: KafkaSecurity) -> dict[str, Any]:
    """kafka-python keyword arguments for one bootstrap list and its security settings."""
    kwargs: dict[str, Any] = {"bootstrap_servers": bootstrap.split(","), "security_protocol": security.protocol}
    if security.protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = security.sasl_mechanism
        kwargs["sasl_plain_username"] = security.sasl_username
        kwargs["sasl_plain_password"] = security.sasl_password.get_secret_value() if security.sasl_password else None
    if security.protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_cafile"] = str(security.ssl_cafile) if security.ssl_cafile else None
        kwargs["ssl_certfile"] = str(security.ssl_certfile) if security.ssl_certfile else None
        kwargs["ssl_keyfile"] = str(security.ssl_keyfile) if security.ssl_keyfile else None
    return kwargs


def _admin(bootstrap: str, security: KafkaSecurity, timeout_s: float) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            **client_kwargs(bootstrap, security),
            request_timeout_ms=int(timeout_s * 1000),
            client_id="sail-stream-admin",
        )
    except KafkaError as exc:
        raise BrokerUnavailable(f"no Kafka broker answered at {bootstrap}: {exc}") from exc


def check_broker(bootstrap: str, security: KafkaSecurity, timeout_s: float = 5.0) -> BrokerInfo:
    """Ask the cluster for its metadata.

    Raises:
        BrokerUnavailable: nothing answered within `timeout_s`.
    """
    admin = _admin(bootstrap, security, timeout_s)
    try:
        cluster = admin.describe_cluster()
        topics = admin.list_topics()
    except KafkaError as exc:
        raise BrokerUnavailable(f"Kafka at {bootstrap} did not answer metadata requests: {exc}") from exc
    finally:
        admin.close()
    return BrokerInfo(cluster_id=cluster.get("cluster_id"), broker_count=len(cluster.get("brokers", [])), topic_count=len(topics))


@dataclass(frozen=True, slots=True, order=True)
class PartitionReplicas:
    """Where one partition's replicas are: its leader (-1: none, the partition is offline), the brokers
    that hold it and those of them in sync."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        """Fewer replicas in sync than assigned: a broker is down or behind. Writes go on while
        `min.insync.replicas` are in sync; one more loss and `acks=all` writes are refused."""
        return len(self.isr) < len(self.replicas)

    @property
    def offline(self) -> bool:
        return self.leader < 0


def partition_replicas(
    bootstrap: str, security: KafkaSecurity, topics: Iterable[str], timeout_s: float = 5.0
) -> list[PartitionReplicas]:
    """The replica state of every partition of `topics` (a topic Kafka does not know is left out).

    Raises:
        BrokerUnavailable: no broker answered.
    """
    admin = _admin(bootstrap, security, timeout_s)
    try:
        for attempt in range(3):
            try:
                described = admin.describe_topics(list(topics))
                break
            except KafkaError as exc:
                # The request goes to one node of the metadata; a broker that just died stays in it until
                # the controller fences it (~9 s). Its connection is then marked failed: the next try asks another.
                if attempt == 2:
                    raise BrokerUnavailable(f"Kafka at {bootstrap} did not describe the topics: {exc}") from exc
    finally:
        admin.close()
    return sorted(
        PartitionReplicas(t["name"], p["partition_index"], p["leader_id"], tuple(p["replica_nodes"]), tuple(p["isr_nodes"]))
        for t in described
        if t.get("error_code", 0) == 0
        for p in t["partitions"]
    )


ADMIN_TRIES = 4  # `ensure_topics` on a cluster still forming: tries, each with a fresh admin client
ADMIN_PAUSE_S = 0.5  # times the try's number, between tries


def ensure_topics(bootstrap: str, security: KafkaSecurity, specs: Iterable[TopicSpec], timeout_s: float = 10.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names created (idempotent).

    An existing topic is left as it is, with a warning when it has fewer partitions than its spec.
    A cluster that is still forming is given `ADMIN_TRIES` tries, each with a fresh client: kafka-python
    3.0 sends a creation to the controller id of a new metadata answer, but looks the node up in the
    metadata it read first, so a broker that registered in between is unknown to it
    (UnknownBrokerIdError, which it marks not retriable; seen on a just-started 3-broker stack).

    Raises:
        BrokerUnavailable: the cluster did not answer, or refused on every try.
    """
    specs = list(specs)
    created: list[str] = []
    for attempt in range(1, ADMIN_TRIES + 1):
        try:
            _create_missing(bootstrap, security, specs, timeout_s, created)
            break
        except KafkaError as exc:
            if attempt == ADMIN_TRIES or not _retry_admin(exc):
                raise BrokerUnavailable(f"Kafka at {bootstrap} refused topic administration: {exc}") from exc
            logger.warning("topic administration at %s: %r; trying again with fresh metadata", bootstrap, exc)
            time.sleep(ADMIN_PAUSE_S * attempt)
    for name in created:
        logger.info("created topic=%s", name)
    return created


def _retry_admin(exc: KafkaError) -> bool:
    """Worth another try with fresh metadata: Kafka's retriable errors, and a node id the metadata
    does not know yet."""
    return bool(getattr(exc, "retriable", False)) or isinstance(exc, UnknownBrokerIdError)


def _create_missing(
    bootstrap: str, security: KafkaSecurity, specs: list[TopicSpec], timeout_s: float, created: list[str]
) -> None:
    """One try of `ensure_topics` with its own admin client; adds the names it creates to `created`
    as it goes (a try that fails midway keeps what it made)."""
    admin = _admin(bootstrap, security, timeout_s)
    try:
        existing = set(admin.list_topics())
        for spec in specs:
            if spec.name in existing:
                continue
            topic = NewTopic(spec.name, spec.partitions, spec.replication_factor, topic_configs=spec.configs())
            try:
                admin.create_topics([topic], timeout_ms=int(timeout_s * 1000))
                created.append(spec.name)
            except TopicAlreadyExistsError:  # another process created it meanwhile
                pass
        present = [spec for spec in specs if spec.name in existing]
        if present:
            described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics([s.name for s in present])}
            for spec in present:
                if described.get(spec.name, spec.partitions) < spec.partitions:
                    logger.warning(
                        "topic=%s has %d partitions, spec asks for %d: fewer workers can share it",
                        spec.name,
                        described[spec.name],
                        spec.partitions,
                    )
    finally:
        admin.close()


def describe_topics(bootstrap: str, security: KafkaSecurity, names: Iterable[str], timeout_s: float = 10.0) -> dict[str, int]:
    """Partition count of each named topic that exists."""
    admin = _admin(bootstrap, security, timeout_s)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(names)) if not t.get("error_code")}
    finally:
        admin.close()


def producer(bootstrap: str, security: KafkaSecurity, max_request_bytes: int, **kwargs: Any) -> KafkaProducer:
    """A synchronous producer for tools and tests (acks=all, idempotent, room for the largest message)."""
    return KafkaProducer(
        **client_kwargs(bootstrap, security),
        acks="all",
        enable_idempotence=True,
        max_request_size=max_request_bytes,
        **kwargs,
    )


def consumer(bootstrap: str, security: KafkaSecurity, *topics: str, **kwargs: Any) -> KafkaConsumer:
    """A synchronous consumer for tools and tests; without a group it never commits (and says nothing)."""
    kwargs.setdefault("enable_auto_commit", kwargs.get("group_id") is not None)
    return KafkaConsumer(*topics, **client_kwargs(bootstrap, security), **kwargs)


def read_topic(
    bootstrap: str, security: KafkaSecurity, topic: str, max_message_bytes: int | None = None, idle_ms: int = 5000
) -> list[Any]:
    """Every record of `topic` from its start (kafka-python `ConsumerRecord`s), read until `idle_ms`
    pass with nothing new; without a group, so nothing is committed. `max_message_bytes`: room for the
    largest record the topic takes. For tools, benchmarks and tests."""
    return list(iter_topic(bootstrap, security, topic, max_message_bytes, idle_ms))


def iter_topic(
    bootstrap: str, security: KafkaSecurity, topic: str, max_message_bytes: int | None = None, idle_ms: int = 5000
) -> Iterator[Any]:
    """`read_topic` one record at a time: a caller looking for one record stops at it instead of
    waiting `idle_ms` after the last (the consumer is closed when the iteration ends or is dropped)."""
    extra = {} if max_message_bytes is None else {"max_partition_fetch_bytes": max_message_bytes + 256 * 1024}
    c = consumer(bootstrap, security, topic, auto_offset_reset="earliest", consumer_timeout_ms=idle_ms, **extra)
    try:
        yield from c
    finally:
        c.close()


def tail_chunks(
    bootstrap: str,
    security: KafkaSecurity,
    topic: str,
    newest: int,
    max_message_bytes: int | None = None,
    chunk: int = 5000,
    timeout_s: float = 30.0,
) -> Iterator[list[bytes]]:
    """The values of the newest `newest` records of `topic` (an even share of each partition), up to
    the log ends as they stood when reading began, in chunks of about `chunk`; without a group, so
    nothing is committed. Stops after `timeout_s` with what it read (a slow broker never holds the
    caller longer). A worker warms its item cache from it (`streams.worker.items.ItemVectors.warm`).

    Raises:
        KafkaError: the broker could not be reached or read.
    """
    from kafka import TopicPartition

    extra = {} if max_message_bytes is None else {"max_partition_fetch_bytes": max_message_bytes + 256 * 1024}
    c = consumer(bootstrap, security, enable_auto_commit=False, check_crcs=False, **extra)  # CRCs: see _record_timestamps
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        if not tps or newest <= 0:
            return
        c.assign(tps)
        starts, ends = c.beginning_offsets(tps), c.end_offsets(tps)
        share = max(newest // len(tps), 1)
        todo = {tp: ends[tp] for tp in tps if ends[tp] > max(starts[tp], ends[tp] - share)}
        for tp in tps:
            if tp in todo:
                c.seek(tp, max(starts[tp], ends[tp] - share))
            else:
                c.pause(tp)
        deadline = time.monotonic() + timeout_s
        values: list[bytes] = []
        while todo and time.monotonic() < deadline:
            for tp, records in c.poll(timeout_ms=500, max_records=chunk).items():
                end = todo.get(tp, 0)
                values += [r.value for r in records if r.offset < end and r.value is not None]
            for tp in [tp for tp, end in todo.items() if c.position(tp) >= end]:  # a compacted log skips offsets
                del todo[tp]
                c.pause(tp)
            if len(values) >= chunk:
                yield values
                values = []
        if values:
            yield values
    finally:
        c.close()


def partition_offsets(
    bootstrap: str, security: KafkaSecurity, group_id: str, topic: str, timeout_s: float = 10.0
) -> dict[int, tuple[int, int]]:
    """(committed, log-end) offset per partition of `topic` for `group_id`; a partition the group
    never committed counts from the log start. Read with the admin API: works with every worker down."""
    return group_offsets(bootstrap, security, group_id, [topic], timeout_s)[topic]


def group_offsets(
    bootstrap: str, security: KafkaSecurity, group_id: str, topics: Sequence[str], timeout_s: float = 10.0
) -> dict[str, dict[int, tuple[int, int]]]:
    """`partition_offsets` of several topics with one admin client and one consumer (a worker samples
    its lag every few seconds: a client per topic made each sample cost seconds of CPU). Bounded:
    raises `BrokerUnavailable` after about three timeouts."""
    return _bounded(lambda: _group_offsets(bootstrap, security, group_id, topics, timeout_s), 3 * timeout_s, "group offsets")


def _group_offsets(
    bootstrap: str, security: KafkaSecurity, group_id: str, topics: Sequence[str], timeout_s: float
) -> dict[str, dict[int, tuple[int, int]]]:
    from kafka import TopicPartition

    c = consumer(bootstrap, security)
    try:
        known = {topic: sorted(c.partitions_for_topic(topic) or ()) for topic in topics}
        unknown = [topic for topic, parts in known.items() if not parts]
        if unknown:  # never "no lag": a caller would take a topic it cannot see for one fully processed
            raise BrokerUnavailable(
                f"no partitions known for {', '.join(unknown)} at {bootstrap}: the topic does not exist, or the "
                "brokers' metadata is not available yet"
            )
        partitions = [TopicPartition(topic, p) for topic, parts in known.items() for p in parts]
        # committed before the log ends: read the other way round, a commit landing in between could
        # pass the end read before it and hide that partition's lag
        admin = _admin(bootstrap, security, timeout_s)
        try:
            try:
                offsets = admin.list_group_offsets({group_id: None}).get(group_id, {})
            except (CoordinatorNotAvailableError, GroupIdNotFoundError):  # no group has committed yet
                offsets = {}
            committed = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
        finally:
            admin.close()
        ends = c.end_offsets(partitions)
        starts = c.beginning_offsets(partitions)
    finally:
        c.close()
    found: dict[str, dict[int, tuple[int, int]]] = {topic: {} for topic in topics}
    for tp in partitions:
        found[tp.topic][tp.partition] = (max(committed.get((tp.topic, tp.partition), -1), starts[tp]), ends[tp])
    return found


def group_lag(bootstrap: str, security: KafkaSecurity, group_id: str, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """Messages behind per partition of `topic` for `group_id`: log-end minus committed offset."""
    return {p: end - done for p, (done, end) in partition_offsets(bootstrap, security, group_id, topic, timeout_s).items()}


def end_offsets_total(bootstrap: str, security: KafkaSecurity, topic: str) -> int:
    """Records ever written to `topic` that are still retained (sum over partitions of end - start)."""
    from kafka import TopicPartition

    c = consumer(bootstrap, security)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        ends, starts = c.end_offsets(partitions), c.beginning_offsets(partitions)
    finally:
        c.close()
    return sum(ends[tp] - starts[tp] for tp in partitions)


def group_assignment(
    bootstrap: str, security: KafkaSecurity, group_id: str, timeout_s: float = 10.0
) -> tuple[str, dict[str, set[tuple[str, int]]]]:
    """(group state, member id -> assigned (topic, partition) set) as the coordinator sees it."""
    admin = _admin(bootstrap, security, timeout_s)
    try:
        group = admin.describe_groups([group_id])[group_id]
    finally:
        admin.close()
    members = {}
    for member in group.get("members", []):
        assigned = (member.get("member_assignment") or {}).get("assigned_partitions", [])
        members[member["member_id"]] = {(a["topic"], p) for a in assigned for p in a["partitions"]}
    return str(group.get("group_state")), members


def record_timestamps(
    bootstrap: str, security: KafkaSecurity, positions: dict[tuple[str, int], int], timeout_s: float = 10.0
) -> dict[tuple[str, int], int]:
    """The timestamp (ms) of the record at each (topic, partition) -> offset; positions at the log
    end (nothing there yet) are left out. Bounded like `group_offsets`."""
    if not positions:
        return {}
    return _bounded(lambda: _record_timestamps(bootstrap, security, positions, timeout_s), 3 * timeout_s, "record timestamps")


def _record_timestamps(
    bootstrap: str, security: KafkaSecurity, positions: dict[tuple[str, int], int], timeout_s: float
) -> dict[tuple[str, int], int]:
    import time

    from kafka import TopicPartition

    # Only the first record's timestamp is wanted: fetch little (the broker still returns a whole first
    # batch) and skip kafka-python's pure-Python CRC check, which took 15 % of a busy worker's CPU.
    c = consumer(bootstrap, security, enable_auto_commit=False, max_partition_fetch_bytes=64 * 1024, check_crcs=False)
    found: dict[tuple[str, int], int] = {}
    try:
        tps = [TopicPartition(t, p) for t, p in positions]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, positions[(tp.topic, tp.partition)])
        deadline = time.monotonic() + timeout_s
        while len(found) < len(positions) and time.monotonic() < deadline:
            for tp, records in c.poll(timeout_ms=500).items():
                key = (tp.topic, tp.partition)
                if key not in found and records:
                    found[key] = records[0].timestamp
                    c.pause(tp)
    finally:
        c.close()
    return found


def pending_records(
    bootstrap: str, security: KafkaSecurity, group_id: str, topics: Iterable[str]
) -> tuple[dict[str, dict[int, tuple[int, int]]], dict[tuple[str, int], int]]:
    """(committed, end) offsets per topic and partition, and the timestamp of the oldest unprocessed
    record of each partition with lag."""
    offsets = group_offsets(bootstrap, security, group_id, list(topics))
    behind = {(t, p): done for t, parts in offsets.items() for p, (done, end) in parts.items() if end > done}
    return offsets, record_timestamps(bootstrap, security, behind)


def oldest_pending(bootstrap: str, security: KafkaSecurity, group_id: str, topic: str) -> list[int | None]:
    """Timestamp (ms) of the oldest record `group_id` has not processed yet, for each partition of
    `topic` with lag (None where it could not be read); empty when the group is caught up."""
    offsets, stamps = pending_records(bootstrap, security, group_id, [topic])
    return [stamps.get((topic, p)) for p, (done, end) in offsets[topic].items() if end > done]
