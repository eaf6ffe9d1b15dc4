"""Batch records of interactions on the wire: one user's events in one record, each event judged on its own."""

from __future__ import annotations

import msgpack
import pytest

from topology import reasons
from topology.batches import UserBatches
from topology.codec import (
    Arrival,
    BadInput,
    Limits,
    decode_interaction,
    decode_interactions,
    encode_interaction,
    encode_interaction_batch,
)
from topology.messages import Action, Interaction

NOW_MS = 1_800_000_000_000


def _events(user: str, n: int) -> list[Interaction]:
    return [Interaction(f"{user}-e{k}", user, f"i{k}", Action.LIKE, NOW_MS - 1_000 + k, dwell_ms=k) for k in range(n)]


def test_a_batch_record_round_trips_and_a_single_event_still_decodes_as_before() -> None:
    events = _events("u1", 20)
    record = decode_interactions(encode_interaction_batch("u1", events), arrival=Arrival(b"u1", NOW_MS))
    assert record.batch and record.events == events and record.bad == []
    single = decode_interactions(encode_interaction(events[0]), arrival=Arrival(b"u1", NOW_MS))
    assert not single.batch and single.events == [events[0]] and single.bad == []
    # the batch shares its user once: 20 events take fewer bytes than 20 records' values
    assert len(encode_interaction_batch("u1", events)) < sum(len(encode_interaction(e)) for e in events)


def test_a_bad_event_in_a_batch_is_returned_alone_with_its_reason_and_the_others_are_kept() -> None:
    raw = msgpack.unpackb(encode_interaction_batch("u1", _events("u1", 5)))
    raw["events"][1]["action"] = "poke"
    raw["events"][2] = 7
    raw["events"][3]["user_id"] = "u2"  # an event may repeat its batch's user, never name another
    raw["events"][4]["timestamp_ms"] = NOW_MS + 3_600_000  # an hour ahead of its record's arrival
    record = decode_interactions(msgpack.packb(raw), Limits(max_future_skew_ms=60_000), Arrival(b"u1", NOW_MS))
    assert [e.event_id for e in record.events] == ["u1-e0"]
    got = {bad.index: bad.error.reason for bad in record.bad}
    assert got == {
        1: reasons.SCHEMA_INVALID_VALUE,
        2: reasons.SCHEMA_NOT_A_MAP,
        3: reasons.SCHEMA_INVALID_VALUE,
        4: reasons.SCHEMA_INVALID_TIME,
    }
    assert "events[1].action" in record.bad[0].error.detail
    # each bad event's own bytes: a single-event record with its batch's user, as it was otherwise
    alone = msgpack.unpackb(record.bad[0].original)
    assert alone["action"] == "poke" and alone["user_id"] == "u1" and alone["event_id"] == "u1-e1"
    assert msgpack.unpackb(record.bad[2].original)["user_id"] == "u2"
    fixed = decode_interaction(record.bad[0].original.replace(b"poke", b"like"))
    assert fixed.event_id == "u1-e1" and fixed.user_id == "u1"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda raw: raw.update(events=[]), reasons.SCHEMA_WRONG_TYPE),
        (lambda raw: raw.update(events={"not": "a list"}), reasons.SCHEMA_WRONG_TYPE),
        (lambda raw: raw.pop("user_id"), reasons.SCHEMA_MISSING_FIELD),
        (lambda raw: raw.update(v=99), reasons.SCHEMA_VERSION),
        (lambda raw: raw.update(events=raw["events"] * 2), reasons.LIMIT_BATCH_EVENTS),
    ],
)
def test_a_bad_batch_record_is_refused_whole(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    raw = msgpack.unpackb(encode_interaction_batch("u1", _events("u1", 3)))
    mutate(raw)
    with pytest.raises(BadInput) as caught:
        decode_interactions(msgpack.packb(raw), Limits(max_batch_events=5), Arrival(b"u1", NOW_MS))
    assert caught.value.reason == reason


def test_a_batch_under_another_users_key_is_refused_and_a_producer_cannot_mix_users() -> None:
    data = encode_interaction_batch("u1", _events("u1", 2))
    with pytest.raises(BadInput) as caught:
        decode_interactions(data, arrival=Arrival(b"u2", NOW_MS))
    assert caught.value.reason == reasons.SCHEMA_KEY_MISMATCH
    with pytest.raises(ValueError, match="one user's events"):
        encode_interaction_batch("u1", [*_events("u1", 1), *_events("u2", 1)])


def _replayed(records: list[tuple[bytes, bytes]]) -> list[Interaction]:
    return [event for _, value in records for event in decode_interactions(value).events]


def test_user_batches_send_each_users_events_in_order_when_full_or_late_and_drain_the_rest() -> None:
    batches = UserBatches(size=3, linger_s=2.0)
    a, b = _events("a", 7), _events("b", 1)
    out = []
    for t, event in enumerate(a[:3]):
        out += batches.add(event, now_s=float(t) / 10)
    assert len(out) == 1 and out[0][0] == b"a" and _replayed(out) == a[:3]  # full: sent at the third event
    assert batches.add(b[0], now_s=1.0) == []  # one of b's, waiting for company
    late = batches.add(a[3], now_s=3.0)  # b's waited 2 s: sent alone, as a single-event record
    assert late == [(b"b", encode_interaction(b[0]))]
    out += batches.add(a[4], now_s=3.1) + batches.drain()
    assert _replayed(out) == a[:5] and batches.drain() == []
    assert UserBatches(size=1).add(a[0], 0.0) == [(b"a", encode_interaction(a[0]))]  # size 1: the single-event form
