"""`sail-stream demo`: the main job on local defaults.

Brings the local stack up, starts streaming workers and a traffic source (MovieLens replayed by
default, `deploy.datasets.movielens`; or the synthetic generator, `deploy.traffic`), shows live progress
(items and interactions per second, freshness p50/p99, consumer lag, dead letters), then a sample
recall a person can judge (a user's recent likes and top unseen items, by title; a fresh item's
neighbours), and shuts everything down on Ctrl-C or when the source is done. Every run has its own
topics, collections and consumer group (`Settings.namespaced`), so runs never see each other's items.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from deploy.datasets.movielens import MovieLens, replay
from deploy.local.process import ManagedProcess
from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from deploy.traffic import LoadPlan, Produced, Traffic, run_producer
from streams.recall.query import Recall, RecallError
from streams.sinks.kafka import end_offsets_total, partition_offsets
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
        return (
            end_offsets_total(
                self.settings.kafka_bootstrap, self.settings.kafka_security(), self.settings.topics().dead_letters.name
            )
            - self.dead_baseline
        )

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
        rows = await self.sink.query(
            self.settings.collections()[0].name, f"encoded_at_ms > {since}", ["created_at_ms", "encoded_at_ms"]
        )
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


class Source(Protocol):
    """What the demo streams: `describe` is its banner, `run` sends it (until done or `stop()`),
    `show` prints the recall a person can judge once every event is processed."""

    def describe(self) -> str: ...

    def run(self, settings: Settings, stop: Callable[[], bool], say: Say) -> Produced: ...

    async def show(self, settings: Settings, sink: MilvusSink, say: Say) -> None: ...


class Synthetic:
    """The synthetic world of `deploy.traffic` at the plan's rates, with a malformed share."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.traffic = Traffic(plan, run_id=f"demo{plan.seed}-{int(time.time())}")

    def describe(self) -> str:
        p = self.plan
        return (
            f"synthetic traffic: {p.duration_s:.0f}s of {p.items_per_s:g} uploads/s and {p.interactions_per_s:g} interactions/s"
        )

    def run(self, settings: Settings, stop: Callable[[], bool], say: Say) -> Produced:
        return run_producer(settings, self.plan, stop=stop, traffic=self.traffic)

    async def show(self, settings: Settings, sink: MilvusSink, say: Say) -> None:
        items, users = settings.collections()
        traffic = self.traffic
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
                say(
                    f"   {hit.score:6.3f}  [{traffic.item_topics[index] if index >= 0 else '?'}] "
                    f"{traffic.titles.get(hit.id, hit.id)!r}"
                )
        if traffic.user_items:
            user = max(traffic.user_items, key=lambda u: len(traffic.user_items[u]))
            rows = await sink.get(users.name, [user_key(user, 0)], fields=[VECTOR_FIELD, "event_count"])
            if rows:
                seen = traffic.user_items[user]
                exclude = ", ".join(f'"{i}"' for i in sorted(seen))
                vector = np.asarray(rows[0][VECTOR_FIELD], dtype=np.float32)[None, :]
                hits = (
                    await sink.search(
                        items.name,
                        vector,
                        limit=5,
                        vector_field=VECTOR_FIELD,
                        filter_expr=f"item_id not in [{exclude}]",
                        consistency="Strong",
                    )
                )[0]
                likes = ", ".join(traffic.user_topics[int(user.split("-")[1])])
                say(f"user-to-item: {user} ({rows[0]['event_count']} events; prefers {likes}) -> top unseen items:")
                for hit in hits:
                    index = traffic.items.index(hit.id) if hit.id in traffic.titles else -1
                    say(
                        f"   {hit.score:6.3f}  [{traffic.item_topics[index] if index >= 0 else '?'}] "
                        f"{traffic.titles.get(hit.id, hit.id)!r}"
                    )


