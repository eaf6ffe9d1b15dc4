"""A real catalogue's size: the streaming paths on a million-item Milvus server, and Lite's limit (issue 33).

    python -m bench.scale                                   # 1M items, 100k users; then Lite's limit (~50 min)
    python -m bench.scale --server-sizes 10000,50000 --users 2000 --lite-sizes 10000,20000   # a short run

One run, two stacks (Kafka KRaft, Triton serving the encoder stand-in `encoders/bench_double.py`, one
worker), each with its own Milvus:
1. **Server** (the `milvus` package's 2.3.5 standalone, HNSW M=16 efConstruction=200, in its network
   namespace). One items collection grown with `sail-stream import items` (the product's import, pages of
   2,000 rows) to each of `--server-sizes`; after each import, the time until the vector index covers every
   row and until Milvus is quiet (its compactions, and the index builds they cause, done: `--quiet-share`),
   then `--upserts` upserts of 64 new rows (`MilvusSink.upsert_each`, the content agent's write) and
   `--queries` top-10 searches (Bounded, recall's read) checked against an exact NumPy search over every row
   the collection holds (recall@10). At the smallest and the largest size the content path drains a backlog
   of 25 s of the stand-in's capacity (its rate over the capacity a bare client measured in the same run);
   at the largest, uploads at 80 % of capacity for `--phase-s` (freshness: upload event time to upsert),
   then `--users` user rows and, once both collections' indexes cover every row and Milvus is quiet, the
   recall API (`sail-stream recall serve`, its own process) asked for `--recalls` users' items (u2i) and as
   many items' neighbours (i2i), latency at the client (p50, p99, max, calls over 50 ms, and for the
   slowest the API's Server-Timing: Milvus's time per operation).
2. **Lite** (the default backend). The collection grown through `--lite-sizes`; at each, 40 of the same upserts
   and a drained backlog, until the content path falls below 0.9 of the stand-in's capacity:
   `lite_max_items` is the largest size that still drained at 0.9 or more.

Vectors: 384 wide, clustered like embeddings (256 random unit centres, each row a centre plus noise,
L2-normalised), seeded, written as the stand-in's model version so that recall queries them with the
worker's own rows; the stand-in's rows are random unit vectors. The 10k figures are the baseline the 1M
ones are judged against (same run, same stack), Lite's the baseline of the server's. The summary goes to
`bench/results/scale.json`; never a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.overload import Worker, bare_client, drain_run, offered_run
from bench.overload import _requests as upload_requests
from bench.pipeline import cpu_seconds
from bench.results import scratch_dir, write_result
from deploy.local.process import group_members
from deploy.local.stack import Stack, free_ports
from encoders.bench_double import MODEL_VERSION
from streams.lifecycle.catalogue import import_items
from streams.recall.client import RecallClient
from streams.sinks.milvus import MilvusSink, scan_rows
from tests.support.stack import local_settings
from topology.collections import VECTOR_FIELD, item_row, user_row
from topology.settings import Settings

DIM = 384
CENTRES = 256
Say = Callable[[str], None]


def vectors(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    """`n` clustered unit vectors."""
    picked = centres[rng.integers(0, len(centres), size=n)]
    out = picked + rng.normal(scale=0.5 / np.sqrt(DIM), size=(n, DIM))  # noise of norm ~0.5 around a unit centre
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def percentile_ms(samples: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(samples) * 1000, q)), 2)


def milvus_footprint(stack: Stack, data_dir: Path) -> tuple[float, float]:
    """(RSS MiB of Milvus's processes, MiB on disk of its data folder)."""
    record = stack._procs["milvus"].record()
    rss = 0
    if record is not None:
        for pid in group_members(record.pgid):
            try:
                rss += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue
    disk = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())
    return round(rss / 2**20, 1), round(disk / 2**20, 1)


