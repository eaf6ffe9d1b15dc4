"""The item-wait decision: an interaction is dead-lettered only once every earlier upload was processed."""

import asyncio
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from streams.worker import waiting
from streams.worker.waiting import Held, ItemWait, Lot, processed_until
from topology.messages import Action, Interaction, RetryEnvelope


def test_processed_until_is_the_oldest_pending_record_and_unknown_counts_as_nothing_processed() -> None:
    assert processed_until([]) == float("inf")  # no lag anywhere: everything ever written is processed
    assert processed_until([9_000, 6_000]) == 6_000  # an interaction seen before 6 s has every earlier upload
    assert 5_000 < processed_until([6_000, 9_000]) and not 5_000 < processed_until([6_000, 5_000])
    assert processed_until([6_000, None]) == float("-inf")  # lag whose age is unknown: nothing counts


def _held(item: str, offset: int, read_ms: int = 0, first_seen_ms: int = 0) -> Held:
    event = Interaction(event_id=f"e{offset}", user_id="u", item_id=item, action=Action.LIKE, timestamp_ms=1)
    envelope = RetryEnvelope(b"x", "t", 0, offset, 0, first_seen_ms, first_seen_ms)
    record = SimpleNamespace(message=SimpleNamespace(tp="tp", offset=offset))  # the retry topic's event, as Faust gives it
    return Held(event=record, stream=None, envelope=envelope, interaction=event, read_ms=read_ms)


def test_the_lot_holds_by_item_and_gives_back_each_interaction_once() -> None:
    lot = Lot()
    for item, offset in (("a", 1), ("b", 2), ("a", 3)):
        lot.add(_held(item, offset))
    assert len(lot) == 3 and sorted(lot.items()) == ["a", "b"]
    taken = lot.take(["a", "missing"])
    assert sorted(h.envelope.offset for h in taken) == [1, 3]
    assert len(lot) == 1 and lot.items() == ["b"]
    assert lot.take(["a"]) == []  # given back once


def test_a_record_delivered_again_replaces_the_copy_held_before() -> None:
    lot = Lot()
    first = _held("a", 7, read_ms=1)
    again = _held("a", 7, read_ms=2)
    lot.add(first)
    lot.add(again)
    assert len(lot) == 1 and [h.read_ms for h in lot.take(["a"])] == [2]


def test_take_where_removes_only_what_settles_and_keeps_the_count() -> None:
    lot = Lot()
    for offset, read_ms in ((1, 100), (2, 5_000), (3, 200)):
        lot.add(_held(f"i{offset}", offset, read_ms=read_ms))
    old = lot.take_where(lambda h: h.read_ms < 1_000)
    assert sorted(h.envelope.offset for h in old) == [1, 3]
    assert len(lot) == 1 and lot.items() == ["i2"]


class _Progress:
    """The uploads topic as the retry agent reads it, and the content agent storing an item while
    that read is in flight (the soak's race: Kafka reads take seconds with a broker down)."""

    def __init__(self, stored: set[str]) -> None:
        self.stored = stored
        self.reads = 0

    def oldest_pending(self, *args: Any) -> list[int | None]:
        self.reads += 1
        self.stored.add("late-item")  # its upload was processed and committed by the time the read returns
        return []  # no lag left: every upload is processed


