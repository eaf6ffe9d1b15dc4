"""`sail-stream demo`: the main job on local defaults.

Brings the local stack up, starts streaming workers and the synthetic producer, shows live progress
(items and interactions per second, freshness p50/p99, consumer lag, dead letters), then a sample
recall (a fresh item's neighbours, a user's top items), and shuts everything down on Ctrl-C or after
`--duration`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from deploy.local.process import ManagedProcess
from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from streams.sinks.kafka import end_offsets_total, partition_offsets
from deploy.traffic import LoadPlan, Produced, Traffic, run_producer
from streams.sinks.milvus import MilvusSink
from topology.collections import VECTOR_FIELD, user_key
from topology.settings import Settings

Say = Callable[[str], None]


@dataclass
class Monitor:
    """Reads progress from Kafka (committed offsets) and Milvus (rows written), like an operator would."""

    settings: Settings
    sink: MilvusSink
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    freshness_s: list[float] = field(default_factory=list)
    items_seen: int = 0
    last_encoded_ms: int = 0
    baseline: dict[str, int] = field(default_factory=dict)
    dead_baseline: int = 0
    applied_baseline: int = 0
    last: tuple[float, int, int] = (0.0, 0, 0)  # (time, items, interactions processed)

    def _processed_and_lag(self, topic: str) -> tuple[int, int]:
        offsets = partition_offsets(self.settings.kafka_bootstrap, self.settings.kafka_security(), self.settings.app_id, topic)
        done = sum(c for c, _ in offsets.values())
        lag = sum(e - c for c, e in offsets.values())
        return done - self.baseline.setdefault(topic, done), lag

    def dead_letters(self) -> int:
        return end_offsets_total(self.settings.kafka_bootstrap, self.settings.kafka_security(), self.settings.topics().dead_letters.name) - self.dead_baseline

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        topics = self.settings.topics()
        self.applied_baseline = loop.run_until_complete(self._applied_interactions())
        for topic in (topics.uploads.name, topics.interactions.name):
            self._processed_and_lag(topic)
        self.dead_baseline = self.dead_letters()
        self.last = (time.monotonic(), 0, 0)

    async def _applied_interactions(self) -> int:
        """Events applied to user interests so far (sum of the users' event counts; demo scale)."""
        rows = await self.sink.query(self.settings.collections()[1].name, "slot == 0", ["event_count"])
        return sum(int(row["event_count"]) for row in rows)

    async def _new_items(self) -> None:
        since = max(self.last_encoded_ms, self.started_ms)
        rows = await self.sink.query(self.settings.collections()[0].name, f"encoded_at_ms > {since}", ["created_at_ms", "encoded_at_ms"])
        for row in rows:
            self.freshness_s.append((row["encoded_at_ms"] - row["created_at_ms"]) / 1000)
            self.last_encoded_ms = max(self.last_encoded_ms, row["encoded_at_ms"])
        self.items_seen += len(rows)

    def sample(self, loop: asyncio.AbstractEventLoop) -> tuple[str, int]:
        """One progress line, and the total lag behind it."""
        topics = self.settings.topics()
        loop.run_until_complete(self._new_items())
        events_done = loop.run_until_complete(self._applied_interactions()) - self.applied_baseline
        _, uploads_lag = self._processed_and_lag(topics.uploads.name)
        _, events_lag = self._processed_and_lag(topics.interactions.name)
        _, retry_lag = self._processed_and_lag(topics.interactions_retry.name)
        now = time.monotonic()
        then, items_before, events_before = self.last
        dt = max(now - then, 1e-6)
        self.last = (now, self.items_seen, events_done)
        fresh = np.array(self.freshness_s) if self.freshness_s else np.zeros(1)
        line = (
            f"items {self.items_seen:>5} ({(self.items_seen - items_before) / dt:5.1f}/s)  "
            f"interactions applied {events_done:>6} ({(events_done - events_before) / dt:6.1f}/s)  "
            f"freshness p50 {np.percentile(fresh, 50):5.2f}s p99 {np.percentile(fresh, 99):5.2f}s  "
            f"lag uploads {uploads_lag} interactions {events_lag} waiting {retry_lag}  dead letters {self.dead_letters()}"
        )
        return line, uploads_lag + events_lag + retry_lag


async def _recall(settings: Settings, sink: MilvusSink, traffic: Traffic, say: Say) -> None:
    items, users = settings.collections()
    if not traffic.items:
        return
    fresh = traffic.items[-1]
    got = await sink.get(items.name, [fresh], fields=[VECTOR_FIELD])
    if got:
        vector = np.asarray(got[0][VECTOR_FIELD], dtype=np.float32)[None, :]
        hits = (await sink.search(items.name, vector, limit=6, vector_field=VECTOR_FIELD, consistency="Strong"))[0]
        topic = traffic.item_topics[traffic.items.index(fresh)]
        say(f"item-to-item: the freshest item {fresh} [{topic}] {traffic.titles[fresh]!r} -> nearest items:")
        for hit in hits[1:]:
            index = traffic.items.index(hit.id) if hit.id in traffic.titles else -1
            say(f"   {hit.score:6.3f}  [{traffic.item_topics[index] if index >= 0 else '?'}] {traffic.titles.get(hit.id, hit.id)!r}")
    if traffic.user_items:
        user = max(traffic.user_items, key=lambda u: len(traffic.user_items[u]))
        rows = await sink.get(users.name, [user_key(user, 0)], fields=[VECTOR_FIELD, "event_count"])
        if rows:
            seen = traffic.user_items[user]
            exclude = ", ".join(f'"{i}"' for i in sorted(seen))
            vector = np.asarray(rows[0][VECTOR_FIELD], dtype=np.float32)[None, :]
            hits = (await sink.search(items.name, vector, limit=5, vector_field=VECTOR_FIELD, filter_expr=f"item_id not in [{exclude}]", consistency="Strong"))[0]
            likes = ", ".join(traffic.user_topics[int(user.split("-")[1])])
            say(f"user-to-item: {user} ({rows[0]['event_count']} events; prefers {likes}) -> top unseen items:")
            for hit in hits:
                index = traffic.items.index(hit.id) if hit.id in traffic.titles else -1
                say(f"   {hit.score:6.3f}  [{traffic.item_topics[index] if index >= 0 else '?'}] {traffic.titles.get(hit.id, hit.id)!r}")


def run_demo(settings: Settings, plan: LoadPlan, workers: int, keep_stack: bool, say: Say, interval_s: float = 5.0) -> int:
    """The main job; returns 0 when every produced event was processed (lag back to zero)."""
    say(f"sail-stream demo: {plan.duration_s:.0f}s of {plan.items_per_s:g} uploads/s and {plan.interactions_per_s:g} interactions/s, {workers} worker(s)")
    stack = Stack(settings, progress=lambda line: say(f"  {line}"))
    procs: list[ManagedProcess] = []
    stop = threading.Event()
    produced: list[Produced] = []
    traffic = Traffic(plan, run_id=f"demo{plan.seed}-{int(time.time())}")
    loop = asyncio.new_event_loop()
    sink = MilvusSink.for_settings(settings)
    drained = False
    try:
        began = time.monotonic()
        stack.up()
        procs = [start_worker(settings, port, stack.state_dir / "workers", loglevel="warning") for port in free_ports(workers)]
        wait_for_group(settings, procs)
        say(f"stack and {workers} worker(s) ready in {time.monotonic() - began:.1f}s (worker logs in {stack.state_dir / 'workers'})")
        loop.run_until_complete(sink.start())
        monitor = Monitor(settings, sink)
        monitor.start(loop)
        producer = threading.Thread(target=lambda: produced.append(run_producer(settings, plan, stop=stop.is_set, traffic=traffic)), daemon=True)
        producer.start()
        t0 = time.monotonic()
        while producer.is_alive():
            producer.join(timeout=interval_s)
            line, _ = monitor.sample(loop)
            say(f"[{time.monotonic() - t0:5.0f}s] {line}")
        say("producer finished; waiting for the workers to catch up ...")
        deadline = time.monotonic() + max(60.0, settings.item_wait_s * 2)
        while time.monotonic() < deadline:
            time.sleep(2.0)
            line, lag = monitor.sample(loop)
            say(f"[{time.monotonic() - t0:5.0f}s] {line}")
            if lag == 0:
                drained = True
                break
        if produced:
            p = produced[0]
            say(f"produced {p.uploads} uploads and {p.interactions} interactions in {p.elapsed_s:.0f}s; all processed: {'yes' if drained else 'NO (lag left)'}")
        loop.run_until_complete(_recall(settings, sink, traffic, say))
    except KeyboardInterrupt:
        say("interrupted: shutting down")
    finally:
        stop.set()
        loop.run_until_complete(sink.close())
        loop.close()
        for proc in procs:
            proc.stop()
        if keep_stack:
            say("stack left running (--keep-stack); stop it with `sail-stream stack down`")
        else:
            stack.down()
    return 0 if drained else 1