class Written:
    """Every row the collection holds, in order: ids and vectors (the exact search's corpus)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self._chunks: list[np.ndarray] = []

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        self.ids += ids
        self._chunks.append(vectors)

    @property
    def vectors(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros((0, DIM), dtype=np.float32)


def exact_top10(corpus: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Indices of the 10 rows nearest `probe` by inner product (the metric of unit vectors' cosine)."""
    scores = corpus @ probe
    top = np.argpartition(-scores, 10)[:10]
    return top[np.argsort(-scores[top])]


def index_backlog(s: Settings) -> int | None:
    """Rows of the items and users collections their vector indexes do not cover yet (the server builds
    them in the background after a segment seals, then loads the indexed segment); None where Milvus does
    not say (Lite)."""
    from pymilvus import MilvusClient

    client = MilvusClient(s.milvus_uri)
    pending: int | None = None
    try:
        for collection in (spec.name for spec in s.collections()):
            for name in client.list_indexes(collection):
                info = client.describe_index(collection, name)
                if "pending_index_rows" in info:
                    pending = (pending or 0) + int(info["pending_index_rows"])
                elif "total_rows" in info and "indexed_rows" in info:
                    pending = (pending or 0) + int(info["total_rows"]) - int(info["indexed_rows"])
        return pending
    finally:
        client.close()


def wait_for_index(s: Settings, timeout_s: float, say: Say) -> tuple[float, int | None]:
    """(seconds until the index covers every row, rows still uncovered at the timeout or None)."""
    began = time.monotonic()
    last = time.monotonic()
    while True:
        pending = index_backlog(s)
        if not pending:
            return round(time.monotonic() - began, 1), pending
        if time.monotonic() - began > timeout_s:
            return round(time.monotonic() - began, 1), pending
        if time.monotonic() - last > 15:
            say(f"  index: {pending:,} rows not indexed yet ({time.monotonic() - began:.0f} s)")
            last = time.monotonic()
        time.sleep(2)


def wait_for_quiet(stack: Stack, share: float, timeout_s: float, say: Say) -> tuple[float, float]:
    """Wait until Milvus's processes use less than `share` of the machine's CPU over 15 s (its compactions
    and the index builds they cause are done). (seconds waited, the share over the last 15 s)."""
    record = stack._procs["milvus"].record()
    if record is None:
        return 0.0, 0.0
    cores = os.cpu_count() or 1
    began = time.monotonic()
    while True:
        before = cpu_seconds(record.pgid)
        time.sleep(15)
        used = (cpu_seconds(record.pgid) - before) / 15 / cores
        waited = round(time.monotonic() - began, 1)
        if used < share or waited > timeout_s:
            return waited, round(used, 3)
        say(f"  milvus busy: {used:.2f} of the machine's CPU ({waited:.0f} s)")


async def measure(
    s: Settings,
    written: Written,
    rng: np.random.Generator,
    centres: np.ndarray,
    upserts: int,
    queries: int,
    tag: str,
    exact: bool,
) -> dict[str, Any]:
    """Upsert and search latencies at the collection's current size (the upserts add rows), and recall@10
    against an exact search when `exact`."""
    items, _ = s.collections()
    sink = MilvusSink.for_settings(s)
    await sink.start()
    try:
        upsert_s = []
        for _ in range(upserts):
            batch = vectors(rng, centres, 64)
            ids = [f"{tag}-u{len(written.ids)}-{j}" for j in range(64)]
            rows = [item_row(i, "bench", 1, 1, MODEL_VERSION, v) for i, v in zip(ids, batch)]
            began = time.perf_counter()
            refused = await sink.upsert_each(items, rows)
            upsert_s.append(time.perf_counter() - began)
            if refused:
                raise RuntimeError(f"Milvus refused rows: {refused}")
            written.add(ids, batch)
        probes = vectors(rng, centres, queries)
        search_s, recalls = [], []
        corpus = written.vectors if exact else None
        for probe in probes:
            began = time.perf_counter()
            hits = await sink.search(items.name, probe[None, :], limit=10, vector_field=VECTOR_FIELD, consistency="Bounded")
            search_s.append(time.perf_counter() - began)
            if corpus is not None:
                best = {written.ids[i] for i in exact_top10(corpus, probe)}
                recalls.append(len({h.id for h in hits[0]} & best) / 10)
        return {
            "upsert_p50_ms": percentile_ms(upsert_s, 50),
            "upsert_p99_ms": percentile_ms(upsert_s, 99),
            "search_p50_ms": percentile_ms(search_s, 50),
            "search_p99_ms": percentile_ms(search_s, 99),
            "recall_at_10": round(float(np.mean(recalls)), 4) if recalls else None,
        }
    finally:
        await sink.close()


