"""Kafka SASL and the Milvus token on the real stack, and the audit that no secret leaks: a worker
authenticates to a SASL_PLAINTEXT broker (PLAIN) the project starts itself, processes good and bad
input, and neither its log, its metrics, its status page, the dead letters, the CLI's output nor the
broker's log ever shows the Kafka password or the Milvus token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from streams.sinks.kafka import BrokerUnavailable, check_broker, consumer
from tests.support.metrics import sample
from tests.support.streaming import clip_upload, send, stored_items, wait_until
from topology import reasons
from topology.codec import encode_upload
from topology.settings import KafkaSecurity, Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secure(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Stack, list[str]]]:
    """A second, SASL-only broker; settings that carry a Kafka password and a Milvus token."""
    kafka_password, milvus_secret = f"kpw{uuid.uuid4().hex}", f"mtok{uuid.uuid4().hex}"
    port, controller = free_ports(2)
    settings = stack.settings.model_copy(
        update={
            "kafka_bootstrap": f"127.0.0.1:{port}",
            "kafka_controller_port": controller,
            "state_dir": tmp_path_factory.mktemp("sasl"),
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": "PLAIN",
            "kafka_sasl_username": "sail",
            "kafka_sasl_password": SecretStr(kafka_password),
            "milvus_token": SecretStr(f"root:{milvus_secret}"),
        }
    )
    broker = Stack(settings)
    try:
        broker.up(["kafka"])  # topics are created over SASL too
        yield settings, broker, [kafka_password, milvus_secret]
    finally:
        broker.down(["kafka"])


def test_the_sasl_broker_refuses_a_wrong_password_and_the_error_does_not_echo_it(
    secure: tuple[Settings, Stack, list[str]],
) -> None:
    settings, _, _ = secure
    wrong = f"wrong{uuid.uuid4().hex}"
    security = KafkaSecurity(
        protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="sail", sasl_password=SecretStr(wrong)
    )
    with pytest.raises(BrokerUnavailable) as caught:
        check_broker(settings.kafka_bootstrap, security, timeout_s=5.0)
    assert wrong not in str(caught.value)
    assert check_broker(settings.kafka_bootstrap, settings.kafka_security()).broker_count == 1  # the right one works


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode("utf-8", "replace")


def test_a_worker_authenticates_and_no_secret_appears_anywhere(secure: tuple[Settings, Stack, list[str]], stack: Stack) -> None:
    settings, broker, secrets = secure
    (port,) = free_ports(1)
    worker = start_worker(settings, port, settings.state_dir / "workers", loglevel="debug")
    try:
        wait_for_group(settings, [worker])
        tag = uuid.uuid4().hex[:6]
        uploads = [clip_upload(tag, n) for n in range(3)]
        topics = settings.topics()
        send(
            settings,
            [(topics.uploads.name, u.item_id.encode(), encode_upload(u)) for u in uploads]
            + [(topics.uploads.name, b"k", b"\xc1 not msgpack")],
        )
        wait_until(
            lambda: len(stored_items(settings, [u.item_id for u in uploads])) == 3,
            what="the uploads in Milvus via the SASL broker",
        )
        letters: list[bytes] = []

        def dead_lettered() -> bool:
            c = consumer(
                settings.kafka_bootstrap,
                settings.kafka_security(),
                topics.dead_letters.name,
                auto_offset_reset="earliest",
                consumer_timeout_ms=2000,
            )
            letters[:] = [(r.key or b"") + r.value for r in c]
            c.close()
            return bool(letters)

        wait_until(dead_lettered, what="the malformed upload in the dead-letter topic")
        wait_until(
            lambda: any(
                r["topic"] == topics.uploads.name for r in json.loads(_get(f"http://127.0.0.1:{port}/status.json"))["lag"]
            ),
            what="a lag sample on the status page",
        )
        seen = {
            "worker log": worker.log_path.read_text(errors="replace"),
            "/metrics": _get(f"http://127.0.0.1:{port}/metrics"),
            "/status": _get(f"http://127.0.0.1:{port}/status"),
            "/status.json": _get(f"http://127.0.0.1:{port}/status.json"),
            "dead letters": b"".join(letters).decode("utf-8", "replace"),
            "broker log": Path(broker._procs["kafka"].log_path).read_text(errors="replace"),
        }
        env = {**os.environ, **settings.as_env()}
        for command in (["settings"], ["lag"]):
            run = subprocess.run(
                [sys.executable, "-m", "deploy.cli", *command], env=env, capture_output=True, text=True, timeout=120, check=False
            )
            assert run.returncode == 0, run.stderr[-2000:]
            seen[f"sail-stream {' '.join(command)}"] = run.stdout + run.stderr
        assert settings.app_id in seen["sail-stream lag"] and "**********" in seen["sail-stream settings"]  # both answered
        # every page searched has what it exists to show, so "no secret in it" is not "nothing in it"
        assert (
            sample(seen["/metrics"], "sail_events", agent="content") >= 4
            and sample(seen["/metrics"], "sail_dead_letters", reason=reasons.DECODE_MSGPACK) == 1
        )
        assert topics.uploads.name in seen["/status"] and topics.uploads.name in seen["/status.json"]
        assert "dead-letter reason=decode.msgpack" in seen["worker log"] and "not msgpack" in seen["dead letters"]
        leaks = [(where, secret[:4]) for where, text in seen.items() for secret in secrets if secret in text]
        assert not leaks, f"secrets found in: {leaks}"
    finally:
        worker.stop()
