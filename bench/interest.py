"""The interest path at platform rates: workers applying a backlog of interactions (issues 14, 32).

    python -m bench.interest                          # the whole run below (about 15 minutes here)
    python -m bench.interest --interactions 10000 --users 1000 --items 4000 --workers 1 --batched 20000
    python -m bench.interest --profile profile.txt    # py-spy (if installed) on the worker while it drains

On the real local stack (Kafka KRaft, Milvus Lite, Triton with the stand-in encoder, which uses no
CPU: the interest path never calls the encoder). Every item is stored first (Milvus rows and the
item-embeddings topic, as the content agent leaves them); the interactions are produced as a
backlog; then the workers start and drain it. Reported, each against a baseline of the same run:
- applied interactions/s, one event per record (`single_per_s`): from the first committed progress
  until the group's committed offsets on the interactions and retry topics reach their ends, vs a
  naive per-event loop (state, item vectors, maths, one upsert per event) over a sample of the same
  events (`naive_per_s`), and vs an empty Faust agent with the worker's consumer settings reading the
  same backlog (`floor_per_s`, bench.floor; bare aiokafka beside it);
- the same worker on batch records of `--per-record` events of one user each (`batched_per_s`);
- changelog bytes per applied interaction and state bytes per user (p50/p99 of the last value per user);
- 2 workers vs 1 on the same backlog (own topics and collections each run);
- user freshness with interactions offered at 80 % of the single-event drain rate (`freshness_p99_s_at_80`);
- a bad day: 10 uploads/s and 100 interactions/s for 40 s with Triton frozen for 15 s: how often
  the retry topic is read per parked interaction (`retry_reads_per_parked`) and how soon a parked
  interaction follows its item.
The figures go to bench/results/interest[-Nbrokers].json (`bench.results`), with each against its
goal (`GOALS`), from which `python -m bench.report` renders BENCHMARKS.md. A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from bench.pipeline import cpu_seconds
from bench.results import scratch_dir, write_result
from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from deploy.traffic import LoadPlan, run_producer
from encoders.bench_double import NAME as STANDIN
from streams.interest.maths import InterestParams, apply_interaction, interest_vectors, l2_normalise
from streams.sinks.kafka import ensure_topics, group_offsets, producer, read_topic
from streams.sinks.milvus import MilvusSink, ensure_collections
from tests.support.metrics import sample, scrape
from tests.support.stack import local_settings
from topology.codec import decode_interaction, encode_interaction, encode_interaction_batch, encode_item_embedding
from topology.collections import VECTOR_FIELD, item_row, user_row
from topology.messages import Action, Interaction, InterestState, ItemEmbedding
from topology.settings import Settings
from topology.topics import table_changelog

ACTIONS = [Action.VIEW, Action.VIEW, Action.VIEW, Action.LIKE, Action.SHARE, Action.COMMENT, Action.SKIP, Action.DISLIKE]


@dataclass
class Drain:
    workers: int
    per_record: int
    interactions: int
    seconds: float
    applied_s: float
    changelog_records: int
    changelog_bytes_per_interaction: float
    state_bytes_p50: float
    state_bytes_p99: float
    users: int
    cpu_share: dict[str, float]  # each part's CPU time over the machine's (cores x wall time) while draining
    phase_us: dict[str, float]  # the interest agent's wall time per interaction in each phase of its micro-batches
    item_vectors: dict[str, int] = field(default_factory=dict)  # lookups by source: cache, milvus, missing


def _prefixed(settings: Settings, tag: str) -> Settings:
    s = settings.namespaced(tag)
    ensure_topics(s.kafka_bootstrap, s.kafka_security(), s.topics().all())
    ensure_collections(s.milvus_uri, s.milvus_token_value, s.stored_collections(), s.milvus_backend, tls=s.milvus_tls())
    return s


def store_items(settings: Settings, count: int, rng: np.random.Generator) -> list[str]:
    """`count` items with unit vectors in Milvus and on the item-embeddings topic."""
    ids = [f"item-{n}" for n in range(count)]
    vectors = l2_normalise(rng.standard_normal((count, settings.embedding_dim)).astype(np.float32))
    now = int(time.time() * 1000)

    async def upsert() -> None:
        sink = MilvusSink.for_settings(settings)
        await sink.start()
        try:
            for start in range(0, count, 500):
                await sink.upsert(
                    settings.collections()[0].name,
                    [item_row(ids[i], "c", now, now, "bench", vectors[i]) for i in range(start, min(start + 500, count))],
                )
        finally:
            await sink.close()

    asyncio.run(upsert())
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
    for i, item in enumerate(ids):
        embedding = ItemEmbedding(
            item_id=item,
            vector=vectors[i].astype("<f4").tobytes(),
            dim=settings.embedding_dim,
            model_version="bench",
            created_at_ms=now,
            encoded_at_ms=now,
            creator_id="c",
        )
        p.send(settings.topics().item_embeddings.name, key=item.encode(), value=encode_item_embedding(embedding))
    p.flush()
    p.close()
    return ids


def interactions(users: int, items: list[str], count: int, rng: np.random.Generator) -> list[Interaction]:
    """`count` events by `users` users over `items`, event times increasing (one per ms)."""
    base = int(time.time() * 1000) - count
    who = rng.integers(0, users, count)
    what = rng.integers(0, len(items), count)
    kind = rng.integers(0, len(ACTIONS), count)
    dwell = rng.integers(0, 20_000, count)
    run = uuid.uuid4().hex[:6]
    return [
        Interaction(
            event_id=f"{run}-{n}",
            user_id=f"user-{who[n]}",
            item_id=items[what[n]],
            action=ACTIONS[kind[n]],
            timestamp_ms=base + n,
            dwell_ms=int(dwell[n]),
        )
        for n in range(count)
    ]


def sessions(users: int, items: list[str], count: int, per_record: int, rng: np.random.Generator) -> list[Interaction]:
    """`count` events in runs of `per_record` consecutive events of one user (what a tracking SDK
    flushes as one batch record), users drawn uniformly per run, event times increasing."""
    events = interactions(users, items, count, rng)
    runs = rng.integers(0, users, -(-count // per_record))
    return [replace(e, user_id=f"user-{runs[n // per_record]}") for n, e in enumerate(events)]


def produce(settings: Settings, events: list[Interaction], per_record: int = 1) -> int:
    """Send `events` to the interactions topic, one per record or in batch records of `per_record`
    consecutive events (`sessions` makes each run one user's); returns the records sent."""
    p = producer(
        settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes, linger_ms=20, batch_size=256 * 1024
    )
    topic = settings.topics().interactions.name
    records = 0
    for start in range(0, len(events), per_record):
        run = events[start : start + per_record]
        value = encode_interaction(run[0]) if per_record == 1 else encode_interaction_batch(run[0].user_id, run)
        p.send(topic, key=run[0].user_id.encode(), value=value)
        records += 1
    p.flush()
    p.close()
    return records


def _committed(settings: Settings) -> tuple[int, int]:
    topics = settings.topics()
    offsets = group_offsets(
        settings.kafka_bootstrap,
        settings.kafka_security(),
        settings.app_id,
        [topics.interactions.name, topics.interactions_retry.name],
    )
    done = sum(d for parts in offsets.values() for d, _ in parts.values())
    end = sum(e for parts in offsets.values() for _, e in parts.values())
    return done, end


def _read_topic(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None, int]]:
    """(key, value, Kafka timestamp ms) of every record of `topic`, from the start."""
    return [(r.key, r.value, r.timestamp) for r in read_topic(settings.kafka_bootstrap, settings.kafka_security(), topic)]


