"""A model change under live traffic: the full re-embed of a catalogue to a second encoder, then the swap.

    python -m bench.reembed                      # 5,000 items, ~10 minutes; a markdown table and one JSON line
    python -m bench.reembed --items 500 --baseline-s 20   # a short run

One run on the real local stack (Kafka KRaft, Milvus Lite, Triton serving the live encoder), one worker,
and a second Triton serving the new encoder, all on this machine's cores:
1. the catalogue: `--items` uploads (half with a cover) and `--interactions` interactions of 500 users,
   through the worker, until every row is in Milvus;
2. the new encoder's capacity: a bare client, full batches, `--capacity-s` seconds; the backfill is
   capped at `--share` of it (default half);
3. the baseline: the demo traffic (`--items-per-s` uploads, `--interactions-per-s` interactions) for
   `--baseline-s` with nothing else running: upload freshness p50/p99 (the upload's event time to its
   row's upsert, `encoded_at_ms - created_at_ms`, in the live collection);
4. the re-embed, with the same traffic running: backfill, follow, count, swap, grace (in process,
   `streams.lifecycle.reembed`). Upload freshness of the uploads created while the backfill ran, against the
   baseline's; backfill items/s; the registry write that is the swap; and a recall client querying all
   along (user-to-item and item-to-item, Strong consistency): its errors, the answers served that mix
   versions (the query vector's `query_model_version` against every item's `model_version`: before
   issue 30 only the items' were compared, which cannot differ within one collection), the mismatches
   recall refused (409, `VersionMismatch`), and how long after the swap its first new-version answer came.
The figures go to `bench/results/reembed.json` (`bench.results.write_result`).
Never a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.encoder import machine
from bench.overload import bare_client
from bench.report import render_table
from bench.results import scratch_dir, write_result
from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from deploy.traffic import LoadPlan, Traffic, run_producer
from encoders.client import EncoderClient
from streams.lifecycle.reembed import Backfill, reembed
from streams.recall.query import Recall, Recalled, VersionMismatch
from streams.sinks.kafka import producer
from streams.sinks.milvus import MilvusSink, milvus_string
from streams.worker.content import inline_request
from tests.support.stack import local_settings
from topology.codec import encode_interaction, encode_upload
from topology.collections import CANARY
from topology.settings import Settings


async def _count(settings: Settings, collection: str) -> int:
    sink = MilvusSink.for_settings(settings)
    await sink.start()
    try:
        return await sink.count(collection, f"creator_id != {milvus_string(CANARY)}")
    finally:
        await sink.close()


async def _fresh(settings: Settings, collection: str, since_ms: int, until_ms: int) -> list[float]:
    """Seconds from event time to upsert of the rows created in [since_ms, until_ms)."""
    sink = MilvusSink.for_settings(settings)
    await sink.start()
    try:
        rows = await sink.query(
            collection, f"created_at_ms >= {since_ms} and created_at_ms < {until_ms}", ["created_at_ms", "encoded_at_ms"]
        )
    finally:
        await sink.close()
    return [(r["encoded_at_ms"] - r["created_at_ms"]) / 1000 for r in rows]


async def _users(settings: Settings) -> list[str]:
    sink = MilvusSink.for_settings(settings)
    await sink.start()
    try:
        rows = await sink.query(settings.collections()[1].name, f"slot == 0 and user_id != {milvus_string(CANARY)}", ["user_id"])
    finally:
        await sink.close()
    return sorted(str(r["user_id"]) for r in rows)


def _percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    return {
        "n": len(values),
        "p50_s": round(float(np.percentile(a, 50)), 3),
        "p99_s": round(float(np.percentile(a, 99)), 3),
        "max_s": round(float(a.max()), 3),
    }


def catalogue(settings: Settings, traffic: Traffic, items: int, interactions: int, say: Callable[[str], None]) -> float:
    """Produce the catalogue and its interactions as a backlog; wait until the worker stored every item. Seconds."""
    began = time.monotonic()
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes, linger_ms=5)
    topics = settings.topics()
    for _ in range(items):
        upload = traffic.upload(int(time.time() * 1000))
        p.send(topics.uploads.name, key=upload.item_id.encode(), value=encode_upload(upload))
    for _ in range(interactions):
        event = traffic.interaction(int(time.time() * 1000))
        assert event is not None
        p.send(topics.interactions.name, key=event.user_id.encode(), value=encode_interaction(event))
    p.flush()
    p.close()
    items_name = settings.collections()[0].name
    while (stored := asyncio.run(_count(settings, items_name))) < items:
        say(f"catalogue: {stored:,} / {items:,} items stored ({time.monotonic() - began:.0f}s)")
        time.sleep(5.0)
    return time.monotonic() - began


def mixed_versions(results: list[Recalled]) -> set[str]:
    """The model versions in one answer: the query vector's and every item's (one version: not mixed)."""
    return {v for r in results for v in (r.query_model_version, r.model_version)}


@dataclass
class RecallWatch:
    """A client querying recall all along: answers, errors, answers mixing versions (query vector and
    items), mismatches recall refused, and when each version answered."""

    users: list[str]
    items: list[str]
    queries: int = 0
    errors: list[str] = field(default_factory=list)
    mixed: int = 0  # answers served with more than one version among the query vector and the items
    mixed_examples: list[str] = field(default_factory=list)
    refused_mixed: int = 0  # 409 model_version.mismatch: recall saw a query vector of another version and served nothing
    refused_examples: list[str] = field(default_factory=list)
    empty: int = 0  # answers with no item (no version to compare)
    by_version: dict[str, int] = field(default_factory=dict)
    first_answer_ms: dict[str, int] = field(default_factory=dict)

    def run(self, settings: Settings, stop: Any, out: Path) -> None:
        """In a process of its own (pymilvus's async clients of one process share a channel, bound to one event loop)."""
        asyncio.run(self._loop(settings, stop))
        out.write_text(json.dumps(asdict(self)))

    async def _loop(self, settings: Settings, stop: Any) -> None:
        sink = MilvusSink.for_settings(settings)
        await sink.start()
        recall = Recall.for_settings(sink, settings)
        rng = np.random.default_rng(3)
        try:
            while not stop.is_set():
                user, item = self.users[int(rng.integers(len(self.users)))], self.items[int(rng.integers(len(self.items)))]
                for call in (
                    lambda: recall.user_to_item(user, k=10, consistency="Strong"),
                    lambda: recall.item_to_item(item, k=10, consistency="Strong"),
                ):
                    self.queries += 1
                    try:
                        results = await call()
                    except VersionMismatch as exc:
                        self.refused_mixed += 1
                        self.refused_examples.append(f"refused: query {exc.query_model_version}, items {exc.model_version}")
                        continue
                    except Exception as exc:  # RecallError (404, ...) or Milvus: counted, the watch goes on
                        self.errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")
                        continue
                    versions = mixed_versions(results)
                    if not versions:
                        self.empty += 1
                        continue
                    if len(versions) != 1:
                        self.mixed += 1
                        self.mixed_examples.append(f"served: {', '.join(sorted(versions))}")
                        continue
                    (version,) = versions
                    self.by_version[version] = self.by_version.get(version, 0) + 1
                    self.first_answer_ms.setdefault(version, int(time.time() * 1000))
                await asyncio.sleep(0.2)
        finally:
            await sink.close()


@dataclass
class Result:
    items: int
    users_with_vectors: int
    live_encoder: str
    new_encoder: str
    catalogue_s: float
    new_encoder_capacity_items_s: float
    max_rate_items_s: float
    baseline_freshness: dict[str, float | int]
    backfill_freshness: dict[str, float | int]
    after_swap_freshness: dict[str, float | int]
    backfill_items_s: float
    backfill_s: float
    users_phase_s: float
    followed_records: int
    counts: str
    swap_write_ms: float | None
    recall_switch_s: float | None
    recall_queries: int
    recall_errors: int
    recall_mixed: int  # answers served mixing versions, the query vector's included (issue 30)
    recall_mixed_refused: int  # mismatches recall refused with 409 (not served)
    recall_empty: int
    recall_by_version: dict[str, int]
    recall_error_examples: list[str]
    recall_mixed_examples: list[str]
    total_s: float


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reembed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=5000, help="catalogue size (default 5,000)")
    parser.add_argument(
        "--interactions", type=int, default=5000, help="interactions in the catalogue backlog (default 5,000, 500 users)"
    )
    parser.add_argument("--live-encoder", default="sail-tiny")
    parser.add_argument("--new-encoder", default="sail-tiny-omni")
    parser.add_argument(
        "--share",
        type=float,
        default=0.5,
        help="the backfill's cap, as a share of the new encoder's measured capacity (default 0.5)",
    )
    parser.add_argument("--capacity-s", type=float, default=15.0)
    parser.add_argument(
        "--new-encoder-nice",
        type=int,
        default=19,
        help="OS scheduling niceness of the new encoder's Triton "
        "(default 19: on shared cores it gets them only when the live path leaves them; 0: as the rest)",
    )
    parser.add_argument(
        "--new-encoder-threads",
        type=int,
        default=0,
        help="torch threads of the new encoder's Triton (OMP_NUM_THREADS; 0: torch's default, every core)",
    )
    parser.add_argument("--items-per-s", type=float, default=2.0, help="demo uploads/s during the baseline and the re-embed")
    parser.add_argument("--interactions-per-s", type=float, default=30.0, help="demo interactions/s meanwhile (default 30)")
    parser.add_argument(
        "--baseline-s", type=float, default=60.0, help="seconds of traffic before the re-embed starts (default 60)"
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(f"  {line}", flush=True)

    began = time.monotonic()
    state = scratch_dir("sail-bench-reembed-")
    tag = f"rb{uuid.uuid4().hex[:6]}"
    settings = local_settings(state, f"{tag}.", encoder=args.live_encoder, embedding_dim=384, topic_partitions=4)
    grpc, http, metrics = free_ports(3)
    target = settings.model_copy(
        update={
            "encoder": args.new_encoder,
            "triton_url": f"grpc://127.0.0.1:{grpc}",
            "triton_http_port": http,
            "triton_metrics_port": metrics,
            "state_dir": state / "new-triton",
        }
    )
    stack, target_stack = Stack(settings, progress=say), Stack(target, progress=say)
    info = machine()
    worker = None
    try:
        stack.up()
        if args.new_encoder_threads:  # the second Triton's environment is this process's (deploy.local.stack)
            os.environ["OMP_NUM_THREADS"] = str(args.new_encoder_threads)
        try:
            target_stack.up(["triton"])
        finally:
            os.environ.pop("OMP_NUM_THREADS", None)
        if args.new_encoder_nice:
            target_stack.lower_priority("triton", args.new_encoder_nice)
        (port,) = free_ports(1)
        worker = start_worker(settings, port, state / "workers", loglevel="warning")
        wait_for_group(settings, [worker])
        traffic = Traffic(LoadPlan(image_share=0.5, users=500), run_id=tag)
        catalogue_s = catalogue(settings, traffic, args.items, args.interactions, say)
        say(f"catalogue: {args.items:,} items in {catalogue_s:.0f}s")
        sample = Traffic(LoadPlan(image_share=0.5), run_id="capacity")
        requests = [inline_request(sample.upload(0)) for _ in range(128)]
        capacity, _ = bare_client(target, requests, args.capacity_s)
        max_rate = round(capacity * args.share, 1)
        say(f"new encoder {args.new_encoder}: {capacity:.1f} items/s with a bare client; backfill capped at {max_rate} items/s")

        def traffic_for(seconds: float, stop: threading.Event) -> threading.Thread:
            plan = LoadPlan(
                items_per_s=args.items_per_s, interactions_per_s=args.interactions_per_s, duration_s=seconds, users=500
            )
            thread = threading.Thread(
                target=run_producer, args=(settings, plan), kwargs={"traffic": traffic, "stop": stop.is_set}, daemon=True
            )
            thread.start()
            return thread

        live_items = settings.collections()[0].name
        base_from = int(time.time() * 1000)
        traffic_for(args.baseline_s, threading.Event()).join()
        base_until = int(time.time() * 1000)
        time.sleep(5.0)
        baseline = _percentiles(asyncio.run(_fresh(settings, live_items, base_from, base_until)))
        say(f"baseline freshness: {baseline}")

        users = asyncio.run(_users(settings))  # those with a vector (a user with only skips so far has none)
        spawn = multiprocessing.get_context("spawn")
        watch_stop, watch_out = spawn.Event(), state / "recall-watch.json"
        watcher = spawn.Process(
            target=RecallWatch(users=users, items=list(traffic.items[: args.items])).run,
            args=(settings, watch_stop, watch_out),
            daemon=True,
        )
        watcher.start()
        stop = threading.Event()
        producer_thread = traffic_for(24 * 3600, stop)
        backfill_from = int(time.time() * 1000)
        marks: dict[str, int] = {}

        def progress(line: str) -> None:
            if "swapped:" in line:
                marks["swap"] = int(time.time() * 1000)
            if "users" in line and "records on" in line:
                marks["users_from"] = int(time.time() * 1000)
            say(line)

        async def run() -> Backfill:
            new_client, live_client = EncoderClient.for_settings(target), EncoderClient.for_settings(settings)
            await new_client.start()
            await live_client.start()
            try:
                return await reembed(
                    settings,
                    new_client,
                    max_rate=max_rate,
                    batch=32,
                    progress=progress,
                    target_url=target.triton_url,
                    swap=True,
                    grace_s=15.0,
                    live_encoder=live_client,
                )
            finally:
                await new_client.close()
                await live_client.close()

        result = asyncio.run(run())
        ended = int(time.time() * 1000)
        time.sleep(5.0)
        stop.set()
        producer_thread.join()
        watch_stop.set()
        watcher.join(timeout=60)
        watch = RecallWatch(**json.loads(watch_out.read_text()))
        swap_ms = marks.get("swap", ended)
        during = _percentiles(
            asyncio.run(_fresh(settings, live_items, backfill_from, swap_ms - 2000))
        )  # created while the backfill ran
        after = _percentiles(
            asyncio.run(_fresh(settings, result.items_collection, swap_ms + 2000, ended))
        )  # encoded by the worker with the new model
        switch = (
            (watch.first_answer_ms[result.model_version] - swap_ms) / 1000
            if result.model_version in watch.first_answer_ms and "swap" in marks
            else None
        )
        out = Result(
            items=args.items,
            users_with_vectors=result.counts.live_users if result.counts else 0,
            live_encoder=args.live_encoder,
            new_encoder=args.new_encoder,
            catalogue_s=round(catalogue_s, 1),
            new_encoder_capacity_items_s=round(capacity, 1),
            max_rate_items_s=max_rate,
            baseline_freshness=baseline,
            backfill_freshness=during,
            after_swap_freshness=after,
            backfill_items_s=round(result.items.rate, 1),
            backfill_s=round(result.items.seconds, 1),
            users_phase_s=round(result.users.seconds, 1) if result.users else 0.0,
            followed_records=result.followed,
            counts=result.counts.explain() if result.counts else "-",
            swap_write_ms=round(1000 * result.swap.write_s, 1) if result.swap else None,
            recall_switch_s=round(switch, 2) if switch is not None else None,
            recall_queries=watch.queries,
            recall_errors=len(watch.errors),
            recall_mixed=watch.mixed,
            recall_mixed_refused=watch.refused_mixed,
            recall_empty=watch.empty,
            recall_by_version=watch.by_version,
            recall_error_examples=watch.errors[:5],
            recall_mixed_examples=(watch.mixed_examples + watch.refused_examples)[:5],
            total_s=round(time.monotonic() - began, 1),
        )
    finally:
        if worker is not None:
            worker.stop()
        target_stack.down(["triton"])
        stack.down()
    print(json.dumps(asdict(out)))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "result": asdict(out)}, indent=2))
    parameters = {
        name: getattr(args, name)
        for name in (
            "interactions",
            "share",
            "capacity_s",
            "new_encoder_nice",
            "new_encoder_threads",
            "items_per_s",
            "interactions_per_s",
            "baseline_s",
        )
    }
    path = write_result("reembed", {**asdict(out), "parameters": parameters})
    print()
    print(render_table("reembed", "run", path.parent))  # the table BENCHMARKS.md shows, from the file just written
    print(f"summary written to {path}")


if __name__ == "__main__":
    main()
