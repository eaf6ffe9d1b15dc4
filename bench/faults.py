"""Fault harness: the delivery promise under crashes, outages and hostile input, on the real stack.

    python -m bench.faults                                  # every scenario, 2,000 uploads each
    python -m bench.faults --scenarios worker-kill,hostile --uploads 10000
    python -m bench.faults --json faults.json --markdown faults.md
    python -m bench.faults --scenarios broker-kill          # on a 3-broker KRaft cluster of its own
    python -m bench.faults --scenarios soak --uploads 9000 --rate 5   # 30 minutes: 3 workers, 3 brokers

Each scenario starts its own workers (own consumer group, topics and collections) on one local stack
(Kafka KRaft, Milvus Lite, Triton), streams a known, seeded workload at a steady rate (uploads, five
interactions per upload, duplicates, out-of-order events and hostile messages interleaved), injects
its faults mid-stream, waits until the lag is zero without any manual step, and checks the end state
against a recomputation from the event log:
- every good upload is in Milvus with the vector the encoder gives for it (cosine >= 0.999);
- every user's vector equals the pure function over that user's good events (duplicates once);
- every bad message is in the dead-letter topic with its reason, and no good event is there;
- no worker exited except those the scenario killed.
Recovery times come from the group's committed offsets, sampled every second: *resumed* = from the
end of a fault until the affected partitions commit again; *caught up* = until the lag is back to
its level before the fault. `broker-kill` runs against three Kafka nodes (replication factor 3,
min.insync.replicas 2) that share the stack's Milvus and Triton: it SIGKILLs the broker leading the
most of the scenario's partitions mid-stream and starts it again later; its *resumed* counts from the
kill (processing goes on during the outage once new leaders are elected), and it records the
under-replicated partitions Kafka, the worker's status page and its metrics showed. `soak` runs
three workers on three brokers for the whole stream: every `--every` seconds one worker after the
other is SIGKILLed or stopped with SIGTERM and started again, and one broker is SIGKILLed and started
again half-way; besides the checks above, no partition may go more than 30 s without a commit while
records wait past it (every scenario reports its longest such wait, and the commit repairs its
workers logged, by kind). The figures go
to bench/results/faults.json (a subset of scenarios: faults-NAME[-NAME...].json; `bench.results`),
from which `python -m bench.report` renders BENCHMARKS.md. Never a test by itself:
`tests/integration/test_faults.py` runs the same scenarios small and asserts on correctness only,
never on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.hostile import Fuzzer, Hostile
from bench.results import scratch_dir, write_result
from deploy.local.process import ManagedProcess
from deploy.local.stack import Stack, free_kafka_ports, free_ports
from deploy.local.workers import start_worker, wait_for_group
from deploy.traffic import LoadPlan, Traffic
from encoders.client import EncoderClient
from streams.interest.maths import InterestParams, fold_interactions, interest_vectors
from streams.sinks.kafka import ensure_topics, group_assignment, partition_offsets, partition_replicas, producer, read_topic
from streams.sinks.milvus import MilvusSink, ensure_collections
from streams.worker.content import inline_request
from topology import reasons
from topology.codec import decode_dead_letter, encode_interaction, encode_upload
from topology.collections import VECTOR_FIELD, user_key
from topology.messages import ContentUpload, Interaction
from topology.settings import Settings, host_port
from topology.topics import replication

SCENARIOS = (
    "worker-kill",
    "two-workers-one-killed",
    "triton-down",
    "milvus-down",
    "kafka-restart",
    "broker-kill",
    "hostile",
    "soak",
)
CLUSTER_SCENARIOS = frozenset({"broker-kill", "soak"})  # need a Kafka cluster of 3 nodes (`cluster_stack`)
SOAK_WORKERS = 3
SOAK_COMMIT_WAIT_S = 30.0  # the soak's bound: no partition without a commit for longer while records wait
TP = tuple[str, int]


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """The seeded workload of one scenario."""

    uploads: int = 2000
    uploads_per_s: float = 30.0
    interactions_per_upload: float = 5.0
    hostile_share: float = 0.05  # bad messages per good event
    duplicate_share: float = 0.02  # exact re-sends of good interactions
    late_share: float = 0.02  # good interactions stamped up to an hour in the past
    users: int = 200
    seed: int = 7
    visible_after_s: float = 3.0  # users act on items uploaded at least this long ago
    image_share: float = 0.3

    @property
    def duration_s(self) -> float:
        return self.uploads / self.uploads_per_s


@dataclass
class Sent:
    """Everything the stream produced: the log the end state is checked against."""

    uploads: list[ContentUpload] = field(default_factory=list)
    interactions: list[Interaction] = field(default_factory=list)  # good ones, duplicates included
    good_bytes: set[bytes] = field(default_factory=set)
    bad: list[Hostile] = field(default_factory=list)

    @property
    def events(self) -> int:
        return len(self.uploads) + len(self.interactions) + len(self.bad)


class Stream(threading.Thread):
    """Produces the plan at its rate; a producer that outlives a broker restart (idempotent, acks=all,
    re-sends what failed), so every record counted in `sent` is in Kafka."""

    def __init__(self, settings: Settings, plan: StreamPlan, run_id: str) -> None:
        super().__init__(name="fault-stream", daemon=True)
        self.settings, self.plan, self.run_id = settings, plan, run_id
        self.sent = Sent()
        self.error: BaseException | None = None
        self.finished_at: float | None = None

    def run(self) -> None:
        try:
            self._produce()
        except BaseException as exc:
            self.error = exc
        self.finished_at = time.monotonic()

    def _produce(self) -> None:
        s, plan, sent = self.settings, self.plan, self.sent
        topics = s.topics()
        names = {"uploads": topics.uploads.name, "interactions": topics.interactions.name}
        traffic = Traffic(LoadPlan(users=plan.users, seed=plan.seed, image_share=plan.image_share), run_id=self.run_id)
        fuzzer = Fuzzer(plan.seed + 1, s.limits(), self.run_id, internal_port=host_port(s.milvus_uri)[1])
        rng = np.random.default_rng(plan.seed + 2)
        p = producer(s.kafka_bootstrap, s.kafka_security(), s.max_message_bytes, max_block_ms=300_000, linger_ms=5)
        pending: list[tuple[str, bytes, bytes, object]] = []

        def send(topic: str, key: bytes, value: bytes) -> None:
            pending.append((topic, key, value, p.send(topic, key=key, value=value)))

        uploaded_at: list[float] = []
        began = time.monotonic()
        try:
            while len(sent.uploads) < plan.uploads:
                elapsed = time.monotonic() - began
                while len(sent.uploads) < min(plan.uploads, plan.uploads_per_s * elapsed):
                    upload = traffic.upload(int(time.time() * 1000))
                    sent.uploads.append(upload)
                    uploaded_at.append(time.monotonic())
                    data = encode_upload(upload)
                    sent.good_bytes.add(data)
                    send(names["uploads"], upload.item_id.encode(), data)
                visible = int(np.searchsorted(uploaded_at, time.monotonic() - plan.visible_after_s))
                while visible and len(sent.interactions) < plan.interactions_per_upload * plan.uploads_per_s * elapsed:
                    event = traffic.interaction(int(time.time() * 1000), visible=visible)
                    assert event is not None
                    roll = rng.random()
                    if roll < plan.late_share:
                        event = fuzzer.out_of_order(event)
                    self._interaction(send, names["interactions"], event)
                    if rng.random() < plan.duplicate_share and sent.interactions:
                        again = sent.interactions[int(rng.integers(len(sent.interactions)))]
                        self._interaction(send, names["interactions"], again)
                    while len(sent.bad) < plan.hostile_share * (len(sent.uploads) + len(sent.interactions)):
                        bad = fuzzer.bad(sent.uploads[int(rng.integers(len(sent.uploads)))], event)
                        sent.bad.append(bad)
                        send(names[bad.topic], bad.key, bad.value)
                time.sleep(0.01)
            self._settle(p, pending)
        finally:
            p.close()

    def _interaction(self, send: Callable[[str, bytes, bytes], None], topic: str, event: Interaction) -> None:
        data = encode_interaction(event)
        self.sent.interactions.append(event)
        self.sent.good_bytes.add(data)
        send(topic, event.user_id.encode(), data)

    @staticmethod
    def _settle(p: object, pending: list[tuple[str, bytes, bytes, object]]) -> None:
        """Flush, then re-send whatever the client gave up on (a re-send is a duplicate, which the
        pipeline must absorb anyway) until every record is acknowledged."""
        for _ in range(20):
            p.flush()  # type: ignore[attr-defined]
            failed = [(t, k, v) for t, k, v, future in pending if future.failed()]  # type: ignore[attr-defined]
            if not failed:
                return
            pending[:] = [(t, k, v, p.send(t, key=k, value=v)) for t, k, v in failed]  # type: ignore[attr-defined]
            time.sleep(1.0)
        raise RuntimeError(f"{len(pending)} records could not be produced after 20 flushes")


class Monitor(threading.Thread):
    """Samples the group's committed and log-end offsets per partition every second."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="fault-monitor", daemon=True)
        self.settings = settings
        topics = settings.topics()
        self.topics = [topics.uploads.name, topics.interactions.name, topics.interactions_retry.name]
        self.samples: list[tuple[float, dict[TP, tuple[int, int]]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        s = self.settings
        while not self._halt.is_set():
            try:
                offsets = {
                    (t, p): v
                    for t in self.topics
                    for p, v in partition_offsets(s.kafka_bootstrap, s.kafka_security(), s.app_id, t, timeout_s=3.0).items()
                }
                self.samples.append((time.monotonic(), offsets))
            except Exception:
                pass
            self._halt.wait(1.0)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


@dataclass
class Fault:
    what: str
    injected_at: float
    restored_at: float
    partitions: frozenset[TP] | None = None  # the partitions it stopped; None: all
    resumed_s: float | None = None
    caught_up_s: float | None = None
    under_replicated: dict[str, int] | None = (
        None  # broker-kill: the most partitions short of replicas, as Kafka / the status page / the metric showed
    )
    in_sync_again_s: float | None = (
        None  # broker-kill: from the restarted broker's health (`stack up` returned) until Kafka reports every partition in sync
    )


def _lag(offsets: dict[TP, tuple[int, int]], partitions: frozenset[TP] | None = None) -> int:
    return sum(end - done for tp, (done, end) in offsets.items() if partitions is None or tp in partitions)


def measure(fault: Fault, samples: list[tuple[float, dict[TP, tuple[int, int]]]], settle_s: float = 1.5) -> None:
    """Fill in resumed_s and caught_up_s from the offset samples (None where never seen).

    The committed offsets to beat: those read `settle_s` after the fault began (a sample finishing
    earlier may have started before it, when a killed worker could still commit); when no sample
    could be read during the fault (Kafka itself down, so nothing committed), the last one before it.
    *Resumed*: the first sample after the restore that commits beyond them, or shows no lag; *caught
    up*: the first whose lag is back to the worst of the 10 s before the fault. Only the fault's
    partitions count when it names them.
    """
    mine = fault.partitions

    def committed(offsets: dict[TP, tuple[int, int]]) -> int:
        return sum(done for tp, (done, _) in offsets.items() if mine is None or tp in mine)

    before = [(t, o) for t, o in samples if t <= fault.injected_at]
    blind = fault.restored_at - fault.injected_at > settle_s and not any(
        fault.injected_at < t <= fault.restored_at for t, _ in samples
    )
    settled = before[-1:] if blind else [(t, o) for t, o in samples if t >= fault.injected_at + settle_s][:1]
    if not settled:
        return
    base_t, base = settled[0][0], committed(settled[0][1])
    level = max((_lag(o, mine) for t, o in before if t >= fault.injected_at - 10), default=0)
    for t, offsets in samples:
        if t <= fault.restored_at or t < base_t:
            continue
        if fault.resumed_s is None and (committed(offsets) > base or _lag(offsets, mine) == 0):
            fault.resumed_s = round(t - fault.restored_at, 1)
        if fault.caught_up_s is None and _lag(offsets, mine) <= level:
            fault.caught_up_s = round(t - fault.restored_at, 1)


@dataclass
class Result:
    scenario: str
    events_in: int
    uploads: int
    interactions: int
    bad_sent: int
    items_verified: int
    items_lost: int
    items_wrong: int
    users_verified: int
    users_wrong: int
    dead_lettered: int
    bad_not_dead_lettered: int
    bad_wrong_reason: int
    good_dead_lettered: int
    bad_dead_lettered_again: int  # dead letters beyond one per bad message sent (a replay after a kill)
    bad_kinds: dict[str, int]
    workers_exited: int
    worker_peak_rss_mb: float  # the largest peak resident memory (VmHWM) of the scenario's live workers
    drained_s: float
    faults: list[Fault]
    problems: list[str]
    longest_commit_wait_s: float = 0.0  # the longest a partition went without a commit while records waited past it
    longest_commit_wait_at: str = ""  # which partition, at which committed offset
    repairs: dict[str, int] = field(default_factory=dict)  # the workers' logged commit repairs by kind, stall reports

    @property
    def lost(self) -> int:
        return self.items_lost + self.users_wrong + self.bad_not_dead_lettered

    @property
    def passed(self) -> bool:
        return not self.problems


def longest_commit_wait(samples: list[tuple[float, dict[TP, tuple[int, int]]]]) -> tuple[float, str]:
    """The longest time a partition's committed offset stayed put while records waited past it (end >
    committed), from the monitor's samples, and where: ("topic[p]@offset"). 0 when none waited."""
    longest, where = 0.0, ""
    since: dict[TP, tuple[int, float]] = {}  # tp -> (committed offset, first sample it waited at)
    for t, offsets in samples:
        for tp, (done, end) in offsets.items():
            if done >= end:
                since.pop(tp, None)
                continue
            held = since.get(tp)
            if held is None or held[0] != done:
                since[tp] = (done, t)
                continue
            if t - held[1] > longest:
                longest, where = t - held[1], f"{tp[0]}[{tp[1]}]@{done}"
    return round(longest, 1), where


def repairs_logged(log: str) -> dict[str, int]:
    """The commit repairs the workers logged, by kind (`CommitRepair`: dedup, seek), and their stall
    reports ("stall"): every one is also counted in sail_commit_repairs_total / logged once per offset."""
    found = Counter(match.group(1) for match in re.finditer(r"repaired a Faust offset-commit fault kind=(\w+)", log))
    found["stall"] += log.count("partition not committing")
    return {kind: n for kind, n in sorted(found.items()) if n}


def stall_reports(log: str, last: int = 12) -> str:
    """The worker's reports of partitions that stopped committing, with where its tasks waited
    (`streams.worker.app`'s stall report): the last `last` report lines of `log`."""
    lines = log.splitlines()
    kept = []
    for i, line in enumerate(lines):
        if "partition not committing" in line or "the worker's tasks wait in" in line:
            kept.append(line)
            if "tasks wait in" in line:
                kept += [following for following in lines[i + 1 : i + 20] if following.startswith("  ")][:10]
    return "\n".join(kept[-last:]) or "(none)"


class Scenario:
    """One run: own group, topics and collections; workers started here and stopped at the end."""

    def __init__(
        self,
        stack: Stack,
        name: str,
        plan: StreamPlan,
        run_dir: Path,
        progress: Callable[[str], None] = lambda line: None,
        outage_s: float = 30.0,
        loglevel: str = "info",
        static: bool = True,
        every_s: float = 120.0,
        commit_bound: bool = True,
        **overrides: object,
    ) -> None:
        """`every_s`: the soak's pause between two worker faults; `commit_bound`: the soak fails when a
        partition went longer than SOAK_COMMIT_WAIT_S without a commit while records waited (a bound on
        time, for the benchmark: the tests check correctness only)."""
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
        if name in CLUSTER_SCENARIOS and len(stack.processes("kafka")) < 3:
            raise ValueError(f"{name} needs a Kafka cluster of 3 nodes or more: run it on cluster_stack(stack)")
        tag = f"{name.replace('-', '')[:10]}{uuid.uuid4().hex[:6]}"
        self.stack, self.name, self.plan, self.progress, self.outage_s, self.loglevel = (
            stack,
            name,
            plan,
            progress,
            outage_s,
            loglevel,
        )
        self.static = static  # static group membership of the workers (deploy.local.workers.start_worker)
        self.every_s, self.commit_bound = every_s, commit_bound
        self.settings = stack.settings.model_copy(update={"item_wait_s": 10.0, **overrides}).namespaced(tag)
        s = self.settings
        ensure_topics(s.kafka_bootstrap, s.kafka_security(), s.topics().all())
        ensure_collections(s.milvus_uri, s.milvus_token_value, s.collections(), s.milvus_backend, tls=s.milvus_tls())
        self.run_dir = run_dir / tag
        self.rng = np.random.default_rng(plan.seed + 100)
        self.workers: list[ManagedProcess] = []
        self.killed: set[str] = set()
        self.faults: list[Fault] = []
        self.began = 0.0
        self._members_before: dict[str, set[TP]] = {}

    # ------------------------------------------------------------------ workers and faults

    def start_workers(self, count: int) -> None:
        for port in free_ports(count):
            self.workers.append(start_worker(self.settings, port, self.run_dir, loglevel=self.loglevel, static=self.static))
        wait_for_group(self.settings, [w for w in self.workers if w.is_running()])

    def kill(self, worker: ManagedProcess) -> None:
        sigkill(worker)
        self.killed.add(worker.name)

    def restart(self, worker: ManagedProcess) -> ManagedProcess:
        port = int(worker.name.rsplit("-", 1)[1])
        fresh = start_worker(self.settings, port, self.run_dir, loglevel=self.loglevel, static=self.static)
        self.workers[self.workers.index(worker)] = fresh
        self.killed.discard(worker.name)
        return fresh

    def at(self, fraction: float) -> None:
        """Sleep until `fraction` of the stream's duration has passed."""
        time.sleep(max(self.began + fraction * self.plan.duration_s - time.monotonic(), 0.0))

    def outage(self, service: str, down_s: float) -> None:
        injected = time.monotonic()
        self.stack.down([service])
        self.progress(f"{self.name}: {service} down for {down_s:.0f}s")
        time.sleep(down_s)
        self.stack.up([service])
        uploads = self.settings.topics().uploads.name  # without Triton only the content agent stops
        stopped = frozenset((uploads, p) for p in range(self.settings.topic_partitions)) if service == "triton" else None
        self.faults.append(Fault(f"{service} down {down_s:.0f}s", injected, time.monotonic(), stopped))

    def inject(self) -> None:
        """The scenario's faults, at seeded points of the stream."""
        u = self.rng.uniform
        if self.name == "worker-kill":
            (worker,) = self.workers
            for label, when in (("mid-stream", u(0.15, 0.3)), ("during recovery", None), ("late", u(0.55, 0.75))):
                if when is None:
                    time.sleep(u(3.0, 8.0))  # the restarted worker waits in a rebalance for the dead member to expire
                else:
                    self.at(when)
                injected = time.monotonic()
                self.kill(worker)
                worker = self.restart(worker)
                self.progress(f"{self.name}: SIGKILL ({label}) and restart")
                self.faults.append(Fault(f"SIGKILL {label}, restart", injected, time.monotonic()))
        elif self.name == "two-workers-one-killed":
            self.at(u(0.25, 0.5))
            _, self._members_before = group_assignment(
                self.settings.kafka_bootstrap, self.settings.kafka_security(), self.settings.app_id
            )
            injected = time.monotonic()
            self.kill(self.workers[1])
            self.progress(f"{self.name}: SIGKILL one of two workers, not restarted")
            self.faults.append(Fault("SIGKILL 1 of 2 workers, survivor takes over", injected, injected))
        elif self.name == "triton-down":
            self.at(0.25)
            self.outage("triton", self.outage_s)
        elif self.name == "milvus-down":
            self.at(0.25)
            self.outage("milvus", self.outage_s)
        elif self.name == "kafka-restart":
            self.at(0.3)
            self.outage("kafka", min(self.outage_s, 10.0))
        elif self.name == "broker-kill":
            self.at(0.25)
            self.broker_kill(self.outage_s)
        elif self.name == "soak":
            self.soak()

    def soak(self) -> None:
        """Every `every_s` one worker after the other is SIGKILLed or stopped cleanly (SIGTERM), in turn,
        and started again on its port; half-way between two of those, one broker is SIGKILLed for
        `outage_s` and started again. Until the stream ends: the traffic never pauses."""
        duration, every = self.plan.duration_s, self.every_s
        broker_at = (int(duration / every / 2) + 0.5) * every  # between two worker faults, about half-way
        moments = sorted([*((n * every, "worker") for n in range(1, int(duration / every) + 1)), (broker_at, "broker")])
        turn = 0
        for when, what in moments:
            if when >= duration - 1.0:
                break
            self.at(when / duration)
            if what == "broker":
                self.broker_kill(self.outage_s)
                continue
            worker = self.workers[turn % len(self.workers)]
            label = "SIGKILL" if turn % 2 == 0 else "SIGTERM"
            injected = time.monotonic()
            if label == "SIGKILL":
                self.kill(worker)
            else:
                worker.stop()
            self.restart(worker)
            self.progress(f"{self.name}: {label} worker {turn % len(self.workers) + 1} and restart at {when:.0f}s")
            self.faults.append(Fault(f"{label} worker {turn % len(self.workers) + 1}, restart", injected, time.monotonic()))
            turn += 1

    def broker_kill(self, down_s: float) -> None:
        """SIGKILL the node leading the most of this scenario's partitions, watch the worker report the
        under-replicated partitions while it is down, then start it again."""
        s = self.settings
        topics = [t.name for t in s.topics().all()]
        leaders = Counter(p.leader for p in partition_replicas(s.kafka_bootstrap, s.kafka_security(), topics))
        node = leaders.most_common(1)[0][0]
        injected = time.monotonic()
        sigkill(self.stack.processes("kafka")[node - 1])
        self.progress(f"{self.name}: SIGKILL broker {node} (leader of {leaders[node]} partitions) for {down_s:.0f}s")
        # the most Kafka (on all the scenario's topics) and any worker (on those it watches) showed, from the
        # kill until all in sync again: read in one loop, so a slow or failing read of one does not hide another
        seen = {"kafka": 0, "status page": 0, "metric": 0}
        while time.monotonic() < injected + down_s:
            self._look(seen, topics)
            time.sleep(1.0)
        self.faults.append(
            Fault(f"SIGKILL broker {node} of 3 (leader of {leaders[node]} partitions)", injected, injected, under_replicated=seen)
        )
        restarted = time.monotonic()
        self.stack.up(["kafka"])
        self.progress(f"{self.name}: broker {node} back after {time.monotonic() - injected:.0f}s")
        back = time.monotonic()
        self.faults.append(
            Fault(
                f"broker {node} restarted after {down_s:.0f}s", restarted, back, in_sync_again_s=self._in_sync(back, topics, seen)
            )
        )

    def _look(self, seen: dict[str, int], topics: list[str]) -> int | None:
        """Kafka's count of under-replicated partitions of `topics` and every running worker's view of
        them, as an operator would look at any of them, into `seen` (the most so far); returns Kafka's
        count, None when it did not answer (a broker just killed: the next look asks again). The soak
        restarts workers, and one still starting (its page not yet serving) saw nothing in two runs.
        Kafka's count is read here, not by the offset monitor: taken there after the offset reads,
        which fail for seconds while a broker is down, it missed the whole window once (CI,
        2026-12-04: {kafka 0, status page 15, metric 15})."""
        s = self.settings
        short = None
        try:
            short = sum(
                p.under_replicated for p in partition_replicas(s.kafka_bootstrap, s.kafka_security(), topics, timeout_s=3.0)
            )
            seen["kafka"] = max(seen["kafka"], short)
        except Exception:
            pass
        for worker in [w for w in self.workers if w.is_running()]:
            page, metric = _worker_replica_view(int(worker.name.rsplit("-", 1)[1]))
            seen["status page"], seen["metric"] = max(seen["status page"], page), max(seen["metric"], metric)
        return short

    def _in_sync(self, since: float, topics: list[str], seen: dict[str, int], timeout_s: float = 120.0) -> float | None:
        """Seconds from `since` until Kafka reports every partition of `topics` fully in sync; None if
        not within `timeout_s`. Every view goes on into `seen` meanwhile: the partitions stay
        under-replicated until the restarted broker has caught up. On a loaded machine Kafka took most
        of a 14 s kill to shrink the in-sync replicas (CI, 2026-12-04: 9 partitions seen short by
        Kafka, none yet by the worker when the broker came back)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._look(seen, topics) == 0:
                return round(time.monotonic() - since, 1)
            time.sleep(0.5)
        return None

    def _victims(self) -> frozenset[TP] | None:
        """The partitions the killed worker held: those of the member that is gone from the group."""
        if not self._members_before:
            return None
        _, now = group_assignment(self.settings.kafka_bootstrap, self.settings.kafka_security(), self.settings.app_id)
        gone = [parts for member, parts in self._members_before.items() if member not in now]
        return frozenset().union(*gone) if gone else None

    # ------------------------------------------------------------------ the run

    def run(self, drain_timeout_s: float = 900.0) -> Result:
        plan = self.plan
        self.start_workers({"two-workers-one-killed": 2, "soak": SOAK_WORKERS}.get(self.name, 1))
        monitor = Monitor(self.settings)
        monitor.start()
        stream = Stream(self.settings, plan, run_id=f"{self.settings.app_id}")
        self.began = time.monotonic()
        stream.start()
        try:
            return self._run(stream, monitor, drain_timeout_s)
        finally:
            for worker in self.workers:  # also when the run failed or timed out: no worker outlives its scenario
                worker.stop()

    def _run(self, stream: Stream, monitor: Monitor, drain_timeout_s: float) -> Result:
        try:
            self.inject()
            stream.join()
            if stream.error is not None:
                raise RuntimeError(f"the stream producer failed: {stream.error}") from stream.error
            self.progress(f"{self.name}: stream done ({stream.sent.events} events), waiting for zero lag")
            drained = self._drain(drain_timeout_s)
        finally:
            monitor.stop()
        if self.name == "two-workers-one-killed":
            self.faults[0].partitions = self._victims()
        for fault in self.faults:
            measure(fault, monitor.samples)
        exited = [w.name for w in self.workers if w.name not in self.killed and not w.is_running()]
        peak_mb = max((peak_rss_mb(w) for w in self.workers if w.is_running()), default=0.0)
        result = self.verify(stream.sent, drained - (stream.finished_at or drained), exited, peak_mb)
        result.longest_commit_wait_s, result.longest_commit_wait_at = longest_commit_wait(monitor.samples)
        result.repairs = repairs_logged("\n".join(w.log_tail(1_000_000) for w in self.workers))
        if self.name == "soak" and self.commit_bound and result.longest_commit_wait_s > SOAK_COMMIT_WAIT_S:
            result.problems.append(
                f"{result.longest_commit_wait_at} went {result.longest_commit_wait_s:.0f}s without a commit while records "
                f"waited (bound {SOAK_COMMIT_WAIT_S:.0f}s)"
            )
        return result

    def _drain(self, timeout_s: float) -> float:
        s = self.settings
        topics = [t.name for t in (s.topics().uploads, s.topics().interactions, s.topics().interactions_retry)]
        deadline = time.monotonic() + timeout_s
        behind: dict[str, int] = {}
        while time.monotonic() < deadline:
            try:
                offsets = {
                    (t, p): v
                    for t in topics
                    for p, v in partition_offsets(s.kafka_bootstrap, s.kafka_security(), s.app_id, t).items()
                }
                behind = {f"{t}[{p}]@{done}": end - done for (t, p), (done, end) in offsets.items() if done < end}
                if not behind:
                    return time.monotonic()
            except Exception:
                pass
            time.sleep(1.0)
        logs = "\n".join(
            f"--- {w.name} ({'running' if w.is_running() else 'exited'}), stall reports:\n"
            f"{stall_reports(w.log_tail(100_000))}\nlast lines:\n{w.log_tail(40)}"
            for w in self.workers
        )
        raise TimeoutError(
            f"{self.name}: lag did not return to zero within {timeout_s:.0f}s; "
            f"behind (committed offset: messages): {behind}\n{logs}"
        )

    # ------------------------------------------------------------------ the check

    def verify(self, sent: Sent, drained_s: float, exited: list[str], peak_mb: float = 0.0) -> Result:
        s = self.settings
        problems: list[str] = []
        stored = _stored_items(s, [u.item_id for u in sent.uploads])
        expected = asyncio.run(_encode(s, sent.uploads))
        lost = [u.item_id for u in sent.uploads if u.item_id not in stored]
        wrong = [
            i
            for i, v in expected.items()
            if i in stored and float(stored[i] @ v / (np.linalg.norm(stored[i]) * np.linalg.norm(v))) < 0.999
        ]
        if lost:
            problems.append(f"{len(lost)} uploads missing from Milvus, e.g. {lost[:3]}")
        if wrong:
            problems.append(f"{len(wrong)} items with a vector unlike the encoder's (cosine < 0.999), e.g. {wrong[:3]}")

        params = InterestParams.for_settings(s)
        logs: dict[str, list[Interaction]] = {}
        for event in sent.interactions:
            logs.setdefault(event.user_id, []).append(event)
        got = _user_rows(s, sorted(logs))
        users_wrong = []
        for user, log in sorted(logs.items()):
            state = fold_interactions(log, params)
            want = interest_vectors(state, stored, params)
            row = got.get(user)
            if want is None:
                if row is not None:
                    users_wrong.append(f"{user}: a row although no positive event")
            elif row is None:
                users_wrong.append(f"{user}: no row")
            elif row[1] != state.event_count or not np.allclose(row[0], want[0], atol=1e-5):
                users_wrong.append(
                    f"{user}: event_count {row[1]} vs {state.event_count} in the log, "
                    f"max |diff| {float(np.abs(row[0] - want[0]).max()):.1e}"
                )
        if users_wrong:
            problems.append(
                f"{len(users_wrong)} of {len(logs)} users differ from the recomputation: " + "; ".join(users_wrong[:5])
            )

        letters = _dead_letters(s)
        by_original: dict[bytes, set[str]] = {}
        for original, reason in letters:
            by_original.setdefault(original, set()).add(reason)
        missing = [b for b in sent.bad if b.value not in by_original]
        wrong_reason = [
            b
            for b in sent.bad
            if b.value in by_original
            and not (by_original[b.value] <= reasons.ALL and (b.reason is None or b.reason in by_original[b.value]))
        ]
        good_there = sum(1 for original, _ in letters if original in sent.good_bytes)
        copies = Counter(original for original, _ in letters)
        sent_as = Counter(b.value for b in sent.bad)  # some kinds send the same bytes many times (not_a_map)
        again = sum(max(copies[value] - n, 0) for value, n in sent_as.items())
        if missing:
            problems.append(f"{len(missing)} bad messages not dead-lettered, kinds {dict(Counter(b.kind for b in missing))}")
        if wrong_reason:
            problems.append(
                f"{len(wrong_reason)} bad messages with a wrong reason, "
                f"e.g. {[(b.kind, sorted(by_original[b.value])) for b in wrong_reason[:3]]}"
            )
        if good_there:
            problems.append(f"{good_there} good events in the dead-letter topic")
        if exited:
            problems.append(f"workers exited by themselves: {exited}")
        for fault in self.faults:
            if fault.under_replicated is not None and not all(fault.under_replicated.values()):
                problems.append(
                    f"{fault.what}: under-replicated partitions not shown everywhere (most seen: {fault.under_replicated})"
                )
            if fault.what.startswith("broker") and fault.in_sync_again_s is None:
                problems.append(f"{fault.what}: partitions still under-replicated 120 s after the restart")
        return Result(
            scenario=self.name,
            events_in=sent.events,
            uploads=len(sent.uploads),
            interactions=len(sent.interactions),
            bad_sent=len(sent.bad),
            items_verified=len(sent.uploads) - len(lost) - len(wrong),
            items_lost=len(lost),
            items_wrong=len(wrong),
            users_verified=len(logs) - len(users_wrong),
            users_wrong=len(users_wrong),
            dead_lettered=len(letters),
            bad_not_dead_lettered=len(missing),
            bad_wrong_reason=len(wrong_reason),
            good_dead_lettered=good_there,
            bad_dead_lettered_again=again,
            bad_kinds=dict(sorted(Counter(b.kind for b in sent.bad).items())),
            workers_exited=len(exited),
            worker_peak_rss_mb=round(peak_mb, 1),
            drained_s=round(drained_s, 1),
            faults=self.faults,
            problems=problems,
        )


def sigkill(proc: ManagedProcess) -> None:
    """SIGKILL a managed process's whole group (no shutdown of its own), then clear its record."""
    record = proc.record()
    if record is not None:
        os.killpg(record.pgid, signal.SIGKILL)
    proc.stop()


def _worker_replica_view(port: int) -> tuple[int, int]:
    """(partitions the worker's status page lists as under-replicated, the sum of its
    sail_kafka_under_replicated_partitions gauge); (0, 0) when the worker does not answer."""
    from tests.support.metrics import sample, scrape

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=3.0) as response:
            page = len(json.load(response)["replicas"]["under_replicated"])
        metrics = scrape(f"http://127.0.0.1:{port}/metrics", timeout_s=3.0)
    except Exception:
        return 0, 0
    return page, int(sample(metrics, "sail_kafka_under_replicated_partitions"))


def cluster_stack(stack: Stack, brokers: int = 3, progress: Callable[[str], None] = lambda line: None) -> Stack:
    """A Kafka cluster of `brokers` nodes on free loopback ports, beside `stack`'s own broker, sharing its
    Milvus and Triton: for the scenarios that kill one broker of several. Started here; `down(["kafka"])` stops it.

    Raises:
        ServiceFailed: the nodes did not come up.
    """
    bootstrap, controller = free_kafka_ports(brokers)
    settings = stack.settings.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "kafka_brokers": brokers,
            "kafka_controller_port": controller,
            "topic_replication_factor": replication(brokers)[0],
            "state_dir": stack.state_dir / f"kafka-cluster-{controller}",
        }
    )
    cluster = Stack(settings, progress)
    try:
        cluster.up(["kafka"])
    except Exception:
        cluster.down(["kafka"])
        raise
    return cluster