class Catalogue:
    """One stack's items collection, grown by the product's import and by the worker's own rows."""

    def __init__(self, s: Settings, stack: Stack, state: Path, seed: int, say: Say) -> None:
        self.s, self.stack, self.state, self.say = s, stack, state, say
        self.tag = s.topic_prefix.rstrip(".")
        self.rng = np.random.default_rng(seed)
        centres = self.rng.normal(size=(CENTRES, DIM))
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        self.written = Written()

    def grow(self, size: int) -> dict[str, Any]:
        """Import rows until the collection holds `size`; the import's rate."""
        n = size - len(self.written.ids)
        if n <= 0:
            return {"import_rows": 0, "import_s": 0.0}
        chunk = vectors(self.rng, self.centres, n)
        ids = [f"{self.tag}-i{len(self.written.ids) + k}" for k in range(n)]
        path = self.state / f"chunk-{size}.npz"
        np.savez(
            path, item_id=np.array(ids), embedding=chunk, created_at_ms=np.ones(n, dtype=np.int64), model_version=MODEL_VERSION
        )
        began = time.perf_counter()
        done = asyncio.run(import_items(self.s, path, batch=2000, progress=lambda line: self.say(f"  {line}")))
        seconds = time.perf_counter() - began
        path.unlink()
        if done.upserted != n or done.rejected:
            raise RuntimeError(f"the import did not write every row: {done}")
        self.written.add(ids, chunk)
        return {"import_rows": n, "import_s": round(seconds, 1), "import_rows_per_s": round(n / seconds)}

    def drained(self, worker: Worker, capacity: float) -> dict[str, Any]:
        """A backlog of 25 s of capacity drained by the worker; its rows join the exact search's corpus."""
        before = int(time.time() * 1000)
        rows = len(self.written.ids)
        run = drain_run(worker, "standin", int(capacity * 25), 0.0, capacity)
        self.adopt(before)
        self.say(f"  content path at {rows:,} rows: {run.items_s} items/s, {run.vs_capacity} of capacity (cpu {run.cpu})")
        return {"rows": rows, "items_s": run.items_s, "vs_capacity": run.vs_capacity, "cpu": run.cpu}

    def adopt(self, since_ms: int) -> None:
        """Add the rows the worker stored for uploads created since `since_ms` (imported rows carry 1)."""
        items = self.s.collections()[0].name
        for page in scan_rows(self.s.milvus_uri, None, items, f"created_at_ms >= {since_ms}", ["item_id", VECTOR_FIELD]):
            self.written.add([r["item_id"] for r in page], np.array([r[VECTOR_FIELD] for r in page], dtype=np.float32))


def add_users(s: Settings, written: Written, rng: np.random.Generator, count: int) -> tuple[list[str], float]:
    """`count` users, each the normalised sum of three catalogue items it has seen; (user ids, rows/s)."""
    _, users = s.collections()
    tag = s.topic_prefix.rstrip(".")
    corpus = written.vectors
    ids = [f"{tag}-user{k}" for k in range(count)]

    async def write() -> float:
        sink = MilvusSink.for_settings(s)
        await sink.start()
        try:
            began = time.perf_counter()
            for start in range(0, count, 2000):
                rows = []
                for user in ids[start : start + 2000]:
                    seen = rng.integers(0, len(corpus), size=3)
                    vector = corpus[seen].sum(axis=0)
                    recent = ",".join(written.ids[i] for i in seen)
                    rows.append(user_row(user, 0, 1, 3, recent, MODEL_VERSION, vector / np.linalg.norm(vector)))
                await sink.upsert(users.name, rows)
            return count / (time.perf_counter() - began)
        finally:
            await sink.close()

    return ids, round(asyncio.run(write()))


