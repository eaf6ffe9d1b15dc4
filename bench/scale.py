"""How the Milvus costs the worker pays grow with the catalogue, on both backends (issue 33, first part).

    python -m bench.scale                                  # 10k, 50k, 100k, 200k rows on Lite and the server
    python -m bench.scale --sizes 10000,50000 --backends server      # a short run

For each backend a private Milvus is started (Lite: the default; server: the `milvus` package's 2.3.5
standalone with HNSW M=16 efConstruction=200, in its network namespace) and one items collection is
grown with `sail-stream import items` (the product's import, pages of 2,000 rows) to each size in turn.
At each size, the same run measures:
- the content path's write: `--upserts` upserts of 64 new rows each (`MilvusSink.upsert_each`, as the
  content agent stores a batch), latency p50/p99;
- recall's read: `--queries` top-10 searches at the recall API's consistency (Bounded), latency p50/p99,
  and recall@10 against an exact search (NumPy, over every row written so far);
- the import's rate to get there (rows/s), Milvus's memory (RSS of its processes) and disk (its data folder).

Vectors: 384 wide, clustered like embeddings (256 random unit centres, each row a centre plus noise,
L2-normalised), seeded. They are not the stand-in encoder's: at ~80 items/s it would take hours to make
200k. The ratio the issue asks for is each backend's own p99 at its largest size over its p99 at 10k,
measured in the same run; Lite at the same sizes is the baseline the server is judged against.

Not measured here (the rest of issue 33's `bench/scale.py`): 1M rows, 100k users, the content path's
throughput and freshness at 80 % of the stand-in's capacity on the large collection. The summary goes to
`bench/results/scale-growth.json`; never a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.results import write_result
from deploy.local.process import group_members
from deploy.local.stack import Stack
from streams.lifecycle.catalogue import import_items
from streams.sinks.milvus import MilvusSink
from tests.support.stack import local_settings
from topology.collections import VECTOR_FIELD, item_row
from topology.settings import Settings

DIM = 384
CENTRES = 256
MODEL_VERSION = "bench-scale"


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
    """Every row written to the collection so far, in order: ids and vectors (the exact search's corpus)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.vectors = np.zeros((0, DIM), dtype=np.float32)

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        self.ids += ids
        self.vectors = np.concatenate([self.vectors, vectors])


async def measure(
    s: Settings, written: Written, rng: np.random.Generator, centres: np.ndarray, upserts: int, queries: int, tag: str
) -> dict[str, Any]:
    """Upsert and search latencies and recall@10 at the collection's current size (the upserts add rows)."""
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
        exact = np.argsort(-(written.vectors @ probes.T), axis=0)[:10].T
        search_s, recalls = [], []
        for probe, best in zip(probes, exact):
            began = time.perf_counter()
            hits = await sink.search(items.name, probe[None, :], limit=10, vector_field=VECTOR_FIELD, consistency="Bounded")
            search_s.append(time.perf_counter() - began)
            recalls.append(len({h.id for h in hits[0]} & {written.ids[i] for i in best}) / 10)
        return {
            "upsert_p50_ms": percentile_ms(upsert_s, 50),
            "upsert_p99_ms": percentile_ms(upsert_s, 99),
            "search_p50_ms": percentile_ms(search_s, 50),
            "search_p99_ms": percentile_ms(search_s, 99),
            "recall_at_10": round(float(np.mean(recalls)), 4),
        }
    finally:
        await sink.close()


def run_backend(backend: str, sizes: list[int], upserts: int, queries: int, seed: int, say: Any) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix=f"scale-{backend}-"))
    tag = f"sc{uuid.uuid4().hex[:6]}"
    s = local_settings(state, f"{tag}.", milvus_backend=backend, start_timeout_s=300.0, embedding_dim=DIM)
    stack = Stack(s, progress=lambda line: say(f"  {line}"))
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CENTRES, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points: list[dict[str, Any]] = []
    try:
        stack.up(["milvus"])
        written = Written()
        for size in sizes:
            n = size - len(written.ids)
            if n <= 0:
                continue
            chunk = vectors(rng, centres, n)
            ids = [f"{tag}-i{len(written.ids) + k}" for k in range(n)]
            path = state / f"chunk-{size}.npz"
            np.savez(path, item_id=np.array(ids), embedding=chunk, model_version=MODEL_VERSION)
            began = time.perf_counter()
            done = asyncio.run(import_items(s, path, batch=2000, probe_encoder=False, progress=lambda line: say(f"  {line}")))
            import_s = time.perf_counter() - began
            if done.upserted != n or done.rejected:
                raise RuntimeError(f"the import did not write every row: {done}")
            written.add(ids, chunk)
            figures = asyncio.run(measure(s, written, rng, centres, upserts, queries, tag))
            rss, disk = milvus_footprint(stack, state / "milvus")
            point = {
                "rows": len(written.ids),
                "import_rows_per_s": round(n / import_s),
                **figures,
                "rss_mib": rss,
                "disk_mib": disk,
            }
            say(f"{backend} {point}")
            points.append(point)
    finally:
        stack.down(["milvus"])
    return {"backend": backend, "points": points}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        default="10000,50000,100000,200000",
        help="collection sizes measured, in order (default 10000,50000,100000,200000)",
    )
    parser.add_argument("--backends", default="lite,server", help="lite, server or both, comma-separated (default lite,server)")
    parser.add_argument("--upserts", type=int, default=40, help="64-row upserts timed at each size (default 40)")
    parser.add_argument("--queries", type=int, default=100, help="searches timed at each size (default 100)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the vectors (default 3)")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    runs = []
    for backend in args.backends.split(","):
        print(f"{backend}: growing one items collection to {', '.join(f'{x:,}' for x in sizes)} rows", flush=True)
        runs.append(run_backend(backend, sizes, args.upserts, args.queries, args.seed, lambda line: print(line, flush=True)))
    growth = {
        r["backend"]: round(r["points"][-1]["upsert_p99_ms"] / r["points"][0]["upsert_p99_ms"], 2)
        for r in runs
        if len(r["points"]) >= 2
    }
    summary = {
        "dim": DIM,
        "sizes": sizes,
        "upserts_per_size": args.upserts,
        "rows_per_upsert": 64,
        "queries_per_size": args.queries,
        "runs": runs,
        "upsert_p99_growth": growth,  # p99 at the largest size over p99 at the smallest, per backend
    }
    print(write_result("scale-growth", summary))


if __name__ == "__main__":
    main()
