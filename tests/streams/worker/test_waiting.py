"""The item-wait decision: an interaction is dead-lettered only once every earlier upload was processed."""

from types import SimpleNamespace

from streams.worker.waiting import Held, Lot, caught_up
from topology.messages import Action, Interaction, RetryEnvelope


def test_caught_up_only_when_every_pending_record_is_newer_than_the_moment() -> None:
    assert caught_up([], since_ms=5_000)  # no lag anywhere
    assert caught_up([6_000, 9_000], since_ms=5_000)  # what is left was written after the moment
    assert not caught_up([6_000, 5_000], since_ms=5_000)  # a record from that moment still waits
    assert not caught_up([None], since_ms=5_000)  # lag whose age is unknown: not caught up


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