def recall_latency(s: Settings, users: list[str], items: list[str], count: int, state: Path, say: Say) -> dict[str, Any]:
    """The recall API in its own process, asked for `count` users' items and `count` items' neighbours."""
    (port,) = free_ports(1)
    log = (state / "recall.log").open("w")
    api = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "recall", "serve", "--port", str(port), "--host", "127.0.0.1"],
        env={**os.environ, **s.as_env()},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                break
            except OSError:
                if api.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the recall API did not start: see {state / 'recall.log'}") from None
                time.sleep(0.5)
        client = RecallClient(f"http://127.0.0.1:{port}", timeout_s=30.0)
        rng = np.random.default_rng(11)
        figures: dict[str, Any] = {}
        for name, ask, ids in (("u2i", client.user_items, users), ("i2i", client.similar_items, items)):
            picked = [ids[i] for i in rng.integers(0, len(ids), size=count + 20)]
            took, empty, timings = [], 0, []
            for n, key in enumerate(picked):
                began = time.perf_counter()
                got = ask(key, 10)
                if n >= 20:  # the first 20 warm the connection pool and caches
                    took.append(time.perf_counter() - began)
                    timings.append(client.last_timing)  # the API's Server-Timing: Milvus per operation, its total
                    empty += len(got) < 10
            figures[f"{name}_p50_ms"] = percentile_ms(took, 50)
            figures[f"{name}_p99_ms"] = percentile_ms(took, 99)
            figures[f"{name}_max_ms"] = percentile_ms(took, 100)
            figures[f"{name}_over_50_ms"] = sum(t > 0.05 for t in took)  # the tail: one slow spell or many calls
            figures[f"{name}_server_p99_ms"] = percentile_ms([t.get("total", 0.0) / 1000 for t in timings], 99)
            slow = sorted(zip(took, timings), key=lambda pair: -pair[0])[:10]
            figures[f"{name}_slowest"] = [{"ms": round(t * 1000, 1), **timing} for t, timing in slow]  # where each went
            figures[f"{name}_short_answers"] = empty  # fewer than 10 items: a miss to report
            say(f"  recall {name}: p50 {figures[f'{name}_p50_ms']} ms, p99 {figures[f'{name}_p99_ms']} ms")
        return figures
    finally:
        api.terminate()
        api.wait(timeout=30)
        log.close()


def start(backend: str, args: argparse.Namespace, say: Say) -> tuple[Settings, Stack, Path, float]:
    """A private stack on `backend` (stopped again if it cannot start), and the stand-in's capacity measured
    by a bare client on it: (settings, stack, state folder, items/s)."""
    state = scratch_dir(f"scale-{backend}-")
    s = local_settings(
        state,
        f"sc{uuid.uuid4().hex[:6]}.",
        milvus_backend=backend,
        start_timeout_s=300.0,
        embedding_dim=DIM,
        topic_partitions=4,
        encoder="standin",
        standin_fixed_ms=args.fixed_ms,
        standin_per_item_ms=args.per_item_ms,
        triton_instances=args.instances,
    )
    stack = Stack(s, progress=lambda line: say(f"  {line}"))
    try:
        stack.up()
        capacity, _ = bare_client(s, upload_requests(512, 0.0), seconds=15)
    except BaseException:
        stack.down()
        raise
    say(f"{backend}: stand-in capacity {capacity:.1f} items/s (bare client)")
    return s, stack, state, capacity