def peak_rss_mb(worker: ManagedProcess) -> float:
    """A live worker's peak resident memory so far (VmHWM), in MiB; 0 when it cannot be read.
    Read from /proc: psutil reports the current RSS only, not the peak."""
    record = worker.record()
    try:
        status = Path(f"/proc/{record.pid}/status").read_text() if record is not None else ""
    except OSError:
        return 0.0
    kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    return kb / 1024


async def _rows(settings: Settings, collection: str, keys: list[str], fields: list[str]) -> list[dict]:
    """Rows by primary key, 500 keys per Milvus get."""
    sink = MilvusSink.for_settings(settings)
    await sink.start()
    try:
        return [
            row
            for start in range(0, len(keys), 500)
            for row in await sink.get(collection, keys[start : start + 500], fields=fields)
        ]
    finally:
        await sink.close()


def _stored_items(settings: Settings, ids: list[str]) -> dict[str, np.ndarray]:
    rows = asyncio.run(_rows(settings, settings.collections()[0].name, ids, [VECTOR_FIELD]))
    return {row["item_id"]: np.asarray(row[VECTOR_FIELD], dtype=np.float32) for row in rows}


def _user_rows(settings: Settings, users: list[str]) -> dict[str, tuple[np.ndarray, int]]:
    rows = asyncio.run(
        _rows(settings, settings.collections()[1].name, [user_key(u, 0) for u in users], [VECTOR_FIELD, "event_count", "user_id"])
    )
    return {row["user_id"]: (np.asarray(row[VECTOR_FIELD], dtype=np.float32), int(row["event_count"])) for row in rows}


