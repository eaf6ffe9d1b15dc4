"""Freshness and throughput of the whole updater against the encoder ceiling and naive baselines.

    python -m bench.pipeline --quick          # ~2-3 minutes, prints one JSON line of headline figures
    python -m bench.pipeline --json out.json  # full run: 50/80/100% of the ceiling, 1 vs 2 workers

All figures come from one run on one machine, on the real local stack (Kafka, Milvus Lite, Triton):
- ceiling: the bare encoder in-process (batch 32) on the same synthetic uploads;
- content pipeline: uploads offered at a fraction of the ceiling for a while; sustained items/s
  = items stored / (last encoded - first created), freshness = upload event time -> Milvus upsert
  acknowledged (Milvus Lite serves an acknowledged upsert to the next search);
- naive baseline: one consumer, one record at a time: decode, one Triton call, one Milvus upsert,
  commit; no batching;
- interest pipeline: interactions applied per second by the worker vs a naive per-event loop (read
  state, get the item vector, compute, upsert the user row, one event at a time).
The figures go to bench/results/pipeline[-quick].json (`bench.results`), from which
`python -m bench.report` renders BENCHMARKS.md. Never a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.encoder import in_process_rate, machine
from bench.results import scratch_dir, write_result
from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from deploy.traffic import LoadPlan, Traffic, run_producer
from encoders.client import EncoderClient
from encoders.model import load_encoder
from streams.interest.maths import InterestParams, apply_interaction, interest_vectors
from streams.sinks.kafka import consumer, ensure_topics, group_lag, producer
from streams.sinks.milvus import MilvusSink
from streams.worker.content import inline_request
from tests.support.stack import local_settings
from topology.codec import decode_interaction, decode_upload, encode_interaction, encode_upload
from topology.collections import VECTOR_FIELD, item_row, user_key, user_row
from topology.settings import Settings


def cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by the live processes of a process group."""
    import psutil

    from deploy.local.process import group_members

    total = 0.0
    for pid in group_members(pgid):
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def ceiling(count: int) -> float:
    traffic = Traffic(LoadPlan(image_share=0.5), run_id="ceiling")
    requests = [inline_request(traffic.upload(0)) for _ in range(count)]
    return in_process_rate(load_encoder("sail-tiny"), requests, batch=32)


@dataclass
class ContentRun:
    workers: int
    offered_items_s: float
    items: int
    sustained_items_s: float
    freshness_p50_s: float
    freshness_p95_s: float
    freshness_p99_s: float
    cpu_share: dict[str, float]  # fraction of the machine's CPU time each part used during the run


async def _item_rows(settings: Settings, since_ms: int) -> list[dict]:
    sink = MilvusSink(settings.milvus_uri, None, settings.milvus_backend)
    await sink.start()
    try:
        return await sink.query(
            settings.collections()[0].name, f"created_at_ms >= {since_ms}", ["created_at_ms", "encoded_at_ms"]
        )
    finally:
        await sink.close()


