"""The fuzzer's bad messages are refused with the reason the harness expects: by the codec (checked
against the record's key and arrival, as the workers do), or by the media fetcher's default policy."""

from __future__ import annotations

import time

import pytest

from bench.hostile import BAD_KINDS, MEDIA_KINDS, Fuzzer, Hostile
from streams.sinks.media import MediaResolver
from topology import reasons
from topology.codec import Arrival, BadInput, Limits, decode_interaction, decode_upload
from topology.messages import Action, ContentUpload, Interaction

LIMITS = Limits(max_image_bytes=4096, max_text_chars=256)
UPLOAD = ContentUpload(item_id="it-1", creator_id="c-1", created_at_ms=1_000, title="a cat", tags=("cats",))
EVENT = Interaction(event_id="ev-1", user_id="u-1", item_id="it-1", action=Action.LIKE, timestamp_ms=2_000)


def _decode(bad: Hostile) -> object:
    arrival = Arrival(bad.key, int(time.time() * 1000))
    return decode_upload(bad.value, LIMITS, arrival) if bad.topic == "uploads" else decode_interaction(bad.value, LIMITS, arrival)


async def test_every_bad_kind_is_refused_with_its_reason() -> None:
    fuzzer = Fuzzer(seed=3, limits=LIMITS, run_id="r", internal_port=9)
    resolver = MediaResolver(max_bytes=4096, timeout_s=2.0)  # the default policy: no media roots, public addresses only
    await resolver.start()
    seen = set()
    try:
        for _ in range(1500):
            bad = fuzzer.bad(UPLOAD, EVENT)
            seen.add(bad.kind)
            if bad.kind == "unknown_item":
                decoded = _decode(bad)  # well-formed: only the missing item makes it bad
                assert isinstance(decoded, Interaction) and decoded.item_id.startswith("r-ghost-item-")
                assert bad.reason == reasons.ITEM_NOT_FOUND
                continue
            if bad.kind in MEDIA_KINDS:
                upload = _decode(bad)  # a valid upload whose cover the worker must not fetch
                assert isinstance(upload, ContentUpload) and upload.cover is not None
                with pytest.raises(BadInput) as caught:
                    await resolver.resolve(upload.cover, "cover")
            else:
                with pytest.raises(BadInput) as caught:
                    _decode(bad)
            assert caught.value.reason in reasons.ALL
            if bad.reason is not None:
                assert caught.value.reason == bad.reason, (bad.kind, caught.value.detail)
    finally:
        await resolver.close()
    assert seen == set(BAD_KINDS)
    assert sum(fuzzer.by_kind.values()) == 1500


def test_bad_messages_never_repeat_the_bytes_of_a_good_one() -> None:
    """The harness tells bad from good by bytes: a bad message equal to a good one would count twice."""
    from topology.codec import encode_interaction, encode_upload

    fuzzer = Fuzzer(seed=5, limits=LIMITS, run_id="r")
    good = {encode_upload(UPLOAD), encode_interaction(EVENT)}
    assert not any(fuzzer.bad(UPLOAD, EVENT).value in good for _ in range(500))


def test_out_of_order_events_are_good_and_older() -> None:
    fuzzer = Fuzzer(seed=4, limits=LIMITS, run_id="r")
    late = fuzzer.out_of_order(EVENT)
    assert late.timestamp_ms < EVENT.timestamp_ms and late.event_id != EVENT.event_id
    assert (late.user_id, late.item_id, late.action) == (EVENT.user_id, EVENT.item_id, EVENT.action)
