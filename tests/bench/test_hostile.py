"""The fuzzer's bad messages are refused with the reason the harness expects: by the codec (checked
against the record's key and arrival, as the workers do), or by the media fetcher's default policy.
The end-to-end fuzzer's mutations are classified as the decoder sees them, reach past it, and its
row checks name every mangling of a stored value."""

from __future__ import annotations

import sys
import time

import msgpack
import numpy as np
import pytest

from bench.hostile import (
    BAD_KINDS,
    FUZZ_OPERATORS,
    MEDIA_KINDS,
    Case,
    Fuzzer,
    Hostile,
    Mutator,
    item_problems,
    pad_utf8,
    show,
    user_problems,
)
from streams.interest.maths import InterestParams, fold_interactions, interest_vectors
from streams.sinks.media import MediaResolver
from topology import reasons
from topology.codec import Arrival, BadInput, Limits, decode_interaction, decode_upload
from topology.collections import item_row, items_collection, user_row, users_collection
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


# --------------------------------------------------------------------------- the end-to-end fuzzer's mutations and checks

FUZZ_LIMITS = Limits(max_image_bytes=8192)
NOW_MS = 1_800_000_000_000


def _fuzzed(seed: int, uploads: int = 150, interactions: int = 150) -> list[Case]:
    mutator = Mutator(seed, FUZZ_LIMITS, "r", reserved_ids=("__canary__-6066",))
    cases = [mutator.upload(NOW_MS) for _ in range(uploads)]
    items = ["base-0", *(c.decoded.item_id for c in cases if isinstance(c.decoded, ContentUpload))]
    return cases + [mutator.interaction(NOW_MS, items) for _ in range(interactions)]


def test_every_fuzzed_message_is_classified_as_the_decoder_sees_it() -> None:
    for case in _fuzzed(seed=11):
        decode = decode_upload if case.topic == "uploads" else decode_interaction
        if case.refused is None:
            assert decode(case.value, FUZZ_LIMITS, Arrival(case.key, NOW_MS)) == case.decoded, case.describe()
        else:
            with pytest.raises(BadInput) as caught:
                decode(case.value, FUZZ_LIMITS, Arrival(case.key, NOW_MS))
            assert caught.value.reason == case.refused and case.decoded is None


def test_the_fuzzer_reaches_past_the_decoder_with_every_operator() -> None:
    """Not a corpus of refusals: many mutations pass the decoder, with odd but valid values."""
    cases = _fuzzed(seed=12)
    accepted = [c for c in cases if c.refused is None]
    assert 0.25 < len(accepted) / len(cases) < 0.75
    assert {c.operator for c in cases} == set(FUZZ_OPERATORS)
    assert {c.topic for c in accepted} == {"uploads", "interactions"}
    assert len({c.refused for c in cases} - {None}) >= 6  # many reasons: many decoder paths
    uploads = [c.decoded for c in accepted if isinstance(c.decoded, ContentUpload)]
    assert any(not u.item_id.isascii() for u in uploads)  # odd ids, texts and times were accepted, not only refused
    assert any(len(u.title) in (0, FUZZ_LIMITS.max_title_chars) or not u.title.isascii() for u in uploads)
    mutated = {f for c in accepted for f in c.fields}
    assert {"item_id", "title", "tags", "created_at_ms", "timestamp_ms", "action"} & mutated


def test_accepted_messages_never_share_an_identity_and_keys_follow_ids() -> None:
    accepted = [c for c in _fuzzed(seed=13) if c.refused is None]
    items = [c.decoded.item_id for c in accepted if isinstance(c.decoded, ContentUpload)]
    users = [c.decoded.user_id for c in accepted if isinstance(c.decoded, Interaction)]
    assert len(set(items)) == len(items) and len(set(users)) == len(users)
    for case in accepted:
        body_id = case.decoded.item_id if isinstance(case.decoded, ContentUpload) else case.decoded.user_id  # type: ignore[union-attr]
        assert case.key == body_id.encode()


