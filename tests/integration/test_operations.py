"""Operators' view of a real run: /metrics, the status page in headless Chromium, the verdict."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from streams.sinks.kafka import ensure_topics, producer
from tests.support.streaming import milvus_rows
from topology.codec import encode_interaction, encode_upload
from topology.messages import Action, ContentUpload, Interaction
from topology.settings import Settings

pytestmark = pytest.mark.integration


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def _chromium(url: str, screenshot: Path) -> str:
    """The page's DOM after rendering in real headless Chromium (and a screenshot of it)."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is needed (deploy/local/bootstrap.sh installs it with apt-get)"
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={screenshot.parent / 'chromium-profile'}",
    ]
    subprocess.run(
        [*flags, "--window-size=1100,1400", f"--screenshot={screenshot}", url], capture_output=True, timeout=60, check=True
    )
    return subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=60, check=True).stdout


def _likes(settings: Settings, tag: str, count: int, first: int, users: int = 7, items: int = 12) -> None:
    """`count` more likes by `_traffic`'s users on its items (event ids from `first` on)."""
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
    for n in range(first, first + count):
        event = Interaction(
            event_id=f"{tag}-e{n}",
            user_id=f"{tag}-u{n % users}",
            item_id=f"{tag}-i{n % items}",
            action=Action.LIKE,
            timestamp_ms=int(time.time() * 1000),
        )
        p.send(settings.topics().interactions.name, key=event.user_id.encode(), value=encode_interaction(event))
    p.flush()
    p.close()


def _traffic(settings: Settings, tag: str, items: int, interactions: int) -> None:
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
    topics = settings.topics()
    for n in range(items):
        upload = ContentUpload(
            item_id=f"{tag}-i{n}", creator_id="c", created_at_ms=int(time.time() * 1000), title=f"clip {n} of {tag}"
        )
        p.send(topics.uploads.name, key=upload.item_id.encode(), value=encode_upload(upload))
    p.flush()
    _likes(settings, tag, count=interactions, first=0, items=items)
    p.send(topics.uploads.name, key=b"junk", value=b"\xc1 not msgpack")
    p.flush()
    p.close()