def settle(stack: Stack, args: argparse.Namespace, say: Say) -> dict[str, Any]:
    """Wait for a quiet Milvus (unless --quiet-share is 0); how long it took and how busy it was at the end."""
    waited, busy = wait_for_quiet(stack, args.quiet_share, args.index_wait_s, say) if args.quiet_share else (0.0, None)
    return {
        "quiet_wait_s": waited,  # after the index caught up, until Milvus's CPU fell below --quiet-share
        "milvus_cpu_at_start": busy,  # its share of the machine over the 15 s before measuring
    }


def server_part(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    s, stack, state, capacity = start("server", args, say)
    sizes = [int(x) for x in args.server_sizes.split(",")]
    points: list[dict[str, Any]] = []
    out: dict[str, Any] = {"backend": "server", "points": points, "capacity_items_s": round(capacity, 1)}
    try:
        cat = Catalogue(s, stack, state, args.seed, say)
        worker = Worker(s, state, stack)
        try:
            for n, size in enumerate(sizes):
                grown = cat.grow(size)
                index_s, pending = wait_for_index(s, args.index_wait_s, say)
                point: dict[str, Any] = {
                    "rows": len(cat.written.ids),
                    **grown,
                    "index_wait_s": index_s,
                    "index_pending": pending,
                    **settle(stack, args, say),
                }
                point.update(
                    asyncio.run(measure(s, cat.written, cat.rng, cat.centres, args.upserts, args.queries, cat.tag, True))
                )
                if n in (0, len(sizes) - 1):
                    point["content"] = cat.drained(worker, capacity)
                point["rss_mib"], point["disk_mib"] = milvus_footprint(stack, state / "milvus")
                say(f"server {point}")
                points.append(point)
            quiet = settle(stack, args, say)
            offered = offered_run(worker, "standin", 0.8 * capacity, args.phase_s, capacity, 0.0, "80% of capacity")
            out["offered_80"] = {
                "rows": len(cat.written.ids),
                "offered_items_s": offered.offered_items_s,
                "items_s": offered.items_s,
                "freshness_p50_s": offered.freshness_p50_s,
                "freshness_p99_s": offered.freshness_p99_s,
                "cpu": offered.cpu,
                **quiet,
            }
            say(f"server 80 %: {out['offered_80']}")
        finally:
            worker.stop()
        users, rate = add_users(s, cat.written, cat.rng, args.users)
        out["users"], out["users_rows_per_s"] = len(users), rate
        index_s, pending = wait_for_index(s, args.index_wait_s, say)  # the users' segments too: sealed, indexed, loaded
        out["recall"] = {
            "rows": len(cat.written.ids),
            "index_wait_s": index_s,
            "index_pending": pending,
            **settle(stack, args, say),
            **recall_latency(s, users, cat.written.ids, args.recalls, state, say),
        }
        out["rss_mib"], out["disk_mib"] = milvus_footprint(stack, state / "milvus")
    finally:
        stack.down()
    return out


def lite_part(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    s, stack, state, capacity = start("lite", args, say)
    points: list[dict[str, Any]] = []
    out: dict[str, Any] = {"backend": "lite", "points": points, "capacity_items_s": round(capacity, 1)}
    try:
        cat = Catalogue(s, stack, state, args.seed, say)
        worker = Worker(s, state, stack)
        try:
            for size in [int(x) for x in args.lite_sizes.split(",")]:
                grown = cat.grow(size)
                point: dict[str, Any] = {"rows": len(cat.written.ids), **grown}
                point.update(asyncio.run(measure(s, cat.written, cat.rng, cat.centres, 40, 50, cat.tag, False)))
                point["content"] = cat.drained(worker, capacity)
                point["rss_mib"], point["disk_mib"] = milvus_footprint(stack, state / "milvus")
                say(f"lite {point}")
                points.append(point)
                if point["content"]["vs_capacity"] < args.lite_floor:
                    break
        finally:
            worker.stop()
    finally:
        stack.down()
    return out


def headline(server: dict[str, Any] | None, lite: dict[str, Any] | None, floor: float) -> dict[str, Any]:
    """The acceptance's figures from the two parts. Pure."""
    out: dict[str, Any] = {}
    if server and server["points"]:
        first, last = server["points"][0], server["points"][-1]
        recall = server.get("recall", {})
        out.update(
            items=last["rows"],
            users=server.get("users"),
            upsert_p99_ms_10k=first["upsert_p99_ms"],
            upsert_p99_ms_1m=last["upsert_p99_ms"],
            upsert_p99_growth=round(last["upsert_p99_ms"] / first["upsert_p99_ms"], 2),
            content_vs_capacity_10k=first.get("content", {}).get("vs_capacity"),
            content_vs_capacity_1m=last.get("content", {}).get("vs_capacity"),
            freshness_p99_s_80_1m=server.get("offered_80", {}).get("freshness_p99_s"),
            recall_p99_ms_1m=max(recall["u2i_p99_ms"], recall["i2i_p99_ms"]) if recall else None,
            hnsw_recall_at_10=last["recall_at_10"],
        )
    if lite and lite["points"]:
        held = [p["content"]["rows"] for p in lite["points"] if p["content"]["vs_capacity"] >= floor]
        fell = [p["content"]["rows"] for p in lite["points"] if p["content"]["vs_capacity"] < floor]
        out["lite_max_items"] = max(held) if held else 0
        out["lite_first_below_floor"] = min(fell) if fell else None  # None: never fell within the sizes tried
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--server-sizes",
        default="10000,100000,250000,500000,1000000",
        help="items collection sizes on the server, in order; the first and last also run the content path "
        "(default 10000,100000,250000,500000,1000000)",
    )
    parser.add_argument(
        "--lite-sizes",
        default="5000,10000,15000,20000,30000,40000,60000",
        help="sizes tried on Lite until its content path falls below --lite-floor (default 5000,10000,...,60000)",
    )
    parser.add_argument("--lite-floor", type=float, default=0.9, help="share of the stand-in's capacity Lite must drain (0.9)")
    parser.add_argument("--backends", default="server,lite", help="server, lite or both, comma-separated (default both)")
    parser.add_argument("--users", type=int, default=100_000, help="user rows written on the server (default 100000)")
    parser.add_argument("--upserts", type=int, default=200, help="64-row upserts timed at each server size (default 200)")
    parser.add_argument("--queries", type=int, default=100, help="searches timed and checked at each server size (default 100)")
    parser.add_argument("--recalls", type=int, default=300, help="recall API calls timed per kind (u2i, i2i) (default 300)")
    parser.add_argument("--phase-s", type=float, default=30.0, help="length of the 80 %% run (default 30)")
    parser.add_argument("--index-wait-s", type=float, default=900.0, help="longest wait for the index after an import (900)")
    parser.add_argument(
        "--quiet-share",
        type=float,
        default=0.1,
        help="after the index caught up, also wait until Milvus uses less than this share of the machine's CPU over "
        "15 s (its compactions and their index builds done), up to --index-wait-s; 0: do not wait (default 0.1)",
    )
    parser.add_argument("--fixed-ms", type=float, default=20.0, help="stand-in time per batch (default 20)")
    parser.add_argument("--per-item-ms", type=float, default=2.0, help="stand-in time per item (default 2)")
    parser.add_argument("--instances", type=int, default=2, help="Triton instances of the stand-in (default 2)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the vectors (default 3)")
    args = parser.parse_args(argv)
    say: Say = lambda line: print(line, flush=True)  # noqa: E731
    backends = args.backends.split(",")
    server = server_part(args, say) if "server" in backends else None
    lite = lite_part(args, say) if "lite" in backends else None
    summary = {
        **headline(server, lite, args.lite_floor),
        "dim": DIM,
        "rows_per_upsert": 64,
        "lite_floor": args.lite_floor,
        "standin": {"fixed_ms": args.fixed_ms, "per_item_ms": args.per_item_ms, "instances": args.instances},
        "runs": [r for r in (server, lite) if r],
    }
    print(summary)
    print(write_result("scale", summary))


if __name__ == "__main__":
    main()