def content_run(settings: Settings, stack: Stack, rate: float, duration_s: float, workers: int, state: Path) -> ContentRun:
    import os

    procs = [start_worker(settings, port, state / "workers", loglevel="warning") for port in free_ports(workers)]
    groups = {name: stack._procs[name].record() for name in ("kafka", "milvus", "triton")}
    try:
        wait_for_group(settings, procs)
        groups.update({f"worker{i}": proc.record() for i, proc in enumerate(procs)})
        cpu_before = {name: cpu_seconds(r.pgid) for name, r in groups.items() if r is not None}
        own_before = time.process_time()
        wall_before = time.monotonic()
        began_ms = int(time.time() * 1000)
        plan = LoadPlan(items_per_s=rate, interactions_per_s=0.0, duration_s=duration_s, seed=int(rate * 10), image_share=0.5)
        produced = run_producer(settings, plan, traffic=Traffic(plan, run_id=f"c{uuid.uuid4().hex[:6]}"))
        deadline = time.monotonic() + 120
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = asyncio.run(_item_rows(settings, began_ms))
            if len(rows) >= produced.uploads:
                break
            time.sleep(1.0)
        capacity = (time.monotonic() - wall_before) * (os.cpu_count() or 1)
        share = {
            name: round((cpu_seconds(r.pgid) - cpu_before[name]) / capacity, 3) for name, r in groups.items() if r is not None
        }
        share["producer+bench"] = round((time.process_time() - own_before) / capacity, 3)
    finally:
        for proc in procs:
            proc.stop()
    fresh = np.array([(r["encoded_at_ms"] - r["created_at_ms"]) / 1000 for r in rows])
    span_s = (max(r["encoded_at_ms"] for r in rows) - min(r["created_at_ms"] for r in rows)) / 1000
    return ContentRun(
        workers,
        rate,
        len(rows),
        round(len(rows) / span_s, 1),
        *(round(float(np.percentile(fresh, q)), 3) for q in (50, 95, 99)),
        share,
    )


def naive_content(settings: Settings, count: int) -> float:
    """One record at a time: decode, one Triton call, one Milvus upsert, commit. Items/s."""
    topic = f"{settings.topic_prefix}naive-uploads"
    ensure_topics(
        settings.kafka_bootstrap,
        settings.kafka_security(),
        [settings.topics().uploads.__class__(**{**asdict(settings.topics().uploads), "name": topic})],
    )
    traffic = Traffic(LoadPlan(image_share=0.5), run_id=f"n{uuid.uuid4().hex[:6]}")
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
    for _ in range(count):
        upload = traffic.upload(int(time.time() * 1000))
        p.send(topic, key=upload.item_id.encode(), value=encode_upload(upload))
    p.flush()
    p.close()
    items = settings.collections()[0]

    async def run() -> float:
        encoder = EncoderClient(settings.triton_grpc_address, 30.0)
        sink = MilvusSink(settings.milvus_uri, None, settings.milvus_backend)
        await encoder.start()
        await sink.start()
        c = consumer(
            settings.kafka_bootstrap,
            settings.kafka_security(),
            topic,
            group_id=f"naive{uuid.uuid4().hex[:6]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_poll_records=1,
        )
        done = 0
        began = time.perf_counter()
        try:
            while done < count:
                for records in c.poll(timeout_ms=1000).values():
                    for record in records:
                        upload = decode_upload(record.value)
                        (result,) = await encoder.encode([inline_request(upload)])
                        await sink.upsert(
                            items.name,
                            [
                                item_row(
                                    upload.item_id,
                                    upload.creator_id,
                                    upload.created_at_ms,
                                    int(time.time() * 1000),
                                    result.model_version,
                                    result.vector,
                                )
                            ],
                        )
                        c.commit()
                        done += 1
            return done / (time.perf_counter() - began)
        finally:
            c.close()
            await encoder.close()
            await sink.close()

    return asyncio.run(run())


@dataclass
class InterestRun:
    interactions: int
    applied_interactions_s: float
    naive_interactions_s: float


