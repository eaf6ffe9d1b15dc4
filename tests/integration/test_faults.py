"""Faults on the real stack (first scenarios of issue 7): a worker killed mid-stream and Milvus down.
The end state must equal a recomputation from the event log: nothing lost, nothing applied twice."""

from __future__ import annotations

import os
import signal
import time
import uuid

import numpy as np
import pytest

from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from streams.broker import ensure_topics, group_lag, producer
from streams.interest import InterestParams, fold_interactions, interest_vectors
from streams.produce import LoadPlan, Traffic
from tests.integration.test_streaming import _drained, _items, _user_vectors, _wait
from topology.codec import encode_interaction, encode_upload
from topology.settings import Settings

pytestmark = pytest.mark.integration


def _own(settings: Settings, name: str) -> Settings:
    run = uuid.uuid4().hex[:6]
    own = settings.model_copy(update={"app_id": f"{name}{run}", "topic_prefix": f"{name}{run}."})
    ensure_topics(own.kafka_bootstrap, own.kafka_security(), own.topics().all())
    return own


def _stream(settings: Settings, seed: int, uploads: int, interactions: int) -> tuple[list, list]:
    traffic = Traffic(LoadPlan(users=30, seed=seed, image_share=0.3), run_id=f"f{uuid.uuid4().hex[:6]}")
    now = int(time.time() * 1000)
    items = [traffic.upload(now) for _ in range(uploads)]
    events = [e for e in (traffic.interaction(now + k) for k in range(interactions)) if e is not None]
    p = producer(settings.kafka_bootstrap, settings.kafka_security(), settings.max_message_bytes)
    topics = settings.topics()
    for upload in items:
        p.send(topics.uploads.name, key=upload.item_id.encode(), value=encode_upload(upload))
    for event in events:
        p.send(topics.interactions.name, key=event.user_id.encode(), value=encode_interaction(event))
    p.flush()
    p.close()
    return items, events


def _check_end_state(settings: Settings, items: list, events: list) -> None:
    ids = [u.item_id for u in items]
    stored = _items(settings, ids)
    assert set(stored) == set(ids)  # every upload, once (keyed rows)
    params = InterestParams(settings.interest_window, settings.interest_half_life_s, negative_weight=settings.interest_negative_weight)
    users = sorted({e.user_id for e in events})
    got = _user_vectors(settings, users)
    wrong = []
    for user in users:
        log = [e for e in events if e.user_id == user]
        expected = interest_vectors(fold_interactions(log, params), stored, params)
        if expected is None:
            if user in got:
                wrong.append(f"{user}: unexpected row")
            continue
        if user not in got:
            wrong.append(f"{user}: missing row")
        elif not np.allclose(got[user][0], expected[0], atol=1e-5) or got[user][1] != len(log):
            diff = float(np.abs(got[user][0] - expected[0]).max())
            wrong.append(f"{user}: event_count {got[user][1]} vs log {len(log)}, max |diff| {diff:.2e}")
    assert not wrong, f"{len(wrong)} of {len(users)} users differ from the recomputation: " + "; ".join(wrong)


def test_worker_killed_mid_stream_and_restarted_loses_nothing_and_applies_nothing_twice(stack: Stack, settings: Settings) -> None:
    own = _own(settings, "kill")
    (port,) = free_ports(1)
    worker = start_worker(own, port, stack.state_dir / "faults")
    try:
        wait_for_group(own, [worker])
        items, events = _stream(own, seed=21, uploads=120, interactions=1500)
        time.sleep(3.0)  # mid-stream: some batches committed, some in flight
        record = worker.record()
        assert record is not None
        os.killpg(record.pgid, signal.SIGKILL)
        worker.stop()
        worker = start_worker(own, port, stack.state_dir / "faults")
        wait_for_group(own, [worker])
        _wait(lambda: _drained(own), timeout_s=180, what="the restarted worker to catch up")
        _check_end_state(own, items, events)
    finally:
        worker.stop()


def test_milvus_down_and_back_means_retry_not_loss(stack: Stack, settings: Settings) -> None:
    own = _own(settings, "mdown")
    (port,) = free_ports(1)
    worker = start_worker(own, port, stack.state_dir / "faults")
    try:
        wait_for_group(own, [worker])
        stack.down(["milvus"])
        try:
            items, events = _stream(own, seed=22, uploads=40, interactions=300)
            time.sleep(8.0)  # the worker retries with backoff meanwhile
            assert worker.is_running()
            lag = group_lag(own.kafka_bootstrap, own.kafka_security(), own.app_id, own.topics().uploads.name)
            assert sum(lag.values()) > 0  # nothing acknowledged while Milvus is down
        finally:
            stack.up(["milvus"])
        _wait(lambda: _drained(own), timeout_s=180, what="the worker to recover after Milvus returned")
        _check_end_state(own, items, events)
    finally:
        worker.stop()