def _changelog(settings: Settings) -> tuple[int, int, list[int]]:
    """(records, value bytes summed, the last value's size per user) of the interest table's changelog."""
    records = total = 0
    last: dict[bytes | None, int] = {}
    for key, value, _ in _read_topic(settings, table_changelog(settings.app_id)):
        records += 1
        total += len(value or b"")
        last[key] = len(value or b"")
    return records, total, list(last.values())


def _profile(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy not found: no profile (pip install py-spy)", flush=True)
        return None
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "50",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def top_frames(raw: Path, n: int = 15) -> list[tuple[str, float, float]]:
    """(function, self share, inclusive share) of the most expensive frames in a py-spy raw profile."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")" if " (" in f else f
            for f in stack.split(";")
        ]
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    return [(frame, own[frame] / total, inclusive[frame] / total) for frame, _ in own.most_common(n)] if total else []


def _own_cpu_s() -> float:
    """CPU seconds this process (the bench, producing the paced traffic) has used."""
    t = os.times()
    return t.user + t.system


def _groups(stack: Stack, procs: list) -> dict[str, int]:  # type: ignore[type-arg]
    """Process group of each part: the stack's services and the workers."""
    groups = {
        p.name: record.pgid
        for name in ("kafka", "milvus", "triton")
        for p in stack.processes(name)
        if (record := p.record()) is not None
    }
    groups.update({f"worker{i}": record.pgid for i, p in enumerate(procs) if (record := p.record()) is not None})
    return groups


def drain(  # type: ignore[no-untyped-def]
    settings: Settings,
    stack: Stack,
    events: list[Interaction],
    workers: int,
    profile: Path | None,
    progress,
    per_record: int = 1,
    store: tuple[int, np.random.Generator] | None = None,
) -> Drain:
    """`workers` workers draining `events` (produced first, `per_record` per record); `store`: (count,
    rng) to store the items first, under the same ids as `store_items` gave the events."""
    if store is not None:
        store_items(settings, *store)
    records = produce(settings, events, per_record)
    ports = free_ports(workers)
    procs = [start_worker(settings, port, stack.state_dir / "workers", loglevel="warning") for port in ports]
    spy = None
    cpu0: dict[str, float] = {}
    try:
        wait_for_group(settings, procs)
        groups = _groups(stack, procs)
        began = None
        first_done = 0
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            done, end = _committed(settings)
            now = time.monotonic()
            if began is None and done > 0:
                began, first_done = now, done
                cpu0 = {name: cpu_seconds(pgid) for name, pgid in groups.items()}
                if profile is not None:
                    record = procs[0].record()
                    spy = _profile(record.pid, 15, profile) if record else None
            if done >= end and end >= records:
                break
            time.sleep(0.25)
        else:
            raise TimeoutError(f"the backlog did not drain: {_committed(settings)}")
        finished = time.monotonic()
        seconds = finished - (began or finished)
        applied = (done - first_done) * len(events) / records / seconds if seconds > 0 else 0.0  # interactions/s
        machine_s = (os.cpu_count() or 1) * seconds
        share = (
            {name: round((cpu_seconds(pgid) - cpu0.get(name, 0.0)) / machine_s, 3) for name, pgid in groups.items()}
            if seconds > 0
            else {}
        )
        form = "one per record" if per_record == 1 else f"{per_record} per batch record"
        progress(f"{workers} worker(s): {len(events):,} interactions ({form}) drained, {applied:,.0f}/s after the first commit")
        pages = [scrape(f"http://127.0.0.1:{port}/metrics") for port in ports]
        phases = phase_costs(pages, len(events))
        progress(f"{workers} worker(s): interest agent's time per interaction (us) by phase: {phases}")
        sources = {source: int(n) for source, n in _labelled(pages, "sail_item_vectors_total", "source").items()}
        progress(f"{workers} worker(s): item vectors looked up, by source: {sources}")
    finally:
        if spy is not None:
            spy.wait(timeout=60)
        for proc in procs:
            proc.stop()
    records, total, sizes = _changelog(settings)
    return Drain(
        workers,
        per_record,
        len(events),
        round(seconds, 1),
        round(applied, 1),
        records,
        round(total / len(events), 1),
        float(np.percentile(sizes, 50)) if sizes else 0.0,
        float(np.percentile(sizes, 99)) if sizes else 0.0,
        len(sizes),
        share,
        phases,
        sources,
    )


def _labelled(pages: list[str], sample: str, label: str) -> Counter[str]:
    """A labelled counter's samples (`sample`, e.g. `sail_interest_seconds_total`) by `label`, summed over /metrics pages."""
    from prometheus_client.parser import text_string_to_metric_families

    spent: Counter[str] = Counter()
    for text in pages:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == sample:
                    spent[s.labels[label]] += s.value
    return spent


def _phase_seconds(pages: list[str]) -> Counter[str]:
    """`sail_interest_seconds_total{phase}` summed over /metrics pages."""
    return _labelled(pages, "sail_interest_seconds_total", "phase")


def _events(page: str, agent: str = "interest") -> float:
    """`sail_events_total{agent}` of one /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == "sail_events_total" and s.labels.get("agent") == agent
    )


def phase_costs(pages: list[str], interactions: int, since: list[str] | None = None) -> dict[str, float]:
    """Microseconds of the interest agent's wall time per interaction in each phase
    (`sail_interest_seconds_total{phase}`, summed over the workers' /metrics pages; with `since`,
    earlier pages of the same workers, over what was spent between them), and the agent's total:
    the model of the limit, each component's share of what one interaction costs."""
    spent = _phase_seconds(pages)
    spent.subtract(_phase_seconds(since or []))
    costs = {phase: round(seconds * 1e6 / interactions, 1) for phase, seconds in spent.most_common()}
    return costs | {"total": round(sum(spent.values()) * 1e6 / interactions, 1)} if costs else {}


def _buckets(text: str, name: str) -> list[tuple[float, float]]:
    from prometheus_client.parser import text_string_to_metric_families

    return sorted(
        (float(s.labels["le"]), s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == f"{name}_bucket"
    )


def histogram_quantile(text: str, name: str, q: float, since: str | None = None) -> float | None:
    """Prometheus's histogram_quantile over one histogram of a /metrics page (linear within a bucket);
    with `since` (an earlier page of the same worker), over what was observed between the two."""
    buckets = _buckets(text, name)
    if since is not None:
        before = dict(_buckets(since, name))
        buckets = [(bound, count - before.get(bound, 0.0)) for bound, count in buckets]
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


def paced(
    settings: Settings,
    stack: Stack,
    items: list[str],
    users: int,
    rate: float,
    seconds: float,
    warm_s: float,
    rng: np.random.Generator,
    progress,
) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """User freshness with interactions offered at `rate`/s (event time = send time) by a worker
    started over the drained group: p50/p99 of its `sail_user_freshness_seconds` over the first
    `warm_s` (just after the restart: the table restored, the item cache empty) and over the
    `seconds` after those (steady state)."""
    (port,) = free_ports(1)
    proc = start_worker(settings, port, stack.state_dir / "workers", loglevel="warning")
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes, linger_ms=5)
    topic = settings.topics().interactions.name
    metrics = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for_group(settings, [proc])
        groups, cpu0 = _groups(stack, [proc]), {}
        run = uuid.uuid4().hex[:6]
        for n in range(20):  # the worker first restores the table from its changelog, then commits these
            event = Interaction(
                event_id=f"{run}-warm-{n}",
                user_id=f"user-{n}",
                item_id=items[n],
                action=Action.LIKE,
                timestamp_ms=int(time.time() * 1000),
            )
            p.send(topic, key=event.user_id.encode(), value=encode_interaction(event))
        p.flush()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done, end = _committed(settings)  # one read: committed and end offsets of the same moment
            if done >= end:
                break
            time.sleep(0.5)
        start_page = scrape(metrics)
        began = time.monotonic()
        sent = 0
        warm_page, warm_at = None, None
        while (elapsed := time.monotonic() - began) < warm_s + seconds:
            if warm_page is None and elapsed >= warm_s:
                warm_page, warm_at = scrape(metrics), time.monotonic()
                cpu0 = {name: cpu_seconds(pgid) for name, pgid in groups.items()} | {"producer": _own_cpu_s()}
            for _ in range(int(elapsed * rate) - sent):
                now = int(time.time() * 1000)
                event = Interaction(
                    event_id=f"{run}-{sent}",
                    user_id=f"user-{rng.integers(users)}",
                    item_id=items[int(rng.integers(len(items)))],
                    action=ACTIONS[int(rng.integers(len(ACTIONS)))],
                    timestamp_ms=now,
                    dwell_ms=5000,
                )
                p.send(topic, key=event.user_id.encode(), value=encode_interaction(event))
                sent += 1
            p.flush()
            time.sleep(0.02)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done, end = _committed(settings)
            if done >= end:
                break
            time.sleep(0.25)
        page, wall_s = scrape(metrics), time.monotonic() - (warm_at or began)
        used = {name: cpu_seconds(pgid) for name, pgid in groups.items()} | {"producer": _own_cpu_s()}
        machine_s = (os.cpu_count() or 1) * wall_s
        share = {name: round((used[name] - cpu0.get(name, used[name])) / machine_s, 3) for name in used}
    finally:
        p.close()
        proc.stop()
    warm_page = warm_page or start_page
    name = "sail_user_freshness_seconds"
    steady_events = _events(page) - _events(warm_page)
    steady_phases = phase_costs([page], int(steady_events), since=[warm_page]) if steady_events else {}
    result: dict[str, object] = {
        "offered_s": round(sent / (warm_s + seconds), 1),
        "restart_p50_s": histogram_quantile(warm_page, name, 0.5, since=start_page),
        "restart_p99_s": histogram_quantile(warm_page, name, 0.99, since=start_page),
        "p50_s": histogram_quantile(page, name, 0.5, since=warm_page),
        "p99_s": histogram_quantile(page, name, 0.99, since=warm_page),
        # the steady window, measured: where an interaction's time went, and how busy the agent was
        # (its time in all phases over the wall time: near 1, the agent itself bounds the rate)
        "steady_phase_us": steady_phases,
        "steady_cpu_share": share,  # of the machine, over the same window; "producer": this process, sending
        "steady_agent_busy": round(steady_phases.get("total", 0.0) * steady_events / 1e6 / max(wall_s, 1e-9), 3),
        # read over the steady window and until the backlog left at its end was drained: the rate offered
        # when the worker keeps up, its live capacity when it does not (agent busy >= 1)
        "steady_applied_per_s": round(steady_events / max(wall_s, 1e-9), 1),
    }
    progress(f"paced at {rate:,.0f}/s, {warm_s:.0f}s after the restart then {seconds:.0f}s: user freshness {result}")
    return result


def floor(settings: Settings, mode: str, count: int, progress) -> float | None:  # type: ignore[no-untyped-def]
    """Records/s of bench.floor's `mode` reading the same interactions topic under a group of its own."""
    progress(f"floor: {mode} reading {count:,} records")
    done = subprocess.run(
        [sys.executable, "-m", "bench.floor", mode, settings.kafka_bootstrap, settings.topics().interactions.name, str(count)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    # Faust sends a worker's stdout to its log (stderr), so the figure may arrive on either
    lines = [line[line.index('{"mode"') :] for line in (done.stdout + done.stderr).splitlines() if '{"mode"' in line]
    if not lines:
        progress(f"floor: {mode} gave no figure (rc {done.returncode}): {done.stderr[-400:]}")
        return None
    rate = json.loads(lines[-1])["per_s"]
    progress(f"floor: {mode} {rate:,.1f} records/s")
    return rate


def naive(settings: Settings, events: list[Interaction]) -> float:
    """Events/s of a per-event loop: the user's state, one Milvus get of their items, the maths, one upsert."""
    params = InterestParams()

    async def go() -> float:
        sink = MilvusSink.for_settings(settings)
        await sink.start()
        states: dict[str, InterestState] = {}
        began = time.perf_counter()
        try:
            for event in events:
                state = apply_interaction(states.get(event.user_id, InterestState()), event, params)
                states[event.user_id] = state
                rows = await sink.get(settings.collections()[0].name, sorted(state.item_ids()), fields=[VECTOR_FIELD])
                vectors = {r["item_id"]: np.asarray(r[VECTOR_FIELD], dtype=np.float32) for r in rows}
                slots = interest_vectors(state, vectors, params)
                if slots is not None:
                    await sink.upsert(
                        settings.collections()[1].name,
                        [user_row(event.user_id, 0, state.updated_at_ms, state.event_count, "", "", slots[0])],
                    )
            return len(events) / (time.perf_counter() - began)
        finally:
            await sink.close()

    return round(asyncio.run(go()), 1)


def paused_encoder(
    settings: Settings, stack: Stack, progress, pause_at_s: float = 10.0, pause_s: float = 15.0
) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Issue 32's bad day: 10 uploads/s and 100 interactions/s for 40 s into one worker while Triton is
    frozen (SIGSTOP) for `pause_s` from `pause_at_s`: interactions on the uploads Triton cannot encode
    wait for their items. Reported: how often the retry topic was read per parked interaction, and how
    soon each parked interaction followed its item (the re-sent record's Kafka time minus the time of
    its item's record on item-embeddings, written once Milvus acknowledged the item)."""
    (port,) = free_ports(1)
    proc = start_worker(settings, port, stack.state_dir / "workers", loglevel="warning")
    plan = LoadPlan(items_per_s=10, interactions_per_s=100, duration_s=40, users=300, image_share=0.0)
    (triton,) = stack.processes("triton")
    record = triton.record()
    assert record is not None, "the stack's Triton is not running"
    metrics = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for_group(settings, [proc])
        done = threading.Event()
        producing = threading.Thread(target=lambda: (run_producer(settings, plan), done.set()), daemon=True)
        began = time.monotonic()
        producing.start()
        time.sleep(pause_at_s)
        os.killpg(record.pgid, signal.SIGSTOP)
        progress(f"paused encoder: Triton frozen for {pause_s:.0f}s at {pause_at_s:.0f}s of {plan.duration_s:.0f}s of traffic")
        try:
            time.sleep(pause_s)
        finally:
            os.killpg(record.pgid, signal.SIGCONT)
        restarted = _revive_triton(stack, progress)
        producing.join(timeout=plan.duration_s + 60)
        topics = settings.topics()
        watched = [topics.uploads.name, topics.interactions.name, topics.interactions_retry.name]
        deadline, drained = time.monotonic() + 240, True
        while time.monotonic() < deadline:
            offsets = group_offsets(settings.kafka_bootstrap, settings.kafka_security(), settings.app_id, watched)
            if all(d >= e for parts in offsets.values() for d, e in parts.values()):
                break
            time.sleep(0.5)
        else:  # recorded, not raised: the other figures of the run stand (what was behind is in the result)
            drained = False
            behind = {f"{t}[{p}]": e - d for t, parts in offsets.items() for p, (d, e) in parts.items() if d < e}
            progress(f"paused encoder: NOT drained 240 s after the traffic: {behind}")
        drained_s = time.monotonic() - began
        page = scrape(metrics)
    finally:
        proc.stop()
    parked, reads = sample(page, "sail_parked"), sample(page, "sail_events", agent="retry")
    follow = _follow_ms(settings)
    result: dict[str, object] = {
        "parked": int(parked),
        "retry_reads": int(reads),
        "retry_reads_per_parked": round(reads / parked, 2) if parked else None,
        "followed": len(follow),
        "follow_p50_s": round(float(np.percentile(follow, 50)) / 1000, 3) if follow else None,
        "follow_p99_s": round(float(np.percentile(follow, 99)) / 1000, 3) if follow else None,
        "follow_max_s": round(max(follow) / 1000, 3) if follow else None,
        "drained_s": round(drained_s, 1),
        "drained": drained,
        "triton_restarted": restarted,
    }
    progress(f"paused encoder: {result}")
    return result


def _revive_triton(stack: Stack, progress, within_s: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    """Whether the frozen Triton had to be started again: the stand-in's pytriton sometimes dies after a
    long SIGSTOP (its Python backend's shared-memory lock times out: `boost::interprocess::lock_exception`),
    which is the encoder going down for good, not the slow day this scenario is about."""
    time.sleep(5.0)  # it dies a second or so after SIGCONT, still answering the first probes
    deadline, healthy = time.monotonic() + within_s, 0
    while time.monotonic() < deadline and healthy < 3:
        healthy = healthy + 1 if stack.status(["triton"])[0].state == "running" else 0
        time.sleep(1.0)
    if healthy >= 3:
        return False
    progress("paused encoder: Triton did not come back from SIGSTOP (pytriton died): starting it again")
    stack.down(["triton"])
    stack.up(["triton"])
    return True


def _follow_ms(settings: Settings) -> list[float]:
    """For each interaction sent back by the retry agent (its bytes twice on the interactions topic):
    the second record's Kafka time minus that of its item's record on item-embeddings."""

    topics = settings.topics()
    stored = {}
    for key, _, stamp in _read_topic(settings, topics.item_embeddings.name):
        if key is not None:
            stored.setdefault(key.decode(), stamp)  # the first: the item's first embedding
    seen: Counter[bytes] = Counter()
    follow = []
    for _, value, stamp in _read_topic(settings, topics.interactions.name):
        if value is None:
            continue
        seen[value] += 1
        if seen[value] == 2:  # sent back by the retry agent
            item = decode_interaction(value).item_id
            if item in stored:
                follow.append(max(stamp - stored[item], 0))
    return follow


# The 1-worker drains (single events, then batch records) again with one setting changed, own topics
# and collections, so the JSON says in the same run what a lean-path step pays (reverted: Faust's own
# monitor) and what bounds the path (the collaborative update switched off).
ABLATIONS: dict[str, dict[str, object]] = {
    "faust_monitor": {"worker_monitor": "faust"},
    "no_collab": {"collab_pairs": 0},
    "one_in_flight": {"interest_in_flight": 1},
    "python_gc": {"worker_gc_young": 0},
}

GOALS = {
    "single_vs_floor": 0.3,
    "batched_per_s": 10_000.0,
    "batched_vs_naive": 20.0,
    "freshness_p99_s_at_80": 1.0,
    "retry_reads_per_parked": 5.0,
}


def headline(  # type: ignore[no-untyped-def]
    single: float | None, floor_s: float | None, batched: float | None, naive_s: float, fresh, paused
) -> dict[str, object]:
    """Issue 32's figures of one run and each against its goal (`GOALS`: the first three at least, the last two
    at most); a figure the run did not take is None and meets nothing."""
    figures: dict[str, float | None] = {
        "floor_per_s": floor_s,
        "single_per_s": single,
        "batched_per_s": batched,
        "naive_per_s": naive_s or None,
        "freshness_p99_s_at_80": (fresh or {}).get("p99_s"),
        "retry_reads_per_parked": (paused or {}).get("retry_reads_per_parked"),
    }
    ratios = {
        "single_vs_floor": single / floor_s if single and floor_s else None,
        "batched_per_s": batched,
        "batched_vs_naive": batched / naive_s if batched and naive_s else None,
        "freshness_p99_s_at_80": figures["freshness_p99_s_at_80"],
        "retry_reads_per_parked": figures["retry_reads_per_parked"],
    }
    at_most = {"freshness_p99_s_at_80", "retry_reads_per_parked"}
    goals = {
        name: {
            "value": None if value is None else round(value, 3),
            "goal": goal,
            "met": value is not None and (value <= goal if name in at_most else value >= goal),
        }
        for name, goal in GOALS.items()
        for value in [ratios[name]]
    }
    return figures | {"goals": goals}


def result_name(kafka_brokers: int) -> str:
    """The results file of a run: the 3-broker runs apart from the 1-broker baseline (BENCHMARKS.md shows both)."""
    return "interest" if kafka_brokers == 1 else f"interest-{kafka_brokers}brokers"


def summary(args: argparse.Namespace, report: dict[str, object]) -> dict[str, object]:
    """What `write_result` records: the printed report (the drains, the naive loop of the same run, the ratios,
    freshness, floors, profile) without its machine line, which `write_result` writes, and the run's parameters."""
    keys = (
        "interactions",
        "users",
        "items",
        "workers",
        "naive_sample",
        "paced_s",
        "paced_rate",
        "paced_warm_s",
        "floor",
        "batched",
        "per_record",
        "paused_encoder",
        "ablations",
        "seed",
    )
    return {"params": {key: getattr(args, key) for key in keys}} | {k: v for k, v in report.items() if k != "machine"}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.interest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interactions", type=int, default=50_000, help="interactions in the backlog (default 50,000)")
    parser.add_argument("--users", type=int, default=5_000, help="distinct users, uniformly drawn (default 5,000)")
    parser.add_argument("--items", type=int, default=20_000, help="items stored before the drain (default 20,000)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts, one drain each (default: 1,2)")
    parser.add_argument("--naive-sample", type=int, default=500, help="events timed in the naive per-event loop")
    parser.add_argument("--profile", type=Path, help="write the 1-worker drain's py-spy top frames here (needs py-spy)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--paced-s",
        type=float,
        default=30.0,
        help="seconds of interactions offered at 80%% of the 1-worker drain rate, for steady-state user freshness (0: skip)",
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        help="offer this many interactions/s instead of 80%% of the drain rate (to compare trees at one rate)",
    )
    parser.add_argument(
        "--paced-warm-s",
        type=float,
        default=30.0,
        help="seconds offered before those, just after the worker's restart (reported apart)",
    )
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip timing an empty Faust agent and a bare aiokafka loop on the 1-worker backlog (bench.floor)",
    )
    parser.add_argument(
        "--batched",
        type=int,
        default=200_000,
        help="interactions of a second 1-worker drain in batch records (default 200,000; 0: skip)",
    )
    parser.add_argument("--per-record", type=int, default=20, help="events per batch record in that drain (default 20)")
    parser.add_argument(
        "--no-ablations",
        dest="ablations",
        action="store_false",
        help="skip the 1-worker drain again with each lean-path step reverted (ABLATIONS)",
    )
    parser.add_argument(
        "--no-paused-encoder",
        dest="paused_encoder",
        action="store_false",
        help="skip the bad day: 40 s of 10 uploads/s and 100 interactions/s with Triton frozen for 15 s (retry reads)",
    )
    parser.add_argument("--seed", type=int, default=14, help="seed of the generated traffic (default 14)")
    parser.add_argument(
        "--kafka-brokers",
        type=int,
        default=1,
        help="Kafka nodes of the local stack: 3 gives every topic 3 replicas and min.insync.replicas 2",
    )
    args = parser.parse_args()

    def progress(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    state = scratch_dir("sail-bench-interest-")
    settings = local_settings(
        state, f"in{uuid.uuid4().hex[:6]}.", topic_partitions=4, encoder=STANDIN, kafka_brokers=args.kafka_brokers
    )
    stack = Stack(settings, progress=progress)
    rng = np.random.default_rng(args.seed)
    results: list[Drain] = []
    top: list[tuple[str, float, float]] = []
    top_batched: list[tuple[str, float, float]] = []
    naive_s = 0.0
    fresh: dict[str, float] = {}
    floors: dict[str, float | None] = {}
    batched: Drain | None = None
    paused: dict[str, object] = {}
    ablations: dict[str, dict[str, float]] = {}
    stored: list[str] = []
    base: list[Interaction] = []
    try:
        stack.up()
        for count in (int(w) for w in args.workers.split(",")):
            mine = _prefixed(settings, f"in{uuid.uuid4().hex[:6]}w{count}")
            progress(f"{count} worker(s): storing {args.items:,} items")
            items = store_items(mine, args.items, rng)
            events = interactions(args.users, items, args.interactions, rng)
            if count == 1:
                stored, base = items, events  # the ablations drain these again
            raw = state / f"profile-{count}.txt" if args.profile is not None and count == 1 else None
            results.append(drain(mine, stack, events, count, raw, progress))
            if raw is not None and raw.exists():
                top = top_frames(raw)
            if count == 1:
                naive_s = naive(mine, events[: args.naive_sample])
                progress(f"naive per-event loop: {naive_s:,.1f}/s")
                if args.floor:
                    floors = {mode: floor(mine, mode, len(events), progress) for mode in ("kafka", "faust", "faust-quiet")}
                if args.paced_s > 0:
                    rate = args.paced_rate or 0.8 * results[-1].applied_s
                    fresh = paced(
                        mine, stack, items, args.users, rate, args.paced_s, args.paced_warm_s, rng, progress
                    )  # the same group, after its drain
        if args.batched:
            mine = _prefixed(settings, f"in{uuid.uuid4().hex[:6]}b{args.per_record}")
            progress(f"batched: storing {args.items:,} items")
            items = store_items(mine, args.items, rng)
            events = sessions(args.users, items, args.batched, args.per_record, rng)
            raw = state / "profile-batched.txt" if args.profile is not None else None
            batched = drain(mine, stack, events, 1, raw, progress, per_record=args.per_record)
            if raw is not None and raw.exists():
                top_batched = top_frames(raw)
        for name, change in ABLATIONS.items() if args.ablations else ():
            progress(f"ablation {name} ({change}): the 1-worker drains again")
            runs = {}
            for form, per_record, count in (("single", 1, args.interactions), ("batched", args.per_record, args.batched)):
                if count:
                    variant = _prefixed(settings.model_copy(update=change), f"in{uuid.uuid4().hex[:6]}a")
                    again = sessions(args.users, stored, count, per_record, rng) if per_record > 1 else base
                    runs[f"{form}_per_s"] = drain(
                        variant, stack, again, 1, None, progress, per_record=per_record, store=(args.items, rng)
                    ).applied_s
            ablations[name] = runs
        if args.paused_encoder:
            paused = paused_encoder(_prefixed(settings, f"in{uuid.uuid4().hex[:6]}p"), stack, progress)
    finally:
        stack.down()
    report = {
        "machine": {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
        "kafka_brokers": args.kafka_brokers,
        "drains": [asdict(r) for r in results],
        "naive_interactions_s": naive_s,
        "vs_naive": round(results[0].applied_s / naive_s, 2) if results and naive_s else None,
        "two_vs_one": round(results[1].applied_s / results[0].applied_s, 2)
        if len(results) > 1 and results[0].applied_s
        else None,
        "user_freshness_at_80pct": fresh,
        "floors": floors,
        "ablations": ablations,
        "batched_drain": asdict(batched) if batched else None,
        "paused_encoder": paused,
        "profile_top": [{"frame": f, "self": round(a, 3), "inclusive": round(b, 3)} for f, a, b in top],
        "profile_top_batched": [{"frame": f, "self": round(a, 3), "inclusive": round(b, 3)} for f, a, b in top_batched],
    }
    single = next((d.applied_s for d in results if d.workers == 1), None)
    report |= headline(single, floors.get("faust"), batched.applied_s if batched else None, naive_s, fresh, paused)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.profile and top:
        args.profile.write_text("\n".join(f"{a:6.1%} self {b:6.1%} incl  {f}" for f, a, b in top) + "\n")
        batched_text = "\n".join(f"{a:6.1%} self {b:6.1%} incl  {f}" for f, a, b in top_batched)
        args.profile.with_suffix(".batched.txt").write_text(batched_text + "\n")
    print(f"summary: {write_result(result_name(args.kafka_brokers), summary(args, report))}")


if __name__ == "__main__":
    main()
