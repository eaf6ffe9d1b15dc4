"""Uploads under load: the content pipeline against the encoder's capacity, freshness below it,
overload above it, and a real encoder sharing the CPU with another process.

    python -m bench.overload                  # ~10 minutes, prints a markdown table and one JSON line
    python -m bench.overload --json out.json  # also writes every figure
    python -m bench.overload --skip-contention --overload-s 30   # shorter
    python -m bench.overload --overload-only  # the stand-in's capacity and the overload, ~6 minutes

One run on the real local stack (Kafka KRaft, Milvus Lite, Triton), one worker:
1. the encoder stand-in (`encoders/bench_double.py`: its service time is a sleep, off the CPU, like a GPU
   kernel's): its capacity with a bare client (full batches, several requests in flight); the
   pipeline draining a backlog (items/s, and the ratio to that capacity); freshness at 50 % and 80 %
   of capacity; 150 % of capacity for `--overload-s`, then 50 % until freshness recovers;
2. the real `sail-tiny` encoder with another process spinning on one core for the whole part: a bare
   client against the pipeline on the same Triton under the same contention.
Every stand-in row carries the encoder's duty cycle (the share of wall time it spent serving: the
executions and items Triton counted, times the stand-in's service time) and the requests Triton
computed that the worker had abandoned (Triton's successful requests minus the worker's answered
ones). Freshness is upload event time to the row's upsert (`encoded_at_ms` is stamped just before
it; Milvus Lite serves an acknowledged upsert to the next search). The overload and its recovery
also give a series per second (uploads sent and not yet stored, items stored per second), built
after the run from the stored rows' own times, so no poller takes CPU during the overload. The
figures go to bench/results/overload[-only].json (`bench.results`), from which
`python -m bench.report` renders BENCHMARKS.md and the charts. Never a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.encoder import machine
from bench.pipeline import cpu_seconds
from bench.results import scratch_dir, write_result
from deploy.local.process import ManagedProcess
from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from deploy.traffic import LoadPlan, Traffic, run_producer
from encoders.bench_double import NAME as STANDIN
from encoders.bench_double import ServiceTime
from encoders.client import EncoderClient
from streams.sinks.kafka import producer
from streams.sinks.milvus import MilvusSink
from streams.worker.content import inline_request
from tests.support.metrics import sample, scrape
from tests.support.stack import local_settings
from topology.codec import encode_upload
from topology.messages import EncodeRequest
from topology.settings import Settings

# ---------------------------------------------------------------------- observations


@dataclass
class TritonReading:
    at: float
    requests: float
    executions: float
    items: float

    @classmethod
    def read(cls, settings: Settings) -> TritonReading:
        page = scrape(f"http://127.0.0.1:{settings.triton_metrics_port}/metrics")
        model = {"model": "sail_encoder"}
        return cls(
            time.monotonic(),
            sample(page, "nv_inference_request_success", **model),
            sample(page, "nv_inference_exec_count", **model),
            sample(page, "nv_inference_count", **model),
        )

    def duty(self, before: TritonReading, service: ServiceTime | None) -> float | None:
        """Share of the wall time between two readings the stand-in spent serving: its executions
        and items counted by Triton, times its service time (`fixed_ms` per execution, `per_item_ms`
        per item). None for a real model: PyTriton's compute time also counts a request waiting
        for the model process, so it overlaps (sums past 1) under concurrent requests."""
        if service is None:
            return None
        busy_s = (
            (self.executions - before.executions) * service.fixed_ms + (self.items - before.items) * service.per_item_ms
        ) / 1000
        return round(busy_s / (self.at - before.at), 3)


def service_of(settings: Settings) -> ServiceTime | None:
    """The stand-in's service time, or None for a real model."""
    return ServiceTime(settings.standin_fixed_ms, settings.standin_per_item_ms) if settings.encoder == STANDIN else None


def _worker_answered(port: int) -> tuple[float, float]:
    """(requests answered, requests abandoned) by a worker's encoder client so far."""
    page = scrape(f"http://127.0.0.1:{port}/metrics")
    return sample(page, "sail_triton_requests", outcome="ok"), sample(page, "sail_triton_requests", outcome="abandoned")