def _wait_with(stored: set[str], tmp_item_wait_s: float = 10.0) -> tuple[ItemWait, dict[str, list[Any]]]:
    """An ItemWait whose dependencies are in-memory stand-ins at its I/O edges (the real settle runs)."""
    sent: dict[str, list[Any]] = {"produced": [], "dead": [], "acked": []}

    async def get(item_ids: Any, items: Any) -> dict[str, np.ndarray]:
        return {i: np.ones(4, dtype=np.float32) for i in item_ids if i in stored}

    async def send_all(records: Any, what: str) -> None:
        sent["produced"] += records

    async def dead_letters(letters: Any) -> None:
        sent["dead"] += letters

    async def live() -> Any:
        return SimpleNamespace(items=SimpleNamespace(name="items"))

    async def ack(event: Any) -> None:
        sent["acked"].append(event)

    names = SimpleNamespace(name="t")
    ctx = SimpleNamespace(
        topic=lambda name: name,
        topics=SimpleNamespace(interactions_retry=names, interactions=names, uploads=names),
        settings=SimpleNamespace(
            item_wait_s=tmp_item_wait_s, item_hold_s=60.0, kafka_bootstrap="", kafka_security=lambda: None, app_id="g"
        ),
        app=SimpleNamespace(consumer=SimpleNamespace(assignment=lambda: {"tp"})),
        vectors=SimpleNamespace(get=get),
        live=live,
        outbox=SimpleNamespace(send_all=send_all, dead_letters=dead_letters),
        metrics=SimpleNamespace(
            waiting=SimpleNamespace(set=lambda n: None), waited_seconds=SimpleNamespace(observe=lambda s: None)
        ),
    )
    wait = ItemWait(ctx)  # type: ignore[arg-type]
    stream = SimpleNamespace(ack=ack)
    long_ago = waiting.now_ms() - 60_000  # waited well past item_wait_s
    for offset, item in enumerate(("late-item", "never-uploaded")):
        held = _held(item, offset, read_ms=waiting.now_ms(), first_seen_ms=long_ago)
        held.stream = stream
        wait.lot.add(held)
    return wait, sent


def test_an_item_stored_while_the_progress_is_read_is_found_and_its_interaction_sent_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stored: set[str] = set()
    progress = _Progress(stored)
    monkeypatch.setattr(waiting, "oldest_pending", progress.oldest_pending)
    wait, sent = _wait_with(stored)
    asyncio.run(wait.settle())
    assert progress.reads == 1
    dead = [detail for *_, detail in sent["dead"]]
    assert len(dead) == 1 and "never-uploaded" in dead[0]  # the item nobody uploaded is dead-lettered...
    assert len(sent["produced"]) == 1  # ...and the one stored meanwhile goes back to the interactions topic
    assert len(sent["acked"]) == 2 and len(wait.lot) == 0


def test_nothing_is_dead_lettered_while_the_content_agents_progress_cannot_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*args: Any) -> list[int | None]:
        raise RuntimeError("no broker answered")

    monkeypatch.setattr(waiting, "oldest_pending", unreachable)
    wait, sent = _wait_with(set())
    asyncio.run(wait.settle())
    assert sent["dead"] == [] and sent["produced"] == [] and len(wait.lot) == 2  # both keep waiting


def test_a_record_redelivered_during_the_lookup_is_judged_only_after_its_own_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    # A restarted worker takes its partitions' retry backlog back, first seen long ago, while a settle waits
    # on Milvus: the CI failure of 2026-12-03, where such records were dead-lettered with their items stored.
    monkeypatch.setattr(waiting, "oldest_pending", lambda *args: [])  # every upload processed
    stored = {"stored-item"}
    wait, sent = _wait_with(stored)
    lookup = wait.ctx.vectors.get

    async def get_while_the_backlog_arrives(item_ids: Any, items: Any) -> dict[str, np.ndarray]:
        redelivered = _held("stored-item", 99, read_ms=waiting.now_ms(), first_seen_ms=waiting.now_ms() - 60_000)
        redelivered.stream = next(iter(wait.lot)).stream
        wait.lot.add(redelivered)
        return await lookup(item_ids, items)

    wait.ctx.vectors.get = get_while_the_backlog_arrives
    asyncio.run(wait.settle())
    assert not any("stored-item" in detail for *_, detail in sent["dead"])
    assert [h.interaction.item_id for h in wait.lot] == ["stored-item"]  # kept for the next settle...
    wait.ctx.vectors.get = lookup
    asyncio.run(wait.settle())
    assert len(wait.lot) == 0 and len(sent["produced"]) == 1  # ...which finds its item and sends it back