class MovieLensReplay:
    """The first ratings of MovieLens in log order: movies as uploads, ratings as interactions."""

    def __init__(self, data: MovieLens, speedup: float, max_gap_s: float) -> None:
        self.data, self.speedup, self.max_gap_s = data, speedup, max_gap_s
        self.titles = data.labels()

    def describe(self) -> str:
        users = len({r.user for r in self.data.ratings})
        return (
            f"MovieLens replay: {len(self.data.ratings):,} ratings by {users:,} users on {len(self.data.movies):,} movies, "
            f"{self.speedup:,.0f}x faster than the log (quiet spells cut to {self.max_gap_s:g}s)"
        )

    def run(self, settings: Settings, stop: Callable[[], bool], say: Say) -> Produced:
        done = replay(settings, self.data, self.speedup, self.max_gap_s, progress=say, stop=stop)
        return Produced(done.uploads, done.interactions, 0, done.elapsed_s)

    def _popular(self, seen: set[str], k: int) -> list[str]:
        """The most liked movies of the replay the user has not rated: the popularity baseline."""
        counts: dict[str, int] = {}
        for r in self.data.ratings:
            if r.rating >= 4.0:
                counts[r.item_id] = counts.get(r.item_id, 0) + 1
        ranked = sorted((i for i in counts if i not in seen), key=lambda i: (-counts[i], i))
        return [self.titles[i] for i in ranked[:k]]

    async def show(self, settings: Settings, sink: MilvusSink, say: Say) -> None:
        recall = Recall.for_settings(sink, settings)
        liked: dict[int, list[str]] = {}
        rated: dict[int, set[str]] = {}
        for r in self.data.ratings:
            rated.setdefault(r.user, set()).add(r.item_id)
            if r.rating >= 4.0:
                liked.setdefault(r.user, []).append(r.item_id)
        if not liked:
            return
        user = max(liked, key=lambda u: (len(liked[u]), -u))
        user_id = f"ml-user-{user}"
        say(f"user-to-item: {user_id} rated {len(rated[user])} movies; their latest likes:")
        for item in liked[user][-5:][::-1]:
            say(f"   {self.titles[item]}")
        columns: dict[str, list[str]] = {}
        for channel in dict.fromkeys((recall.channel, "collab", "dense")):
            try:
                top = await recall.user_to_item(
                    user_id, k=8, exclude_items=sorted(rated[user]), consistency="Strong", channel=channel
                )
            except RecallError as exc:
                say(f"   (no {channel} recommendation: {exc})")
                continue
            label = f"{channel} (default)" if channel == recall.channel else channel
            columns[label] = [self.titles.get(hit.item_id, hit.item_id) for hit in top]
        columns["popularity (all time, a baseline)"] = self._popular(rated[user], 8)
        say("  -> their top unseen movies now, by channel (the baselines of bench.quality beside them):")
        for line in side_by_side(columns, width=34):
            say(f"   {line}")
        fresh = next((r.item_id for r in reversed(self.data.ratings) if r.rating >= 4.0), None)
        if fresh is not None:
            near = await recall.item_to_item(fresh, k=5, consistency="Strong")
            say(f"item-to-item: the last movie liked in the replay, {self.titles[fresh]} -> nearest movies:")
            for hit in near:
                say(f"   {hit.score:6.3f}  {self.titles.get(hit.item_id, hit.item_id)}")


def side_by_side(columns: dict[str, list[str]], width: int) -> list[str]:
    """Lists as columns of `width` characters (longer entries cut with an ellipsis), a header first."""

    def cell(text: str) -> str:
        return (text if len(text) <= width else text[: width - 1] + "…").ljust(width)

    rows = max((len(v) for v in columns.values()), default=0)
    lines = ["    " + " ".join(cell(name) for name in columns)]
    for n in range(rows):
        lines.append(f"{n + 1:>2}. " + " ".join(cell(v[n] if n < len(v) else "") for v in columns.values()))
    return lines


def run_demo(
    settings: Settings, source: Source, workers: int, keep_stack: bool, say: Say, interval_s: float = 5.0, stall_s: float = 60.0
) -> int:
    """The main job; returns 0 when every event sent was processed (lag back to zero).

    After the source is done the demo waits while the lag shrinks, and gives up after `stall_s`
    without progress."""
    settings = settings.namespaced(f"demo{time.strftime('%Y%m%d%H%M%S')}")
    say(f"sail-stream demo: {source.describe()}, {workers} worker(s)")
    say(
        f"this run's topics, collections and consumer group: {settings.topic_prefix}*, {settings.milvus_collection_prefix}*, "
        f"{settings.app_id}"
    )
    stack = Stack(settings, progress=lambda line: say(f"  {line}"))
    procs: list[ManagedProcess] = []
    stop = threading.Event()
    produced: list[Produced] = []
    loop = asyncio.new_event_loop()
    sink = MilvusSink.for_settings(settings)
    drained = False
    try:
        began = time.monotonic()
        stack.up()
        procs = [start_worker(settings, port, stack.state_dir / "workers", loglevel="warning") for port in free_ports(workers)]
        wait_for_group(settings, procs)
        say(
            f"stack and {workers} worker(s) ready in {time.monotonic() - began:.1f}s (worker logs in "
            f"{stack.state_dir / 'workers'})"
        )
        loop.run_until_complete(sink.start())
        monitor = Monitor(settings, sink)
        monitor.start(loop)
        producer = threading.Thread(target=lambda: produced.append(source.run(settings, stop.is_set, say)), daemon=True)
        producer.start()
        t0 = time.monotonic()
        while producer.is_alive():
            producer.join(timeout=interval_s)
            line, _ = monitor.sample(loop)
            say(f"[{time.monotonic() - t0:5.0f}s] {line}")
        say("source finished; waiting for the workers to catch up ...")
        best, progressed = None, time.monotonic()
        while time.monotonic() - progressed < max(stall_s, settings.item_wait_s * 2):
            time.sleep(2.0)
            line, lag = monitor.sample(loop)
            say(f"[{time.monotonic() - t0:5.0f}s] {line}")
            if lag == 0:
                drained = True
                break
            if best is None or lag < best:
                best, progressed = lag, time.monotonic()
        if produced:
            p = produced[0]
            say(
                f"sent {p.uploads} uploads and {p.interactions} interactions in {p.elapsed_s:.0f}s; all processed: "
                f"{'yes' if drained else 'NO (lag left)'}"
            )
        loop.run_until_complete(source.show(settings, sink, say))
    except KeyboardInterrupt:
        say("interrupted: shutting down")
    finally:
        stop.set()
        loop.run_until_complete(sink.close())
        loop.close()
        for proc in procs:
            proc.stop()
        if keep_stack:
            say(
                f"stack left running (--keep-stack); query this run with SAIL_APP_ID={settings.app_id} "
                f"SAIL_TOPIC_PREFIX={settings.topic_prefix} "
                f"SAIL_MILVUS_COLLECTION_PREFIX={settings.milvus_collection_prefix}; stop it with `sail-stream stack down`"
            )
        else:
            stack.down()
    return 0 if drained else 1