def test_metrics_status_page_and_verdict_of_a_real_run(stack: Stack, settings: Settings, tmp_path: Path) -> None:
    # one lag sample a second; a long stall window so that a paused worker reads as degraded (growing lag)
    # Own topics and group, so that other tests' traffic does not count here.
    run = uuid.uuid4().hex[:6]
    # Every positive interaction is checked for the online hit rate here (the default samples 2 %).
    ops = settings.model_copy(
        update={
            "app_id": f"ops{run}",
            "topic_prefix": f"ops{run}.",
            "status_interval_s": 1.0,
            "stall_window_s": 300.0,
            "online_hit_sample": 1.0,
        }
    )
    ensure_topics(ops.kafka_bootstrap, ops.kafka_security(), ops.topics().all())
    port_a, port_b = free_ports(2)
    a = start_worker(ops, port_a, stack.state_dir / "ops")
    b = start_worker(ops, port_b, stack.state_dir / "ops")
    try:
        wait_for_group(ops, [a, b])
        tag = uuid.uuid4().hex[:6]
        sent_at_s = time.time()  # every upload below is created after this (created_at_ms is wall-clock time)
        _traffic(ops, tag, items=12, interactions=60)
        deadline = time.monotonic() + 90
        # The page shown is that of a worker that stored items: freshness is each worker's own, and the 12
        # items can all land on the partitions of one worker (CI, 2026-12-03: worker A held only partition 0,
        # where only the junk record went, and its page had no freshness to show).
        shown = port_a
        while time.monotonic() < deadline:
            status = json.loads(_get(f"http://127.0.0.1:{port_a}/status.json"))
            fresh = [port for port in (port_a, port_b) if json.loads(_get(f"http://127.0.0.1:{port}/status.json"))["freshness_s"]]
            # a lag sample taken after the traffic was written (an earlier one reads "0 behind" too)
            sampled = sum(r["end"] for r in status["lag"] if r["topic"] == ops.topics().uploads.name) >= 13
            if status["verdict"] == "healthy" and sampled and not any(r["messages_behind"] for r in status["lag"]) and fresh:
                shown = fresh[0]
                break
            time.sleep(1)
        # on a miss, what the workers logged (a slow first batch, a rebalance, a stall) beside the reasons
        assert status["verdict"] == "healthy" and fresh, (status["reasons"], fresh, a.log_tail(25), b.log_tail(25))

        per_worker = [_get(f"http://127.0.0.1:{port}/metrics").decode() for port in (port_a, port_b)]
        read_at_s = time.time()  # every freshness on these pages was observed before this
        metrics = "".join(per_worker)
        for series in (
            "sail_consumer_lag_messages",
            "sail_consumer_lag_seconds",
            "sail_item_freshness_seconds_bucket",
            "sail_user_freshness_seconds_count",
            "sail_triton_request_seconds_count",
            "sail_triton_batch_items_count",
            "sail_milvus_upsert_seconds_count",
            "sail_dead_letters_total",
            "sail_events_total",
            "sail_dependency_up",
            "sail_online_hit_checks_total",
            "sail_online_hits_total",
        ):
            assert series in metrics, series

        def total(prefix: str) -> float:
            return sum(
                float(line.rsplit(" ", 1)[1]) for text in per_worker for line in text.splitlines() if line.startswith(prefix)
            )

        upserted = total('sail_item_freshness_seconds_count{stage="upserted"}')
        assert upserted == 12  # both workers together stored every item, each once
        # In seconds, checked without a speed limit: an item's freshness (upload creation to upsert acknowledged) is at
        # least its row's encoded_at - created_at (it is encoded before it is upserted) and at most the time this test
        # gave it (created after sent_at_s, observed before read_at_s; created_at_ms is rounded down, hence 1 ms).
        rows = milvus_rows(ops, ops.collections()[0].name, [f"{tag}-i{n}" for n in range(12)], ["created_at_ms", "encoded_at_ms"])
        assert len(rows) == 12
        encoded_s = sum(row["encoded_at_ms"] - row["created_at_ms"] for row in rows.values()) / 1000
        freshness_s = total('sail_item_freshness_seconds_sum{stage="upserted"}')
        assert 0 < freshness_s and encoded_s - 1e-6 <= freshness_s <= upserted * (read_at_s - sent_at_s + 0.001)
        assert total('sail_dead_letters_total{reason="decode.msgpack"') == 1
        assert total('sail_events_total{agent="content"}') == 13
        # Every recall channel sampled, each on its own. A user's probe is taken against their state before the
        # batch, and a user without a collaborative vector yet is checked on dense and fused only: parked likes
        # come back together once their items are stored, so a second wave of likes by the same users is what the
        # collab channel is checked on.
        _likes(ops, tag, count=21, first=60)
        deadline = time.monotonic() + 60
        while True:
            per_worker = [_get(f"http://127.0.0.1:{port}/metrics").decode() for port in (port_a, port_b)]
            checked = {ch: total(f'sail_online_hit_checks_total{{channel="{ch}"}}') for ch in ("dense", "collab", "fused")}
            if all(checked.values()) or time.monotonic() > deadline:
                break
            time.sleep(1)
        for channel, checks in checked.items():
            assert checks > 0 and 0 <= total(f'sail_online_hits_total{{channel="{channel}"}}') <= checks, channel

        dom = _chromium(f"http://127.0.0.1:{shown}/status", tmp_path / "healthy.png")
        assert '<span id="verdict">healthy</span>' in dom
        for shown_text in ("content-uploads", 'id="dead-letters"', "triton: up", "p99:"):
            assert shown_text in dom, shown_text
        for chart_id in ("chart-lag", "chart-freshness", "chart-throughput", "chart-hit-rate"):
            assert f'<figure id="{chart_id}">' in dom, chart_id  # the trend charts, drawn by the browser as inline SVG
        assert '<svg id="svg-chart-lag"' in dom and "<polyline" in dom
        assert "online hit rate @50:" in dom and "per recall channel" in dom and "fused (served)" in dom
        dead = [json.loads(_get(f"http://127.0.0.1:{port}/status.json"))["dead_letters"] for port in (port_a, port_b)]
        assert sum(d.get("decode.msgpack", 0) for d in dead) == 1  # each worker shows its own dead letters

        # Stop worker B (SIGSTOP: a hung worker keeps its partitions) and keep producing.
        record = b.record()
        assert record is not None
        os.killpg(record.pgid, signal.SIGSTOP)
        stop = threading.Event()

        def keep_producing() -> None:
            while not stop.is_set():
                _traffic(ops, uuid.uuid4().hex[:6], items=6, interactions=30)
                time.sleep(0.7)

        feeder = threading.Thread(target=keep_producing, daemon=True)
        feeder.start()
        try:
            verdict = "healthy"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and verdict == "healthy":
                time.sleep(1.0)
                verdict = json.loads(_get(f"http://127.0.0.1:{port_a}/status.json"))["verdict"]
            dom = _chromium(f"http://127.0.0.1:{port_a}/status", tmp_path / "degraded.png")
        finally:
            stop.set()
            feeder.join()
            os.killpg(record.pgid, signal.SIGCONT)
        assert verdict == "degraded"
        assert '<span id="verdict">degraded</span>' in dom and "lag growing" in dom
        shutil.copy(tmp_path / "degraded.png", stack.state_dir / "status-degraded.png")
    finally:
        a.stop()
        b.stop()
