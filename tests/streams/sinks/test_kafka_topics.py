"""`ensure_topics` on a cluster that is still forming: a try that meets a node its metadata does not
know yet is made again with a fresh admin client; other refusals are raised at once."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import InvalidReplicationFactorError, UnknownBrokerIdError

from streams.sinks import kafka as sink
from topology.settings import KafkaSecurity
from topology.topics import TopicSpec

SPECS = [
    TopicSpec(name="t.uploads", partitions=3, key="item_id", retention_ms=-1, compacted=False, max_message_bytes=1 << 20),
    TopicSpec(name="t.dead", partitions=1, key="item_id", retention_ms=-1, compacted=False, max_message_bytes=1 << 20),
]


class Admin:
    """What `ensure_topics` calls of kafka-python's admin client; `fail` is raised by the first creation."""

    def __init__(self, existing: set[str], fail: Exception | None) -> None:
        self.existing, self.fail, self.closed = existing, fail, False

    def list_topics(self) -> list[str]:
        return sorted(self.existing)

    def create_topics(self, topics: list[Any], timeout_ms: int) -> None:
        if self.fail is not None:
            raise self.fail
        self.existing.update(t.name for t in topics)

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"name": n, "partitions": [{}] * 3} for n in names]

    def close(self) -> None:
        self.closed = True


def admins(monkeypatch: pytest.MonkeyPatch, failures: list[Exception | None]) -> list[Admin]:
    """Each `_admin` call hands out the next stand-in, failing as `failures` says (one cluster's topics)."""
    made: list[Admin] = []
    cluster: set[str] = set()

    def admin(bootstrap: str, security: KafkaSecurity, timeout_s: float) -> Admin:
        made.append(Admin(cluster, failures[len(made)]))
        return made[-1]

    monkeypatch.setattr(sink, "_admin", admin)
    monkeypatch.setattr(sink, "ADMIN_PAUSE_S", 0.0)
    return made


def test_an_unknown_controller_node_is_tried_again_with_fresh_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    made = admins(monkeypatch, [UnknownBrokerIdError(3), None])
    assert sink.ensure_topics("b:9092", KafkaSecurity(), SPECS) == ["t.uploads", "t.dead"]
    assert len(made) == 2 and all(a.closed for a in made)
    assert made[-1].existing == {"t.uploads", "t.dead"}


def test_a_refusal_that_another_try_cannot_change_is_raised_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made = admins(monkeypatch, [InvalidReplicationFactorError("3 > 1 broker"), None])
    with pytest.raises(sink.BrokerUnavailable, match=r"refused topic administration: .*InvalidReplicationFactor"):
        sink.ensure_topics("b:9092", KafkaSecurity(), SPECS)
    assert len(made) == 1 and made[0].closed


def test_a_cluster_that_never_settles_is_reported_after_the_last_try(monkeypatch: pytest.MonkeyPatch) -> None:
    made = admins(monkeypatch, [UnknownBrokerIdError(3)] * sink.ADMIN_TRIES)
    with pytest.raises(sink.BrokerUnavailable, match="UnknownBrokerIdError"):
        sink.ensure_topics("b:9092", KafkaSecurity(), SPECS)
    assert len(made) == sink.ADMIN_TRIES
