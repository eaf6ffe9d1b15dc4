"""Faust's topic declarations at start-up are retried while Kafka's answer is retriable (a worker
restarted while the broker its metadata names as controller was down exited with NodeNotReadyError)."""

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import NodeNotReadyError, TopicAuthorizationFailedError
from faust.transport.drivers import aiokafka as driver

from streams.worker.app import install_topic_creation_retry


def _install(monkeypatch: pytest.MonkeyPatch, failures: list[Exception], deadline_s: float = 30.0) -> dict[str, int]:
    seen = {"tries": 0, "refreshes": 0}

    async def faust_create_topic(self: Any, owner: Any, client: Any, topic: str, *args: Any, **kwargs: Any) -> None:
        seen["tries"] += 1
        if failures:
            raise failures.pop(0)

    monkeypatch.setattr(driver.Transport, "_create_topic", faust_create_topic)
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    install_topic_creation_retry(deadline_s=deadline_s)
    return seen


async def _no_sleep(seconds: float) -> None:
    return None


def _declare(seen: dict[str, int]) -> None:
    async def refresh() -> None:
        seen["refreshes"] += 1

    client = SimpleNamespace(force_metadata_update=refresh)
    asyncio.run(driver.Transport._create_topic(None, None, client, "app-__assignor-__leader", 1, 1))


def test_a_declaration_sent_to_a_down_broker_is_retried_with_fresh_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _install(monkeypatch, [NodeNotReadyError("node 3"), RuntimeError("Invalid controller: 3")])
    _declare(seen)
    assert seen == {"tries": 3, "refreshes": 2}


def test_an_error_kafka_will_repeat_is_raised_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _install(monkeypatch, [TopicAuthorizationFailedError("no ACL")])
    with pytest.raises(TopicAuthorizationFailedError):
        _declare(seen)
    assert seen["tries"] == 1


def test_a_broker_down_past_the_deadline_fails_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _install(monkeypatch, [NodeNotReadyError("node 3")] * 100, deadline_s=0.0)
    with pytest.raises(NodeNotReadyError):
        _declare(seen)
    assert seen["tries"] == 1
