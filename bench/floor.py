"""What a worker's one core can consume at all: the ceiling under the interest agent (issue 14).

    python -m bench.floor faust  BROKER TOPIC COUNT   # a Faust agent that only takes and acknowledges
    python -m bench.floor faust-quiet BROKER TOPIC COUNT   # the same with the worker's QuietMonitor
    python -m bench.floor kafka  BROKER TOPIC COUNT   # aiokafka's getmany, no Faust

Each reads COUNT records of TOPIC from the start under a new consumer group and prints one JSON
line: {"mode", "records", "seconds", "per_s"} (Faust sends the worker's stdout to its log on stderr),
timed from the first record to the COUNT-th. The Faust app has the worker's consumer settings
(buffer, commit interval, `noack_take` batches of 256) and nothing else: no decode, no table, no
sink. Run by `bench.interest` (unless --no-floor) on the backlog the worker drains, so the three rates come from
one run on one machine; that run records them in its results file (bench/results/interest*.json),
and this helper writes none itself. A benchmark helper, never a test.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid

from bench.results import scratch_dir


def _report(mode: str, records: int, first: float, last: float) -> None:
    seconds = last - first
    print(
        json.dumps(
            {
                "mode": mode,
                "records": records,
                "seconds": round(seconds, 3),
                "per_s": round(records / seconds, 1) if seconds else None,
            }
        ),
        flush=True,
    )


def faust_floor(broker: str, topic: str, count: int, quiet: bool = False) -> None:
    import faust

    extra = {}
    if quiet:  # the worker's monitor (streams/worker/quiet.py) instead of Faust's own
        from streams.worker.quiet import QuietMonitor

        extra["Monitor"] = QuietMonitor
    app = faust.App(
        f"floor-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{broker}",
        store="memory://",
        datadir=str(scratch_dir("sail-floor-")),
        web_enabled=False,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=1024,
        consumer_auto_offset_reset="earliest",
        **extra,
    )
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "first": 0.0}

    @app.agent(source)
    async def take(stream):  # type: ignore[no-untyped-def]
        async for events in stream.noack_take(256, within=0.05):
            if not seen["n"]:
                seen["first"] = time.monotonic()
            seen["n"] += len(events)
            for event in events:
                await stream.ack(event)
            if seen["n"] >= count:
                _report("faust-quiet" if quiet else "faust", seen["n"], seen["first"], time.monotonic())
                os._exit(0)  # the figure is out; a clean Faust shutdown is not what this measures

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


def kafka_floor(broker: str, topic: str, count: int) -> None:
    from aiokafka import AIOKafkaConsumer

    async def go() -> None:
        c = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker,
            group_id=f"floor-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=True,
        )
        await c.start()
        n, first = 0, 0.0
        try:
            while n < count:
                batches = await c.getmany(timeout_ms=200, max_records=1024)
                for records in batches.values():
                    if records and not n:
                        first = time.monotonic()
                    n += len(records)
            _report("kafka", n, first, time.monotonic())
        finally:
            await c.stop()

    asyncio.run(go())


if __name__ == "__main__":
    mode, broker, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if mode == "faust-quiet":
        faust_floor(broker, topic, count, quiet=True)
    else:
        {"faust": faust_floor, "kafka": kafka_floor}[mode](broker, topic, count)
