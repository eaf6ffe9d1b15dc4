"""The fuzzer's bad messages are rejected by the codec with the reason the harness expects."""

from __future__ import annotations

import pytest

from bench.hostile import BAD_KINDS, Fuzzer
from topology import reasons
from topology.codec import BadInput, Limits, decode_interaction, decode_upload
from topology.messages import Action, ContentUpload, Interaction

LIMITS = Limits(max_image_bytes=4096, max_text_chars=256)
UPLOAD = ContentUpload(item_id="it-1", creator_id="c-1", created_at_ms=1_000, title="a cat", tags=("cats",))
EVENT = Interaction(event_id="ev-1", user_id="u-1", item_id="it-1", action=Action.LIKE, timestamp_ms=2_000)


def _decode(topic: str, value: bytes) -> object:
    return decode_upload(value, LIMITS) if topic == "uploads" else decode_interaction(value, LIMITS)


def test_every_bad_kind_is_rejected_with_its_reason() -> None:
    fuzzer = Fuzzer(seed=3, limits=LIMITS, run_id="r")
    seen = set()
    for _ in range(600):
        bad = fuzzer.bad(UPLOAD, EVENT)
        seen.add(bad.kind)
        if bad.kind == "unknown_item":
            decoded = _decode(bad.topic, bad.value)  # well-formed: only the missing item makes it bad
            assert isinstance(decoded, Interaction) and decoded.item_id.startswith("r-ghost-item-")
            assert bad.reason == reasons.ITEM_NOT_FOUND
            continue
        with pytest.raises(BadInput) as caught:
            _decode(bad.topic, bad.value)
        assert caught.value.reason in reasons.ALL
        if bad.reason is not None:
            assert caught.value.reason == bad.reason, bad.kind
    assert seen == set(BAD_KINDS)


def test_out_of_order_events_are_good_and_older() -> None:
    fuzzer = Fuzzer(seed=4, limits=LIMITS, run_id="r")
    late = fuzzer.out_of_order(EVENT)
    assert late.timestamp_ms < EVENT.timestamp_ms and late.event_id != EVENT.event_id
    assert (late.user_id, late.item_id, late.action) == (EVENT.user_id, EVENT.item_id, EVENT.action)
