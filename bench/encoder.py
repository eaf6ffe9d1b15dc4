"""What serving costs: the SAIL encoder in-process vs through Triton, on this machine.

    python -m bench.encoder [--encoder sail-tiny] [--items 256] [--cover] [--frames N] [--quick] [--json FILE]

For each batch size, the in-process baseline (`SailEncoder.encode` on a batch) and the Triton path
(`EncoderClient.encode` from concurrent callers, through tritonserver's dynamic batcher) run on the
same items in the same run; the ratio Triton/in-process is the figure that holds across machines.
Triton is restarted for each queue delay. The rows go to bench/results/encoder-ENCODER[-cover]
[-Nframes][-quick].json (`bench.results`), from which `python -m bench.report` renders BENCHMARKS.md.
Never a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.results import scratch_dir, write_result
from deploy.local.stack import Stack, free_ports
from encoders.client import EncoderClient
from encoders.model import SailEncoder, load_encoder
from tests.support.media import image_bytes
from topology.messages import EncodeRequest
from topology.settings import Settings

WORDS = "cat dog pasta goal alps guitar drum speedrun market city night food travel kids review unboxing tutorial".split()


def workload(count: int, seed: int, with_cover: bool, frames: int = 0) -> list[EncodeRequest]:
    """Short-video-like items: a title, tags, some OCR and ASR (~60 tokens), optionally a cover
    and `frames` sampled frames (96 px JPEGs; the encoder resizes them to its resolution)."""
    rng = np.random.default_rng(seed)
    images = [image_bytes(i, size=96, fmt="JPEG") for i in range(8)]
    covers = images if with_cover else []

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS, n))

    return [
        EncodeRequest(
            title=f"{words(6)} #{i}",
            tags=tuple(rng.choice(WORDS, 3)),
            ocr_text=words(12),
            asr_text=words(20),
            author_nickname=f"creator{i % 50}",
            cover=covers[i % len(covers)] if covers else None,
            frames=tuple(images[(i + k) % len(images)] for k in range(frames)),
        )
        for i in range(count)
    ]


@dataclass
class Row:
    encoder: str
    media: str
    batch: int
    queue_delay_us: int
    in_process_items_s: float
    triton_items_s: float

    @property
    def ratio(self) -> float:
        return self.triton_items_s / self.in_process_items_s


def in_process_rate(encoder: SailEncoder, items: list[EncodeRequest], batch: int) -> float:
    encoder.encode(items[:batch])  # warm-up
    began = time.perf_counter()
    for start in range(0, len(items), batch):
        encoder.encode(items[start : start + batch])
    return len(items) / (time.perf_counter() - began)


async def triton_rate(address: str, items: list[EncodeRequest], batch: int, concurrency: int) -> float:
    """`concurrency` callers each send `batch` items per request until all items are done."""
    client = EncoderClient(address, timeout_s=120.0, max_batch=batch)
    await client.start()
    try:
        await client.encode(items[:batch])  # warm-up
        chunks = [items[i : i + batch] for i in range(0, len(items), batch)]
        queue: asyncio.Queue[list[EncodeRequest]] = asyncio.Queue()
        for chunk in chunks:
            queue.put_nowait(chunk)

        async def caller() -> None:
            while not queue.empty():
                await client.encode(queue.get_nowait())

        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return len(items) / (time.perf_counter() - began)
    finally:
        await client.close()


def run(encoder_name: str, count: int, batches: list[int], delays_us: list[int], with_cover: bool, frames: int = 0) -> list[Row]:
    items = workload(count, seed=1, with_cover=with_cover, frames=frames)
    media = ("text+cover" if with_cover else "text") + (f"+{frames} frames" if frames else "")
    encoder = load_encoder(encoder_name, device="auto")
    rows = []
    for delay in delays_us:
        grpc, http, metrics = free_ports(3)
        settings = Settings(
            triton_url=f"grpc://127.0.0.1:{grpc}",
            triton_http_port=http,
            triton_metrics_port=metrics,
            triton_queue_delay_us=delay,
            triton_max_batch_size=max(batches),
            encoder=encoder_name,
            state_dir=scratch_dir("sail-bench-"),
        )
        stack = Stack(settings, progress=lambda line: print(f"  {line}", flush=True))
        try:
            stack.up(["triton"])
            for b in batches:
                # Baseline and Triton back to back on the same items, so drift on a shared machine hits both.
                baseline = in_process_rate(encoder, items, b)
                # enough callers in flight to fill the largest server batch
                rate = asyncio.run(triton_rate(settings.triton_grpc_address, items, b, concurrency=max(2, max(batches) // b)))
                row = Row(encoder_name, media, b, delay, round(baseline, 1), round(rate, 1))
                print(
                    f"  batch={b:<3} queue_delay_us={delay:<6} in-process={row.in_process_items_s:8.1f}/s "
                    f"triton={row.triton_items_s:8.1f}/s ratio={row.ratio:.2f}",
                    flush=True,
                )
                rows.append(row)
        finally:
            stack.down(["triton"])
    return rows


def machine() -> dict[str, object]:
    import torch

    cpu = "unknown"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }


def markdown(rows: list[Row], info: dict[str, object]) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['device']}; "
        f"torch {info['torch']} ({info['torch_threads']} threads); Python {info['python']}; {info['date']}.",
        "",
        "| encoder | media | batch | Triton queue delay (µs) | in-process items/s | Triton items/s | Triton / in-process |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.encoder} | {r.media} | {r.batch} | {r.queue_delay_us} | {r.in_process_items_s:.1f} | "
        f"{r.triton_items_s:.1f} | {r.ratio:.2f} |"
        for r in rows
    ]
    return "\n".join(lines)


def result_name(encoder: str, cover: bool, frames: int, quick: bool) -> str:
    """The results file of a run: one per encoder and media, quick runs apart (BENCHMARKS.md shows each)."""
    return (
        f"encoder-{encoder}" + ("-cover" if cover else "") + (f"-{frames}frames" if frames else "") + ("-quick" if quick else "")
    )


def summary(rows: list[Row], info: dict[str, object], items: int, batches: list[int], delays_us: list[int]) -> dict[str, object]:
    """What `write_result` records: every row (in-process baseline and Triton, back to back) and the run's parameters."""
    return {
        "items": items,
        "batches": batches,
        "queue_delays_us": delays_us,
        "runtime": {key: info[key] for key in ("torch", "torch_threads", "device")},
        "rows": [asdict(r) | {"ratio": round(r.ratio, 3)} for r in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.encoder", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="sail-tiny", help="encoder preset or saved folder (default sail-tiny)")
    parser.add_argument("--items", type=int, default=256, help="items per measurement")
    parser.add_argument("--cover", action="store_true", help="give every item a JPEG cover (use with sail-tiny-omni)")
    parser.add_argument(
        "--frames", type=int, default=0, help="sampled frames per item besides the cover (8 for the SAIL-sized item)"
    )
    parser.add_argument("--quick", action="store_true", help="batch 8 and 32, one queue delay, 96 items")
    parser.add_argument("--json", type=Path, help="also write the rows and machine info as JSON here")
    args = parser.parse_args()
    batches, delays, count = ([8, 32], [2000], 96) if args.quick else ([1, 8, 32, 64], [0, 2000, 10000], args.items)
    info = machine()
    print(f"bench.encoder: {args.encoder}, {count} items, batches {batches}, queue delays {delays} µs", flush=True)
    rows = run(args.encoder, count, batches, delays, args.cover, args.frames)
    print()
    print(markdown(rows, info))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": [asdict(r) | {"ratio": r.ratio} for r in rows]}, indent=2))
    name = result_name(args.encoder, args.cover, args.frames, args.quick)
    print(f"summary: {write_result(name, summary(rows, info, count, batches, delays))}")


if __name__ == "__main__":
    main()