async def _rows(settings: Settings, since_ms: int, until_ms: int) -> list[dict]:
    """Item rows created in [since_ms, until_ms), read in 5 s slices (Milvus caps a query at 16,384 rows)."""
    sink = MilvusSink(settings.milvus_uri, None, settings.milvus_backend)
    await sink.start()
    rows: list[dict] = []
    try:
        for start in range(since_ms, until_ms, 5000):
            end = min(start + 5000, until_ms)
            rows += await sink.query(
                settings.collections()[0].name,
                f"created_at_ms >= {start} and created_at_ms < {end}",
                ["created_at_ms", "encoded_at_ms"],
            )
    finally:
        await sink.close()
    return rows


def _wait_rows(settings: Settings, since_ms: int, until_ms: int, expected: int, timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = asyncio.run(_rows(settings, since_ms, until_ms))
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(1.0)


def lag_series(rows: list[dict], began_ms: int, until_ms: int, step_s: float = 1.0) -> list[dict[str, float | int]]:
    """At the end of each `step_s` from `began_ms` to `until_ms`: `t_s` (seconds since `began_ms`), `lag` (uploads
    created since `began_ms` and not yet stored: the consumer group's lag plus the batches inside the worker) and
    `items_per_s` (rows stored during that step), from the rows' own `created_at_ms` and `encoded_at_ms`. Pure."""
    mine = [r for r in rows if r["created_at_ms"] >= began_ms]
    created = np.sort(np.array([r["created_at_ms"] for r in mine], dtype=np.int64))
    stored = np.sort(np.array([r["encoded_at_ms"] for r in mine], dtype=np.int64))
    step_ms = step_s * 1000
    steps = int(np.ceil((until_ms - began_ms) / step_ms))
    ends = began_ms + step_ms * np.arange(1, steps + 1)
    sent_by = np.searchsorted(created, ends, side="left")  # created before each step's end
    stored_by = np.searchsorted(stored, ends, side="left")
    stored_in = np.diff(stored_by, prepend=np.searchsorted(stored, began_ms, side="left"))
    return [
        {"t_s": round((end - began_ms) / 1000, 3), "lag": int(sent - done), "items_per_s": round(float(n) / step_s, 1)}
        for end, sent, done, n in zip(ends, sent_by, stored_by, stored_in)
    ]


def _freshness(rows: list[dict]) -> tuple[float, float, float]:
    fresh = np.array([(r["encoded_at_ms"] - r["created_at_ms"]) / 1000 for r in rows])
    return tuple(round(float(np.percentile(fresh, q)), 3) for q in (50, 95, 99))  # type: ignore[return-value]


# ---------------------------------------------------------------------- load


def _requests(count: int, image_share: float) -> list[EncodeRequest]:
    traffic = Traffic(LoadPlan(image_share=image_share), run_id=f"bare{uuid.uuid4().hex[:4]}")
    return [inline_request(traffic.upload(int(time.time() * 1000))) for _ in range(count)]


def bare_client(
    settings: Settings, requests: list[EncodeRequest], seconds: float, concurrency: int = 4
) -> tuple[float, float | None]:
    """The encoder's capacity: full batches from `concurrency` callers for `seconds`. (items/s, duty)."""

    async def run() -> tuple[float, float]:
        client = EncoderClient.for_settings(settings, timeout_s=120.0)
        await client.start()
        batch = settings.triton_max_batch_size
        done = 0

        async def caller(offset: int) -> None:
            nonlocal done
            k = offset
            while time.monotonic() < stop:
                chunk = [requests[(k + i) % len(requests)] for i in range(batch)]
                await client.encode(chunk)
                done += len(chunk)
                k += batch * concurrency

        try:
            await client.encode(requests[:batch])  # warm-up
            before = TritonReading.read(settings)
            began = time.monotonic()
            stop = began + seconds
            await asyncio.gather(*(caller(i * batch) for i in range(concurrency)))
            after = TritonReading.read(settings)
            return done / (time.monotonic() - began), after.duty(before, service_of(settings))
        finally:
            await client.close()

    return asyncio.run(run())


def backlog(settings: Settings, count: int, image_share: float) -> tuple[int, int]:
    """Produce `count` uploads as fast as possible; (first, last) created_at_ms."""
    traffic = Traffic(LoadPlan(image_share=image_share), run_id=f"b{uuid.uuid4().hex[:6]}")
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes, linger_ms=5)
    first = int(time.time() * 1000)
    for _ in range(count):
        upload = traffic.upload(int(time.time() * 1000))
        p.send(settings.topics().uploads.name, key=upload.item_id.encode(), value=encode_upload(upload))
    p.flush()
    p.close()
    return first, int(time.time() * 1000) + 1