def interest_runs(settings: Settings, state: Path, count: int) -> InterestRun:
    """The worker applying `count` interactions from a backlog, vs a naive loop over the same kind."""
    traffic = Traffic(LoadPlan(users=200, image_share=0.0), run_id=f"i{uuid.uuid4().hex[:6]}")
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
    for _ in range(100):
        upload = traffic.upload(int(time.time() * 1000))
        p.send(settings.topics().uploads.name, key=upload.item_id.encode(), value=encode_upload(upload))
    p.flush()
    proc = start_worker(settings, free_ports(1)[0], state / "workers", loglevel="warning")
    try:
        wait_for_group(settings, [proc])
        deadline = time.monotonic() + 120
        while len(asyncio.run(_item_rows(settings, 0))) < 100 and time.monotonic() < deadline:
            time.sleep(1)
        events = [e for e in (traffic.interaction(int(time.time() * 1000)) for _ in range(count)) if e is not None]
        users = settings.collections()[1]

        topics = settings.topics()

        def behind() -> int:
            return sum(
                sum(group_lag(settings.kafka_bootstrap, settings.kafka_security(), settings.app_id, t).values())
                for t in (topics.interactions.name, topics.interactions_retry.name)
            )

        def drain(batch: list) -> float:  # type: ignore[type-arg]
            began = time.perf_counter()
            for event in batch:
                p.send(topics.interactions.name, key=event.user_id.encode(), value=encode_interaction(event))
            p.flush()
            while behind() > 0 and time.perf_counter() - began < 300:
                time.sleep(0.1)
            return time.perf_counter() - began

        drain(events[:50])  # warm-up: the worker's agents are fetching and its caches are filled
        worker_rate = (len(events) - 50) / drain(events[50:])
    finally:
        proc.stop()
        p.close()

    async def naive() -> float:
        sink = MilvusSink(settings.milvus_uri, None, settings.milvus_backend)
        await sink.start()
        params = InterestParams()
        states: dict[str, object] = {}
        sample = [decode_interaction(encode_interaction(e)) for e in events[:300]]
        began = time.perf_counter()
        try:
            for event in sample:  # one event at a time: state, item vector, maths, one upsert
                from topology.messages import InterestState

                state = apply_interaction(states.get(event.user_id, InterestState()), event, params)  # type: ignore[arg-type]
                states[event.user_id] = state
                rows = await sink.get(settings.collections()[0].name, sorted(state.item_ids()), fields=[VECTOR_FIELD])
                vectors = {r["item_id"]: np.asarray(r[VECTOR_FIELD], dtype=np.float32) for r in rows}
                slots = interest_vectors(state, vectors, params)
                if slots is not None:
                    await sink.upsert(
                        users.name,
                        [
                            {
                                **user_row(event.user_id, 0, state.updated_at_ms, state.event_count, "", "", slots[0]),
                                "user_key": user_key(event.user_id + "-naive", 0),
                            }
                        ],
                    )
            return len(sample) / (time.perf_counter() - began)
        finally:
            await sink.close()

    return InterestRun(len(events), round(worker_rate, 1), round(asyncio.run(naive()), 1))


def markdown(info: dict[str, object], top: float, runs: list[ContentRun], naive: float, interest: InterestRun) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['device']}; torch {info['torch']}; "
        f"Python {info['python']}; {info['date']}.",
        "",
        f"Encoder ceiling (in-process, batch 32, same uploads): **{top:.1f} items/s**.",
        "",
        "| run | workers | offered items/s | sustained items/s | efficiency (/ ceiling) | freshness p50 / p95 / p99 (s) "
        "| CPU share: triton / worker(s) / kafka / milvus / producer |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        workers = sum(v for k, v in r.cpu_share.items() if k.startswith("worker"))
        share = " / ".join(
            f"{v:.2f}"
            for v in (
                r.cpu_share.get("triton", 0),
                workers,
                r.cpu_share.get("kafka", 0),
                r.cpu_share.get("milvus", 0),
                r.cpu_share.get("producer+bench", 0),
            )
        )
        lines.append(
            f"| {r.offered_items_s / top:.0%} of ceiling | {r.workers} | {r.offered_items_s:.1f} | {r.sustained_items_s:.1f} "
            f"| {r.sustained_items_s / top:.2f} | {r.freshness_p50_s:.2f} / {r.freshness_p95_s:.2f} / {r.freshness_p99_s:.2f} "
            f"| {share} |"
        )
    lines += [
        f"| naive per-message pipeline | 1 | backlog | {naive:.1f} | {naive / top:.2f} | - | - |",
        "",
        f"Interest pipeline: **{interest.applied_interactions_s:.1f} interactions/s** applied by one worker from a backlog of "
        f"{interest.interactions}, vs **{interest.naive_interactions_s:.1f}/s** for the naive per-event loop "
        f"({interest.applied_interactions_s / interest.naive_interactions_s:.1f}x).",
    ]
    return "\n".join(lines)


