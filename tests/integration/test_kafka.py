"""The real broker: codecs through Kafka, key partitioning, and a Faust (aiokafka) worker."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.sinks.kafka import (
    BrokerUnavailable,
    check_broker,
    consumer,
    describe_topics,
    ensure_topics,
    group_lag,
    oldest_pending,
    producer,
)
from topology.codec import decode_interaction, decode_upload, encode_interaction, encode_upload
from topology.messages import Action, ContentUpload, Interaction, Media
from topology.settings import Settings

pytestmark = pytest.mark.integration


def _consume_all(
    settings: Settings, topic: str, count: int, timeout_s: float = 30.0, alive: Callable[[], bool] = lambda: True
) -> list:
    c = consumer(
        settings.kafka_bootstrap, settings.kafka_security(), topic, auto_offset_reset="earliest", consumer_timeout_ms=1000
    )
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < count and time.monotonic() < deadline and alive():
            records.extend(c)
    finally:
        c.close()
    return records


def test_broker_is_kafka_4_in_kraft_mode_with_the_specified_topics(settings: Settings) -> None:
    info = check_broker(settings.kafka_bootstrap, settings.kafka_security())
    assert info.broker_count == 1 and info.cluster_id
    partitions = describe_topics(settings.kafka_bootstrap, settings.kafka_security(), [t.name for t in settings.topics().all()])
    assert partitions == {t.name: settings.topic_partitions for t in settings.topics().all()}


def test_ensure_topics_is_idempotent(settings: Settings) -> None:
    assert ensure_topics(settings.kafka_bootstrap, settings.kafka_security(), settings.topics().all()) == []


def test_a_topic_the_brokers_do_not_know_is_an_error_never_no_lag(settings: Settings) -> None:
    # The retry agent dead-letters a waiting interaction once the uploads topic has no lag left before it:
    # a topic whose partitions cannot be seen must not read as fully processed.
    with pytest.raises(BrokerUnavailable, match="no partitions known for no-such-topic"):
        oldest_pending(settings.kafka_bootstrap, settings.kafka_security(), settings.app_id, "no-such-topic")


def test_uploads_and_interactions_cross_the_broker_intact(settings: Settings) -> None:
    topics = settings.topics()
    uploads = [
        ContentUpload(
            item_id=f"item-{i}",
            creator_id=f"creator-{i % 3}",
            created_at_ms=1_700_000_000_000 + i,
            title=f"clip {i}",
            tags=("cats", "funny"),
            cover=Media.inline(bytes([i]) * 2048),
            frames=(Media.at(f"file:///frames/{i}.jpg"),),
        )
        for i in range(30)
    ]
    events = [
        Interaction(event_id=f"e{i}", user_id=f"u{i % 4}", item_id=f"item-{i}", action=Action.LIKE, timestamp_ms=i, dwell_ms=1500)
        for i in range(30)
    ]
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
    for upload in uploads:
        p.send(topics.uploads.name, key=upload.item_id.encode(), value=encode_upload(upload))
    for event in events:
        p.send(topics.interactions.name, key=event.user_id.encode(), value=encode_interaction(event))
    p.flush()
    p.close()

    got_uploads = _consume_all(settings, topics.uploads.name, len(uploads))
    got_events = _consume_all(settings, topics.interactions.name, len(events))
    assert sorted((decode_upload(r.value) for r in got_uploads), key=lambda u: u.created_at_ms) == uploads
    assert sorted((decode_interaction(r.value) for r in got_events), key=lambda e: e.timestamp_ms) == events
    # Keyed by user: each user's events sit in one partition, in order.
    by_user: dict[bytes, set[int]] = {}
    for record in got_events:
        by_user.setdefault(record.key, set()).add(record.partition)
    assert all(len(parts) == 1 for parts in by_user.values())


def test_oversized_message_is_refused_by_the_broker_not_truncated(settings: Settings) -> None:
    from kafka.errors import KafkaError, MessageSizeTooLargeError

    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes * 2)
    try:
        future = p.send(settings.topics().uploads.name, key=b"big", value=b"\x00" * (settings.max_message_bytes + 10_000))
        with pytest.raises((MessageSizeTooLargeError, KafkaError)):
            future.get(timeout=30)
    finally:
        p.close()


FAUST_APP = Path(__file__).with_name("faust_probe_app.py")


def test_faust_worker_consumes_with_aiokafka_and_commits(settings: Settings, tmp_path: Path) -> None:
    """faust-streaming (aiokafka) against this Kafka release: consume, table changelog, commit."""
    # Its own source topic, shaped like the uploads topic, so other tests' uploads do not mix in.
    source = dataclasses.replace(settings.topics().uploads, name=f"{settings.topic_prefix}faust-probe-in")
    out = dataclasses.replace(source, name=f"{settings.topic_prefix}faust-probe-out", partitions=1)
    ensure_topics(settings.kafka_bootstrap, settings.kafka_security(), [source, out])
    good = [ContentUpload(item_id=f"faust-{i}", creator_id="c", created_at_ms=i) for i in range(20)]
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
    for upload in good[:10]:
        p.send(source.name, key=upload.item_id.encode(), value=encode_upload(upload))
    p.send(source.name, key=b"junk", value=b"\xc1 not msgpack")
    for upload in good[10:]:
        p.send(source.name, key=upload.item_id.encode(), value=encode_upload(upload))
    p.flush()
    p.close()

    env = {
        **os.environ,
        "PROBE_BROKER": settings.kafka_bootstrap,
        "PROBE_APP_ID": f"{settings.topic_prefix}faust-probe",
        "PROBE_SOURCE": source.name,
        "PROBE_OUT": out.name,
        "PROBE_PARTITIONS": str(settings.topic_partitions),
        "PROBE_DATADIR": str(tmp_path),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "faust_probe_app", "worker", "-l", "warn", "--without-web"],
        cwd=FAUST_APP.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lag: dict[int, int] = {}
    try:
        records = _consume_all(settings, out.name, len(good) + 1, timeout_s=120, alive=lambda: worker.poll() is None)
        deadline = time.monotonic() + 60  # Faust commits every few seconds once events are acked
        while time.monotonic() < deadline and worker.poll() is None:
            lag = group_lag(settings.kafka_bootstrap, settings.kafka_security(), env["PROBE_APP_ID"], source.name)
            if lag and not any(lag.values()):
                break
            time.sleep(1)
    finally:
        worker.terminate()
        log = worker.communicate(timeout=60)[0].decode(errors="replace")
    values = sorted(r.value.decode() for r in records)
    expected = sorted([u.item_id for u in good] + ["bad:decode.msgpack"])
    assert values == expected, log[-3000:]
    assert lag == {p: 0 for p in range(settings.topic_partitions)}, f"committed offsets lag behind: {lag}\n{log[-3000:]}"