@dataclass
class Row:
    encoder: str
    run: str
    offered_items_s: float | None
    items: int
    items_s: float
    vs_capacity: float
    freshness_p50_s: float | None
    freshness_p95_s: float | None
    freshness_p99_s: float | None
    duty: float | None
    recomputed: int  # requests Triton computed that the worker abandoned
    cpu: str = "-"  # share of the machine's CPU: worker / kafka / milvus / triton


class Worker:
    """One worker process and the counters read around each run."""

    def __init__(self, settings: Settings, state: Path, stack: Stack) -> None:
        (self.port,) = free_ports(1)
        self.settings = settings
        self.proc: ManagedProcess = start_worker(settings, self.port, state / "workers", loglevel="warning")
        wait_for_group(settings, [self.proc])
        records = {name: stack._procs[name].record() for name in ("kafka", "milvus", "triton")}
        self.groups = {"worker": self.proc.record(), **records}
        self.cpu = ""  # each process's share of the machine's CPU over the last run

    def mark(self) -> tuple[TritonReading, float, dict[str, float]]:
        return (
            TritonReading.read(self.settings),
            _worker_answered(self.port)[0],
            {n: cpu_seconds(r.pgid) for n, r in self.groups.items() if r},
        )

    def since(self, mark: tuple[TritonReading, float, dict[str, float]]) -> tuple[float | None, int]:
        """(duty, requests Triton computed beyond those the worker was answered) since `mark`."""
        before, answered, cpu = mark
        after = TritonReading.read(self.settings)
        now_answered = _worker_answered(self.port)[0]
        machine_s = (after.at - before.at) * (os.cpu_count() or 1)
        self.cpu = " / ".join(f"{(cpu_seconds(r.pgid) - cpu[n]) / machine_s:.2f}" for n, r in self.groups.items() if r)
        return after.duty(before, service_of(self.settings)), round(
            (after.requests - before.requests) - (now_answered - answered)
        )

    def stop(self) -> None:
        self.proc.stop()


def drain_run(worker: Worker, encoder: str, count: int, image_share: float, capacity: float) -> Row:
    """The running worker takes a backlog of `count` uploads, produced faster than it drains them;
    items/s counts the rows upserted after the producer finished, over the time they took."""
    settings = worker.settings
    mark = worker.mark()
    first, last = backlog(settings, count, image_share)
    rows = _wait_rows(settings, first, last, count, timeout_s=600)
    duty, recomputed = worker.since(mark)
    after = [r["encoded_at_ms"] for r in rows if r["encoded_at_ms"] > last]
    rate = len(after) / max((max(after) - last) / 1000, 1e-3) if after else 0.0
    return Row(
        encoder,
        "backlog",
        None,
        len(rows),
        round(rate, 1),
        round(rate / capacity, 3),
        None,
        None,
        None,
        duty,
        recomputed,
        worker.cpu,
    )


def offered_run(
    worker: Worker, encoder: str, rate: float, seconds: float, capacity: float, image_share: float, label: str
) -> Row:
    settings = worker.settings
    mark = worker.mark()
    began = int(time.time() * 1000)
    plan = LoadPlan(items_per_s=rate, interactions_per_s=0.0, duration_s=seconds, seed=int(rate), image_share=image_share)
    produced = run_producer(settings, plan, traffic=Traffic(plan, run_id=f"o{uuid.uuid4().hex[:6]}"))
    rows = _wait_rows(settings, began, int(time.time() * 1000) + 1, produced.uploads, timeout_s=300)
    duty, recomputed = worker.since(mark)
    span_s = (max(r["encoded_at_ms"] for r in rows) - min(r["created_at_ms"] for r in rows)) / 1000
    items_s = len(rows) / span_s
    return Row(
        encoder,
        label,
        round(rate, 1),
        len(rows),
        round(items_s, 1),
        round(items_s / capacity, 3),
        *_freshness(rows),
        duty,
        recomputed,
        worker.cpu,
    )


