"""A slow encoder is waited for, not stormed (issue 12), on the real stack: a worker encodes through a
Triton serving the measurable stand-in (`encoders/bench_double.py`), whose service time is raised twenty-
fold mid-run and then restored. Every upload is stored and published once, none is dead-lettered,
Triton computed no request the worker abandoned, and the lag returns to zero by itself."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from deploy.local.process import ManagedProcess
from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from encoders.bench_double import ServiceTime, write_control
from streams.sinks.kafka import consumer, ensure_topics, producer
from tests.support.metrics import sample, scrape
from tests.support.streaming import clip_upload, dead_letters, drained, stored_items, wait_until
from topology.codec import encode_upload
from topology.settings import Settings

pytestmark = pytest.mark.integration

NORMAL = ServiceTime(fixed_ms=20, per_item_ms=2)
SLOW = ServiceTime(fixed_ms=1500, per_item_ms=40)  # ~1.6-2 s per batch: the old fixed 2 s deadline retried these three times


@pytest.fixture(scope="module")
def standin(
    stack: Stack, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, Settings, ManagedProcess]]:
    """A Triton serving the stand-in on free ports, and a worker on its own group and topics using it."""
    grpc, http, metrics, web = free_ports(4)
    run = uuid.uuid4().hex[:6]
    own = settings.model_copy(
        update={
            "app_id": f"se{run}",
            "topic_prefix": f"se{run}.",
            "encoder": "standin",
            "standin_fixed_ms": NORMAL.fixed_ms,
            "standin_per_item_ms": NORMAL.per_item_ms,
            "triton_url": f"grpc://127.0.0.1:{grpc}",
            "triton_http_port": http,
            "triton_metrics_port": metrics,
            "state_dir": tmp_path_factory.mktemp("standin"),
        }
    )
    triton = Stack(own)
    triton.up(["triton"])
    ensure_topics(own.kafka_bootstrap, own.kafka_security(), own.topics().all())
    worker = start_worker(own, web, stack.state_dir / "slow-encoder")
    try:
        wait_for_group(own, [worker])
        yield triton, own, worker
    finally:
        worker.stop()
        triton.down(["triton"])


def _published(settings: Settings, ids: set[str]) -> Counter[str]:
    c = consumer(
        settings.kafka_bootstrap,
        settings.kafka_security(),
        settings.topics().item_embeddings.name,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    try:
        return Counter(key for r in c if (key := r.key.decode()) in ids)
    finally:
        c.close()


def test_a_slowed_encoder_is_waited_for_and_every_upload_is_stored_once(standin: tuple[Stack, Settings, ManagedProcess]) -> None:
    triton, settings, worker = standin
    tag = uuid.uuid4().hex[:6]
    control = triton.standin_control
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
    uploads = []
    phases = [(NORMAL, 20), (SLOW, 60), (NORMAL, 20)]  # (service time, uploads at ~10/s)
    for service, count in phases:
        write_control(control, ServiceTime(service.fixed_ms, service.per_item_ms, settings.embedding_dim))
        for _ in range(count):
            upload = clip_upload(tag, len(uploads))
            uploads.append(upload)
            p.send(settings.topics().uploads.name, key=upload.item_id.encode(), value=encode_upload(upload))
            p.flush()
            time.sleep(0.1)
    p.close()
    ids = [u.item_id for u in uploads]
    wait_until(lambda: len(stored_items(settings, ids)) == len(ids), timeout_s=120, what="every upload in Milvus")
    wait_until(lambda: drained(settings), timeout_s=60, what="lag back to 0")
    worker.ensure_alive()

    assert not [d for d in dead_letters(settings) if tag in d.original.decode(errors="replace")]
    assert _published(settings, set(ids)) == Counter({i: 1 for i in ids})  # each upload encoded, stored and published once

    web = f"http://127.0.0.1:{worker.name.rsplit('-', 1)[1]}/metrics"
    page = scrape(web)
    ok = sample(page, "sail_triton_requests", outcome="ok")
    abandoned = sample(page, "sail_triton_requests", outcome="abandoned")
    computed = sample(
        scrape(f"http://127.0.0.1:{settings.triton_metrics_port}/metrics"), "nv_inference_request_success", model="sail_encoder"
    )
    assert ok > 0 and abandoned == 0
    assert computed == ok  # Triton computed exactly the requests the worker waited for: nothing twice
    assert sample(page, "sail_content_batch_items") >= 1