async def _encode(settings: Settings, uploads: list[ContentUpload]) -> dict[str, np.ndarray]:
    """The encoder's own vector for each upload, asked of Triton directly (inline media only)."""
    client = EncoderClient.for_settings(settings, timeout_s=60.0)
    await client.start()
    try:
        vectors = {}
        for start in range(0, len(uploads), 32):
            batch = uploads[start : start + 32]
            requests = [inline_request(u) for u in batch]
            for upload, result in zip(batch, await client.encode(requests)):
                if result.vector is not None:
                    vectors[upload.item_id] = result.vector
        return vectors
    finally:
        await client.close()


def _dead_letters(settings: Settings) -> list[tuple[bytes, str]]:
    """(original bytes, reason) of every record in the dead-letter topic."""
    s = settings
    records = read_topic(s.kafka_bootstrap, s.kafka_security(), s.topics().dead_letters.name, s.max_message_bytes)
    return [(letter.original, letter.reason) for letter in (decode_dead_letter(r.value, s.limits()) for r in records)]


# --------------------------------------------------------------------------- report


def markdown(results: list[Result], plan: StreamPlan, info: dict[str, object]) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}; {info['date']}. "
        f"Per scenario: {plan.uploads} uploads at {plan.uploads_per_s:g}/s, "
        f"{plan.interactions_per_upload:g} interactions per upload, "
        f"hostile share {plan.hostile_share:g} (hostile scenario: 0.3), seed {plan.seed}; "
        f"{info.get('membership', 'dynamic')} group membership.",
        "",
        "| scenario | events in | items verified | users verified | lost | dead-lettered (bad sent) | good in DLQ "
        "| faults: resumed / caught up after | drained after stream | longest without a commit | commit repairs "
        "| worker peak RSS | result |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---|",
    ]
    for r in results:
        faults = "; ".join(f"{f.what}: {_s(f.resumed_s)} / {_s(f.caught_up_s)}{_replicas(f)}" for f in r.faults) or "none"
        lines.append(
            f"| {r.scenario} | {r.events_in:,} | {r.items_verified:,} / {r.uploads:,} "
            f"| {r.users_verified} / {r.users_verified + r.users_wrong} | "
            f"{r.lost} | {r.dead_lettered:,} ({r.bad_sent:,}) | {r.good_dead_lettered} | {faults} | {r.drained_s:.1f} s "
            f"| {r.longest_commit_wait_s:.0f} s | {', '.join(f'{k} {n}' for k, n in r.repairs.items()) or 'none'} "
            f"| {r.worker_peak_rss_mb:,.0f} MiB | "
            f"{'pass' if r.passed else 'FAIL: ' + '; '.join(r.problems)} |"
        )
    hostile = [r for r in results if r.scenario == "hostile"]
    if hostile:
        r = hostile[0]
        lines += [
            "",
            f"Hostile scenario, bad messages by kind ({r.bad_sent:,} in all, "
            f"{r.bad_dead_lettered_again} extra dead letters from replays):",
            "",
            "| kind | sent |",
            "|---|---:|",
            *(f"| {kind} | {n:,} |" for kind, n in r.bad_kinds.items()),
        ]
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _replicas(fault: Fault) -> str:
    if fault.under_replicated is not None:
        return (
            " (under-replicated partitions seen: "
            + ", ".join(f"{where} {n}" for where, n in fault.under_replicated.items())
            + ")"
        )
    if fault.in_sync_again_s is not None:
        return f" (all in sync again {fault.in_sync_again_s:.1f} s after the restart)"
    return ""