@dataclass
class Overload:
    offered_high_items_s: float
    offered_low_items_s: float
    overload_s: float
    items_s_during_overload: float
    vs_capacity_during_overload: float
    duty_during_overload: float | None
    recovery_s: float | None  # from the end of the overload to the first second whose uploads have p99 freshness < 1 s
    fresh_share_after: float | None  # share of the later seconds (to the end of the run) with p99 < 1 s
    drain_bound_s: float  # backlog at the end / (capacity - low rate): FIFO cannot recover sooner
    recomputed: int
    cpu_during_overload: str  # worker / kafka / milvus / triton / this load generator, shares of the machine
    series: list[dict[str, float | int]] = field(default_factory=list)  # `lag_series` from the overload's start, 1 s steps
    unstored_at_end: int = 0  # uploads sent (overload and recovery) with no row at the last read: still lag after the series


def overload_run(worker: Worker, capacity: float, seconds: float, low_max_s: float) -> Overload:
    """150 % of capacity for `seconds`, then 50 % until freshness is back under 1 s (or `low_max_s`)."""
    settings = worker.settings
    high, low = round(1.5 * capacity, 1), round(0.5 * capacity, 1)
    mark = worker.mark()
    own = time.process_time()
    began = int(time.time() * 1000)
    produced = run_producer(
        settings, LoadPlan(items_per_s=high, interactions_per_s=0.0, duration_s=seconds, seed=11, image_share=0.0)
    )
    ended = int(time.time() * 1000)
    duty_high, _ = worker.since(mark)
    cpu_high = f"{worker.cpu} / {(time.process_time() - own) / ((time.time() * 1000 - began) / 1000 * (os.cpu_count() or 1)):.2f}"
    during = asyncio.run(_rows(settings, began, ended))
    stored_in_window = sum(1 for r in during if r["encoded_at_ms"] < ended)
    backlog_left = produced.uploads - stored_in_window
    recovery = run_producer(
        settings, LoadPlan(items_per_s=low, interactions_per_s=0.0, duration_s=low_max_s, seed=12, image_share=0.0)
    )
    finished = int(time.time() * 1000)
    rows = _wait_rows(settings, ended, finished, int(low * low_max_s * 0.99), timeout_s=120)
    _, recomputed = worker.since(mark)
    # Read after every figure above: the overload's rows again (most were stored after it ended), for the series.
    stored = asyncio.run(_rows(settings, began, ended)) + rows
    series = lag_series(stored, began, max([finished, *(r["encoded_at_ms"] for r in stored)]))
    seconds_after: dict[int, list[float]] = {}
    for r in rows:
        seconds_after.setdefault((r["created_at_ms"] - ended) // 1000, []).append(
            (r["encoded_at_ms"] - r["created_at_ms"]) / 1000
        )
    p99 = {second: float(np.percentile(v, 99)) for second, v in sorted(seconds_after.items())}
    recovered = next((float(second) for second, value in p99.items() if value < 1.0), None)
    later = [value for second, value in p99.items() if recovered is not None and second >= recovered]
    fresh_share = round(sum(v < 1.0 for v in later) / len(later), 3) if later else None
    window_s = (ended - began) / 1000
    return Overload(
        high,
        low,
        round(window_s, 1),
        round(stored_in_window / window_s, 1),
        round(stored_in_window / window_s / capacity, 3),
        duty_high,
        recovered,
        fresh_share,
        round(backlog_left / max(capacity - low, 1e-6), 1),
        recomputed,
        cpu_high,
        series,
        produced.uploads + recovery.uploads - len(stored),
    )


# ---------------------------------------------------------------------- main