def test_a_seed_gives_the_same_messages() -> None:
    first, again = _fuzzed(14, 40, 40), _fuzzed(14, 40, 40)
    assert [(c.key, c.value) for c in first] == [(c.key, c.value) for c in again]
    assert [(c.key, c.value) for c in first] != [(c.key, c.value) for c in _fuzzed(15, 40, 40)]


def test_padded_identifiers_hit_the_byte_limit_exactly() -> None:
    for filler in ("x", "é", "😀"):
        for size in (127, 128, 129):
            assert len(pad_utf8("stem-1", size, filler).encode()) == size


def test_show_abridges_a_message_and_survives_garbage() -> None:
    assert "<9000 bytes" in show(msgpack.packb({"cover": b"\x00" * 9000}, use_bin_type=True))
    assert "not one msgpack value" in show(b"\xc1")


DIM = 8
ITEMS_SPEC = items_collection("t_", DIM)
USERS_SPEC = users_collection("t_", DIM)
UNIT = np.eye(DIM, dtype=np.float32)


def test_an_item_row_stored_as_decoded_passes_and_every_mangling_is_named() -> None:
    upload = ContentUpload(item_id="it-é", creator_id="c-猫", created_at_ms=0, title="x")
    good = item_row("it-é", "c-猫", 0, 5, "m1", UNIT[0])
    assert item_problems(good, upload, ITEMS_SPEC, UNIT[0], (1, 10)) == []
    manglings = {
        "creator_id": {**good, "creator_id": "c-"},  # truncated
        "created_at_ms": {**good, "created_at_ms": 1},
        "item_id": {**good, "item_id": "it-e\u0301"},  # normalised to NFD: another id
        "model_version": {**good, "model_version": ""},
        "encoded_at_ms": {**good, "encoded_at_ms": 11},
        "norm": {**good, "embedding": [0.0] * DIM},
        "NaN": {**good, "embedding": [float("nan")] * DIM},
        "shape": {**good, "embedding": [1.0] * (DIM - 1)},
        "semantic id": {**good, "sid_codes": "1.2"},
    }
    for what, row in manglings.items():
        problems = item_problems(row, upload, ITEMS_SPEC, UNIT[0], (1, 10))
        assert any(what in p for p in problems), (what, problems)
    assert "cosine" in " ".join(item_problems(good, upload, ITEMS_SPEC, UNIT[1], (1, 10)))  # another upload's vector


def test_a_user_row_equal_to_the_maths_passes_and_a_wrong_one_is_named() -> None:
    params = InterestParams()
    events = [
        Interaction("e1", "u-1", "a#0", Action.LIKE, 1_000),
        Interaction("e2", "u-1", "b-猫", Action.DISLIKE, 2_000),
    ]
    state = fold_interactions(events, params)
    vectors = {"a#0": UNIT[0], "b-猫": UNIT[1]}
    want = interest_vectors(state, vectors, params)
    assert want is not None
    good = user_row("u-1", 0, 2_000, 2, "b-猫,a#0", "m1", want[0], "a#0")
    assert user_problems(good, "u-1", state, want, USERS_SPEC) == []
    for what, row in {
        "event_count": {**good, "event_count": 1},
        "updated_at_ms": {**good, "updated_at_ms": 1_000},
        "recent_item_ids": {**good, "recent_item_ids": "a#0"},
        "positive_item_ids": {**good, "positive_item_ids": "a#0,b-猫"},
        "interest maths": {**good, "embedding": UNIT[0].tolist()},
        "model_version": {**good, "model_version": ""},
    }.items():
        problems = user_problems(row, "u-1", state, want, USERS_SPEC)
        assert any(what in p for p in problems), (what, problems)


def test_the_fuzzer_command_line_explains_itself(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import bench.hostile

    monkeypatch.setattr(sys, "argv", ["python -m bench.hostile", "--help"])
    with pytest.raises(SystemExit) as done:
        bench.hostile.main()
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert all(flag in text for flag in ("--fuzz", "--seed", "--json", "--drain-timeout")) and "never" in text.lower()