def result_name(scenarios: list[str]) -> str:
    """The results file of a run: every scenario in `faults`, a subset in a file named by its scenarios."""
    return "faults" if set(scenarios) == set(SCENARIOS) else "-".join(["faults", *scenarios])


def summary(results: list[Result], plan: StreamPlan, membership: str) -> dict[str, object]:
    """What `write_result` records: each scenario's verification and recovery figures (with the derived `lost`
    and `passed`), the plan and the group membership, as plain JSON (a fault's partitions as sorted pairs)."""
    data: dict[str, object] = json.loads(
        json.dumps(
            {
                "plan": asdict(plan),
                "membership": membership,
                "results": [asdict(r) | {"lost": r.lost, "passed": r.passed} for r in results],
                "passed": all(r.passed for r in results),
            },
            default=sorted,
        )
    )
    return data


def main() -> None:
    from bench.encoder import machine
    from tests.support.stack import local_settings

    parser = argparse.ArgumentParser(
        prog="python -m bench.faults", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of: {', '.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument(
        "--uploads", type=int, default=StreamPlan().uploads, help="good uploads per scenario (5 interactions each)"
    )
    parser.add_argument("--rate", type=float, default=StreamPlan().uploads_per_s, help="uploads per second offered")
    parser.add_argument("--seed", type=int, default=StreamPlan().seed)
    parser.add_argument(
        "--every",
        type=float,
        default=120.0,
        help="soak: seconds between two worker faults (SIGKILL or SIGTERM, then a restart; default 120)",
    )
    parser.add_argument("--outage", type=float, default=30.0, help="seconds a service or broker stays down (default 30)")
    parser.add_argument(
        "--drain-timeout", type=float, default=900.0, help="seconds to wait for zero lag after the stream before failing"
    )
    parser.add_argument(
        "--membership",
        choices=("static", "dynamic"),
        default="static",
        help="the workers' consumer-group membership: static (a group instance id per worker, as deployed) "
        "or dynamic (to compare)",
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--markdown", type=Path, help="write the scenario table here")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")

    def progress(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    state = scratch_dir("sail-bench-faults-")
    settings = local_settings(state, f"faults{uuid.uuid4().hex[:6]}.", topic_partitions=4).model_copy(
        update={"encoder": "sail-tiny-omni", "max_image_bytes": 256 * 1024, "topic_partitions": 4}
    )
    stack = Stack(settings, progress=progress)
    plan = StreamPlan(uploads=args.uploads, uploads_per_s=args.rate, seed=args.seed)
    results = []
    info = {**machine(), "membership": args.membership}
    try:
        stack.up()
        for name in chosen:
            mine = StreamPlan(**{**asdict(plan), "hostile_share": 0.3}) if name == "hostile" else plan
            progress(f"{name}: {mine.uploads} uploads over {mine.duration_s:.0f}s")
            on = cluster_stack(stack, progress=progress) if name in CLUSTER_SCENARIOS else stack
            try:
                result = Scenario(
                    on,
                    name,
                    mine,
                    state / "faults",
                    progress,
                    outage_s=args.outage,
                    static=args.membership == "static",
                    every_s=args.every,
                ).run(args.drain_timeout)
            finally:
                if on is not stack:
                    on.down(["kafka"])
            progress(f"{name}: {'pass' if result.passed else 'FAIL'} {json.dumps(asdict(result), default=sorted)[:600]}")
            results.append(result)
    finally:
        stack.down()
    table = markdown(results, plan, info)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "plan": asdict(plan), "results": [asdict(r) for r in results]}, indent=2, default=sorted)
        )
    print(f"summary: {write_result(result_name(chosen), summary(results, plan, args.membership))}")
    raise SystemExit(0 if all(r.passed for r in results) else 1)


if __name__ == "__main__":
    main()