def hog() -> subprocess.Popen:
    """Another process keeping one core busy."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _duty(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(
    info: dict,
    service: ServiceTime,
    instances: int,
    capacity: float,
    rows: list[Row],
    overload: Overload | None,
    bare_real: tuple[float, float] | None,
) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['device']}; Python {info['python']}; {info['date']}.",
        "",
        f"Stand-in: {service.fixed_ms:g} ms + {service.per_item_ms:g} ms/item per batch (off the CPU), max batch 64, "
        f"{instances} Triton instance(s) sharing one simulated device; "
        f"bare-client capacity **{capacity:.1f} items/s**.",
        "",
        "| encoder | run | offered items/s | items | items/s | / capacity | freshness p50 / p95 / p99 (s) | encoder duty "
        "| recomputed | CPU: worker / kafka / milvus / triton |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        fresh = (
            "-" if r.freshness_p50_s is None else f"{r.freshness_p50_s:.2f} / {r.freshness_p95_s:.2f} / {r.freshness_p99_s:.2f}"
        )
        offered = "backlog" if r.offered_items_s is None else f"{r.offered_items_s:.1f}"
        lines.append(
            f"| {r.encoder} | {r.run} | {offered} | {r.items} | {r.items_s:.1f} | {r.vs_capacity:.2f} | {fresh} "
            f"| {_duty(r.duty)} | {r.recomputed} | {r.cpu} |"
        )
    if overload is not None:
        o = overload
        lines += [
            "",
            f"Overload: {o.offered_high_items_s:.1f} items/s (150 %) for {o.overload_s:.0f} s, "
            f"then {o.offered_low_items_s:.1f}/s (50 %): "
            f"**{o.items_s_during_overload:.1f} items/s stored during the overload "
            f"({o.vs_capacity_during_overload:.2f} of capacity)**, "
            f"encoder duty {_duty(o.duty_during_overload)}; freshness p99 back under 1 s "
            f"{'after ' + format(o.recovery_s, '.0f') + ' s' if o.recovery_s is not None else 'not within the run'} "
            f"({'-' if o.fresh_share_after is None else format(o.fresh_share_after, '.0%')} of the later seconds stayed "
            f"under 1 s) (FIFO bound: the backlog left / spare capacity = {o.drain_bound_s:.0f} s); "
            f"{o.recomputed} requests recomputed; "
            f"CPU during the overload, worker / kafka / milvus / triton / load generator: {o.cpu_during_overload}.",
        ]
    if bare_real is not None:
        lines += ["", f"sail-tiny under contention: bare client {bare_real[0]:.1f} items/s."]
    return "\n".join(lines)


def summary(
    args: argparse.Namespace,
    info: dict,
    capacity: float,
    rows: list[Row],
    overload: Overload | None,
    headline: Mapping[str, object],
) -> dict[str, object]:
    """What `write_result` records: every row (the bare client's capacity, the baseline, measured in the same run),
    the overload with its series, the headline and the run's parameters."""
    params = {
        key: getattr(args, key)
        for key in ("fixed_ms", "per_item_ms", "instances", "phase_s", "overload_s", "skip_contention", "overload_only")
    }
    return {
        "params": params,
        "runtime": {key: info[key] for key in ("torch", "device")},
        "capacity_items_s": round(capacity, 1),
        "rows": [asdict(r) for r in rows],
        "overload": asdict(overload) if overload else None,
        "headline": headline,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overload", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fixed-ms", type=float, default=20.0, help="stand-in time per batch (default 20)")
    parser.add_argument("--per-item-ms", type=float, default=2.0, help="stand-in time per item (default 2)")
    parser.add_argument(
        "--instances",
        type=int,
        default=2,
        help="Triton instances of the stand-in, sharing its one simulated device as instances on one GPU do (default 2)",
    )
    parser.add_argument("--phase-s", type=float, default=30.0, help="length of the 50 %% and 80 %% runs (default 30)")
    parser.add_argument("--overload-s", type=float, default=60.0, help="length of the 150 %% overload (default 60)")
    parser.add_argument("--skip-contention", action="store_true", help="skip the sail-tiny run beside a CPU hog")
    parser.add_argument("--overload-only", action="store_true", help="the stand-in's capacity and the overload only")
    parser.add_argument("--json", type=Path, help="write every figure and the machine here")
    args = parser.parse_args(argv)
    state = scratch_dir("sail-bench-overload-")
    service = ServiceTime(args.fixed_ms, args.per_item_ms)
    settings = local_settings(state, f"ov{uuid.uuid4().hex[:6]}.", topic_partitions=4).model_copy(
        update={
            "encoder": "standin",
            "standin_fixed_ms": service.fixed_ms,
            "standin_per_item_ms": service.per_item_ms,
            "triton_instances": args.instances,
        }
    )
    stack = Stack(settings, progress=lambda line: print(f"  {line}", flush=True))
    info = machine()
    rows: list[Row] = []
    overload = None
    bare_real = None
    try:
        stack.up()
        capacity, duty = bare_client(settings, _requests(512, 0.0), seconds=15)
        print(f"stand-in capacity (bare client): {capacity:.1f} items/s, duty {_duty(duty)}", flush=True)
        rows.append(Row("standin", "bare client", None, 0, round(capacity, 1), 1.0, None, None, None, duty, 0))
        worker = Worker(settings, state, stack)
        try:
            if not args.overload_only:
                rows.append(drain_run(worker, "standin", int(capacity * 25), 0.0, capacity))
                print(f"backlog: {rows[-1]}", flush=True)
                for fraction in (0.5, 0.8):
                    rows.append(
                        offered_run(
                            worker, "standin", fraction * capacity, args.phase_s, capacity, 0.0, f"{fraction:.0%} of capacity"
                        )
                    )
                    print(f"{fraction:.0%}: {rows[-1]}", flush=True)
            overload = overload_run(worker, capacity, args.overload_s, low_max_s=max(3 * args.overload_s, 60))
            print(f"overload: {overload}", flush=True)
        finally:
            worker.stop()
        if not (args.skip_contention or args.overload_only):
            stack.down(["triton"])
            real = settings.model_copy(update={"encoder": "sail-tiny", "triton_instances": 1})
            stack = Stack(real, progress=lambda line: print(f"  {line}", flush=True))
            stack.up(["triton"])
            spinner = hog()
            try:
                requests = _requests(256, 0.5)
                bare_real = bare_client(real, requests, seconds=30, concurrency=2)
                print(f"sail-tiny beside a CPU hog, bare client: {bare_real[0]:.1f} items/s", flush=True)
                rows.append(
                    Row("sail-tiny + hog", "bare client", None, 0, round(bare_real[0], 1), 1.0, None, None, None, bare_real[1], 0)
                )
                worker = Worker(real, state, stack)
                try:
                    rows.append(drain_run(worker, "sail-tiny + hog", int(bare_real[0] * 40), 0.5, bare_real[0]))
                    print(f"sail-tiny beside a CPU hog, pipeline: {rows[-1]}", flush=True)
                finally:
                    worker.stop()
            finally:
                spinner.kill()
    finally:
        stack.down()
    print()
    print(markdown(info, service, args.instances, capacity, rows, overload, bare_real))
    headline = {
        "standin_capacity_items_s": round(capacity, 1),
        "pipeline_vs_capacity": next((r.vs_capacity for r in rows if r.encoder == "standin" and r.run == "backlog"), None),
        "freshness_p99_s_at_80pct": next((r.freshness_p99_s for r in rows if r.run == "80% of capacity"), None),
        "overload_vs_capacity": overload.vs_capacity_during_overload if overload else None,
        "recovery_s": overload.recovery_s if overload else None,
        "fresh_share_after": overload.fresh_share_after if overload else None,
        "sail_tiny_hog_vs_bare": next(
            (r.vs_capacity for r in rows if r.encoder == "sail-tiny + hog" and r.run == "backlog"), None
        ),
        "recomputed": sum(r.recomputed for r in rows) + (overload.recomputed if overload else 0),
    }
    print(json.dumps(headline))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "service": asdict(service),
                    "instances": args.instances,
                    "rows": [asdict(r) for r in rows],
                    "overload": asdict(overload) if overload else None,
                    "headline": headline,
                },
                indent=2,
            )
        )
    name = "overload-only" if args.overload_only else "overload"
    print(f"summary: {write_result(name, summary(args, info, capacity, rows, overload, headline))}")


if __name__ == "__main__":
    main()