def summary(
    quick: bool,
    info: dict[str, object],
    top: float,
    runs: list[ContentRun],
    naive: float,
    interest: InterestRun,
    headline: Mapping[str, object],
) -> dict[str, object]:
    """What `write_result` records: the ceiling and the naive baselines measured in the same run, every
    content run (with its share of the ceiling), the interest figures and the headline."""
    return {
        "quick": quick,
        "runtime": {key: info[key] for key in ("torch", "device")},
        "ceiling_items_s": round(top, 1),
        "content_runs": [
            asdict(r) | {"of_ceiling": round(r.offered_items_s / top, 3), "efficiency": round(r.sustained_items_s / top, 3)}
            for r in runs
        ],
        "naive_items_s": round(naive, 1),
        "naive_efficiency": round(naive / top, 3),
        "interest": asdict(interest),
        "headline": headline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one rate (80%% of the ceiling), short runs, one JSON line")
    parser.add_argument("--json", type=Path, help="write all figures and machine info here (full mode)")
    args = parser.parse_args()
    state = scratch_dir("sail-bench-pipeline-")
    settings = local_settings(state, f"bench{uuid.uuid4().hex[:6]}.", topic_partitions=4)
    stack = Stack(settings, progress=lambda line: print(f"  {line}", flush=True))
    info = machine()
    try:
        stack.up()
        top = ceiling(96 if args.quick else 256)
        print(f"ceiling (in-process, batch 32): {top:.1f} items/s", flush=True)
        fractions = [0.8] if args.quick else [0.5, 0.8, 1.0]
        duration = 30.0 if args.quick else 45.0
        runs = []
        for fraction in fractions:
            run = content_run(settings, stack, round(top * fraction, 1), duration, workers=1, state=state)
            print(f"content pipeline at {fraction:.0%} of the ceiling: {run}", flush=True)
            runs.append(run)
        if not args.quick:
            run = content_run(settings, stack, round(top, 1), duration, workers=2, state=state)
            print(f"content pipeline, 2 workers, at 100%: {run}", flush=True)
            runs.append(run)
        naive = naive_content(settings, 60 if args.quick else 150)
        print(f"naive per-message pipeline: {naive:.1f} items/s", flush=True)
        interest = interest_runs(settings, state, 2000 if args.quick else 5000)
        print(f"interest pipeline: {interest}", flush=True)
    finally:
        stack.down()
    best = max(runs, key=lambda r: r.sustained_items_s)
    at80 = next(r for r in runs if abs(r.offered_items_s - round(top * 0.8, 1)) < 0.05 and r.workers == 1)
    headline = {
        "ceiling_items_s": round(top, 1),
        "pipeline_items_s": best.sustained_items_s,
        "efficiency": round(best.sustained_items_s / top, 3),
        "freshness_p50_s_at_80pct": at80.freshness_p50_s,
        "freshness_p99_s_at_80pct": at80.freshness_p99_s,
        "naive_items_s": round(naive, 1),
        "vs_naive": round(best.sustained_items_s / naive, 2),
        "interactions_s": interest.applied_interactions_s,
        "naive_interactions_s": interest.naive_interactions_s,
        "interactions_vs_naive": round(interest.applied_interactions_s / interest.naive_interactions_s, 2),
    }
    print(json.dumps(headline))
    if not args.quick:
        print()
        print(markdown(info, top, runs, naive, interest))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": info, "headline": headline, "content_runs": [asdict(r) for r in runs], "interest": asdict(interest)},
                indent=2,
            )
        )
    name = "pipeline-quick" if args.quick else "pipeline"
    print(f"summary: {write_result(name, summary(args.quick, info, top, runs, naive, interest, headline))}")


if __name__ == "__main__":
    main()
