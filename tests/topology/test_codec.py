"""The msgpack wire format: round trips, and precise rejection of everything else."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology import reasons
from topology.codec import (
    SCHEMA_VERSION,
    Arrival,
    BadInput,
    Limits,
    decode_dead_letter,
    decode_encoder_request,
    decode_interaction,
    decode_interest_state,
    decode_item_embedding,
    decode_upload,
    encode_dead_letter,
    encode_encoder_request,
    encode_interaction,
    encode_interest_state,
    encode_item_embedding,
    encode_upload,
    event_id_hash,
)
from topology.collections import (
    CANARY,
    INT64_MAX,
)
from topology.messages import (
    Action,
    ContentUpload,
    DeadLetter,
    EncodeRequest,
    Interaction,
    InterestState,
    ItemEmbedding,
    Media,
    Signal,
)

SMALL = Limits(
    max_message_bytes=64 * 1024, max_image_bytes=4096, max_frames=4, max_tags=5, max_title_chars=40, max_text_chars=100
)

ids = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S"), exclude_characters="'\"\\,"), min_size=1, max_size=20)
texts = st.text(max_size=40)
media = st.one_of(
    st.binary(min_size=1, max_size=512).map(Media.inline),
    st.sampled_from(["file:///data/cover.jpg", "https://cdn.example.test/a.png", "http://127.0.0.1:8080/f/1.jpg"]).map(Media.at),
)
uploads = st.builds(
    ContentUpload,
    item_id=ids,
    creator_id=ids.filter(lambda c: not c.startswith(CANARY)),  # the workers' probes' prefix is refused on input
    created_at_ms=st.integers(0, 2**62),
    title=texts,
    ocr_text=texts,
    asr_text=texts,
    author_nickname=texts,
    tags=st.lists(st.text(max_size=10), max_size=5).map(tuple),
    cover=st.none() | media,
    frames=st.lists(media, max_size=4).map(tuple),
    audio=st.none() | media,
)
interactions = st.builds(
    Interaction,
    event_id=ids,
    user_id=ids,
    item_id=ids,
    action=st.sampled_from(list(Action)),
    timestamp_ms=st.integers(0, 2**62),
    dwell_ms=st.integers(0, 10**7),
)


def _raw(**fields: object) -> bytes:
    return msgpack.packb({"v": SCHEMA_VERSION, **fields}, use_bin_type=True)


def _upload_fields(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"item_id": "i1", "creator_id": "c1", "created_at_ms": 1_700_000_000_000, "title": "a cat"}
    base.update(overrides)
    return base


@given(uploads)
def test_upload_round_trips(upload: ContentUpload) -> None:
    assert decode_upload(encode_upload(upload), SMALL) == upload


@given(interactions)
def test_interaction_round_trips(event: Interaction) -> None:
    assert decode_interaction(encode_interaction(event)) == event


@given(
    st.binary(max_size=2048),
    ids,
    st.integers(0, 1000),
    st.integers(0, 2**40),
    st.sampled_from(sorted(reasons.ALL)),
    st.none() | st.binary(max_size=64),
)
def test_dead_letter_round_trips_original_bytes(
    original: bytes, topic: str, partition: int, offset: int, reason: str, key: bytes | None
) -> None:
    letter = DeadLetter(
        original=original,
        source_topic=topic,
        partition=partition,
        offset=offset,
        reason=reason,
        detail="why",
        key=key,
        failed_at_ms=5,
    )
    assert decode_dead_letter(encode_dead_letter(letter)) == letter


def test_retry_envelope_round_trips() -> None:
    from topology.codec import decode_retry, encode_retry
    from topology.messages import RetryEnvelope

    envelope = RetryEnvelope(
        original=b"\x81\xa1v\x01", source_topic="t", partition=2, offset=99, attempts=3, first_seen_ms=5, not_before_ms=7
    )
    assert decode_retry(encode_retry(envelope)) == envelope


def test_item_embedding_round_trips_vector() -> None:
    vec = np.arange(8, dtype=np.float32) / 7
    emb = ItemEmbedding(
        item_id="i1", vector=vec.tobytes(), dim=8, model_version="m1", created_at_ms=1, encoded_at_ms=2, creator_id="c"
    )
    back = decode_item_embedding(encode_item_embedding(emb))
    assert back == emb
    np.testing.assert_array_equal(np.frombuffer(back.vector, dtype=np.float32), vec)


def test_item_embedding_carries_the_semantic_id_and_one_from_before_issue_18_reads_as_none() -> None:
    import msgpack

    emb = ItemEmbedding(
        item_id="i1",
        vector=b"\0" * 8,
        dim=2,
        model_version="m1",
        created_at_ms=1,
        encoded_at_ms=2,
        sid_codes="12.200.7",
        sid_suffix=1,
        sid_codebook="m1_sid3x256_1",
    )
    assert decode_item_embedding(encode_item_embedding(emb)) == emb
    old = msgpack.unpackb(encode_item_embedding(emb))
    for key in ("sid_codes", "sid_suffix", "sid_codebook"):
        del old[key]
    back = decode_item_embedding(msgpack.packb(old))
    assert (back.sid_codes, back.sid_suffix, back.sid_codebook) == ("", -1, "")


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_either_decode_or_raise_bad_input(data: bytes) -> None:
    from topology.codec import decode_retry

    for decode in (decode_upload, decode_interaction, decode_dead_letter, decode_item_embedding, decode_retry):
        try:
            decode(data)
        except BadInput as exc:
            assert exc.reason in reasons.ALL


@given(uploads, st.integers(1, 200))
def test_truncated_upload_is_rejected_as_bad_input(upload: ContentUpload, cut: int) -> None:
    data = encode_upload(upload)
    with pytest.raises(BadInput) as info:
        decode_upload(data[: max(0, len(data) - cut)], SMALL)
    assert info.value.reason in (reasons.DECODE_MSGPACK, reasons.SCHEMA_NOT_A_MAP, reasons.SCHEMA_VERSION)


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (b"\xc1", reasons.DECODE_MSGPACK, "ContentUpload"),
        (_raw(**_upload_fields()) + b"\x00", reasons.DECODE_MSGPACK, "ExtraData"),
        (msgpack.packb([1, 2]), reasons.SCHEMA_NOT_A_MAP, "got list"),
        (msgpack.packb({"v": 99, **_upload_fields()}), reasons.SCHEMA_VERSION, "ContentUpload.v"),
        (_raw(item_id="i1", created_at_ms=1), reasons.SCHEMA_MISSING_FIELD, "ContentUpload.creator_id"),
        (
            _raw(**_upload_fields(created_at_ms="yesterday")),
            reasons.SCHEMA_WRONG_TYPE,
            "ContentUpload.created_at_ms: expected int, got str",
        ),
        (_raw(**_upload_fields(created_at_ms=True)), reasons.SCHEMA_WRONG_TYPE, "created_at_ms"),
        (_raw(**_upload_fields(created_at_ms=-5)), reasons.SCHEMA_INVALID_VALUE, "-5 < 0"),
        (_raw(**_upload_fields(created_at_ms=2**64 - 1)), reasons.SCHEMA_INVALID_VALUE, f"{2**64 - 1} > {INT64_MAX}"),
        (_raw(**_upload_fields(created_at_ms=2**63)), reasons.SCHEMA_INVALID_VALUE, "created_at_ms"),
        (_raw(**_upload_fields(item_id="a,b")), reasons.SCHEMA_INVALID_VALUE, "identifiers may not contain ,"),
        (_raw(**_upload_fields(creator_id='say "hi"')), reasons.SCHEMA_INVALID_VALUE, 'may not contain "'),
        (_raw(**_upload_fields(item_id="it's")), reasons.SCHEMA_INVALID_VALUE, "may not contain '"),
        (_raw(**_upload_fields(item_id="back\\slash")), reasons.SCHEMA_INVALID_VALUE, "may not contain \\"),
        (_raw(**_upload_fields(item_id="zero\u200bwidth")), reasons.SCHEMA_INVALID_VALUE, "printable"),
        # the workers' probe rows live under __canary__ keys (found by the end-to-end fuzzer: an upload
        # named like a worker's freshness probe was stored, then overwritten and deleted by it)
        (_raw(**_upload_fields(item_id="__canary__-40295")), reasons.SCHEMA_INVALID_VALUE, "reserved for the workers' probes"),
        (_raw(**_upload_fields(creator_id="__canary__")), reasons.SCHEMA_INVALID_VALUE, "reserved"),
        (_raw(**_upload_fields(item_id="x" * 129)), reasons.LIMIT_TEXT_CHARS, "129 UTF-8 bytes > limit 128"),
        (_raw(**_upload_fields(item_id="é" * 65)), reasons.LIMIT_TEXT_CHARS, "130 UTF-8 bytes > limit 128"),
        (_raw(**_upload_fields(item_id="")), reasons.SCHEMA_INVALID_VALUE, "ContentUpload.item_id"),
        (_raw(**_upload_fields(item_id="a\nb")), reasons.SCHEMA_INVALID_VALUE, "printable"),
        (_raw(**_upload_fields(title="x" * 41)), reasons.LIMIT_TEXT_CHARS, "ContentUpload.title: 41 chars > limit 40"),
        (_raw(**_upload_fields(tags=["a"] * 6)), reasons.LIMIT_TAGS, "6 tags > limit 5"),
        (_raw(**_upload_fields(tags=[1])), reasons.SCHEMA_WRONG_TYPE, "tags[]"),
        (_raw(**_upload_fields(cover=b"x" * 4097)), reasons.LIMIT_MEDIA_BYTES, "ContentUpload.cover: 4097 bytes > limit 4096"),
        (_raw(**_upload_fields(cover=b"")), reasons.SCHEMA_INVALID_VALUE, "empty media"),
        (_raw(**_upload_fields(cover=12)), reasons.SCHEMA_WRONG_TYPE, "bin (inline) or str (URI)"),
        (_raw(**_upload_fields(cover="ftp://host/x.jpg")), reasons.SCHEMA_INVALID_VALUE, "scheme 'ftp'"),
        (_raw(**_upload_fields(cover="https:///nohost.jpg")), reasons.SCHEMA_INVALID_VALUE, "without a host"),
        (_raw(**_upload_fields(frames=[b"f"] * 5)), reasons.LIMIT_FRAMES, "5 > limit 4"),
        (_raw(**_upload_fields(frames=[b"ok", "gopher://x/y"])), reasons.SCHEMA_INVALID_VALUE, "ContentUpload.frames[1]"),
        (b"\x00" * (64 * 1024 + 1), reasons.LIMIT_MESSAGE_BYTES, "65537 bytes > limit 65536"),
    ],
)
def test_invalid_upload_is_rejected_with_precise_reason(data: bytes, reason: str, detail: str) -> None:
    with pytest.raises(BadInput) as info:
        decode_upload(data, SMALL)
    assert info.value.reason == reason
    assert detail in str(info.value)


@pytest.mark.parametrize(
    ("fields", "reason", "detail"),
    [
        ({"action": "poke"}, reasons.SCHEMA_INVALID_VALUE, "'poke' not one of view, like"),
        ({"dwell_ms": -1}, reasons.SCHEMA_INVALID_VALUE, "Interaction.dwell_ms"),
        ({"dwell_ms": 2**63}, reasons.SCHEMA_INVALID_VALUE, "Interaction.dwell_ms"),
        ({"timestamp_ms": 2**64 - 1}, reasons.SCHEMA_INVALID_VALUE, "Interaction.timestamp_ms"),
        ({"user_id": "u,1"}, reasons.SCHEMA_INVALID_VALUE, "Interaction.user_id"),
        ({"timestamp_ms": 1.5}, reasons.SCHEMA_WRONG_TYPE, "Interaction.timestamp_ms: expected int, got float"),
        ({"user_id": None}, reasons.SCHEMA_MISSING_FIELD, "Interaction.user_id is required"),
        ({"item_id": 7}, reasons.SCHEMA_WRONG_TYPE, "Interaction.item_id: expected str"),
    ],
)
def test_invalid_interaction_is_rejected_with_precise_reason(fields: dict[str, object], reason: str, detail: str) -> None:
    good = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "action": "like", "timestamp_ms": 10, "dwell_ms": 3}
    with pytest.raises(BadInput) as info:
        decode_interaction(_raw(**{**good, **fields}))
    assert info.value.reason == reason
    assert detail in str(info.value)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    upload = decode_upload(_raw(**_upload_fields(added_in_v1_5="whatever")), SMALL)
    assert upload.item_id == "i1" and upload.title == "a cat"


def test_missing_optional_fields_take_defaults() -> None:
    event = decode_interaction(_raw(event_id="e", user_id="u", item_id="i", action="skip", timestamp_ms=0))
    assert event.dwell_ms == 0 and event.action is Action.SKIP and event.action.is_negative


def test_item_embedding_with_wrong_vector_length_is_rejected() -> None:
    data = _raw(item_id="i", vector=b"\x00" * 12, dim=4, model_version="m", created_at_ms=0, encoded_at_ms=0)
    with pytest.raises(BadInput) as info:
        decode_item_embedding(data)
    assert info.value.reason == reasons.SCHEMA_INVALID_VALUE
    assert "12 bytes for dim 4" in info.value.detail


def test_identifiers_up_to_the_byte_limit_round_trip_whatever_their_script() -> None:
    for item_id in ("x" * 128, "é" * 64, "猫" * 42, "emoji😀-#1", "ÄÖÜ-ß/x:y@z"):
        assert decode_upload(_raw(**_upload_fields(item_id=item_id)), SMALL).item_id == item_id


NOW_MS = 1_800_000_000_000
EVENT = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "action": "like", "dwell_ms": 3}


def test_an_event_within_the_allowed_skew_and_age_is_accepted() -> None:
    limits = Limits(max_future_skew_ms=60_000, max_age_ms=3_600_000)
    for ts in (NOW_MS + 60_000, NOW_MS, NOW_MS - 3_600_000):
        assert decode_interaction(_raw(**EVENT, timestamp_ms=ts), limits, Arrival(b"u1", NOW_MS)).timestamp_ms == ts
    upload = decode_upload(_raw(**_upload_fields(item_id="i9", created_at_ms=NOW_MS + 1000)), limits, Arrival(b"i9", NOW_MS))
    assert upload.created_at_ms == NOW_MS + 1000


@pytest.mark.parametrize(
    ("timestamp_ms", "detail"),
    [
        (NOW_MS + 60_001, "60s after the record arrived (allowed skew 60s)"),
        (NOW_MS + 1000 * 365 * 86_400_000, "after the record arrived"),
        (NOW_MS - 3_600_001, "3600s before the record arrived (allowed age 3600s)"),
        (0, "before the record arrived"),
    ],
)
def test_an_event_time_beyond_the_skew_or_age_is_invalid(timestamp_ms: int, detail: str) -> None:
    limits = Limits(max_future_skew_ms=60_000, max_age_ms=3_600_000)
    with pytest.raises(BadInput) as info:
        decode_interaction(_raw(**EVENT, timestamp_ms=timestamp_ms), limits, Arrival(b"u1", NOW_MS))
    assert info.value.reason == reasons.SCHEMA_INVALID_TIME and detail in info.value.detail


def test_any_age_is_accepted_by_default_but_not_the_far_future() -> None:
    assert decode_interaction(_raw(**EVENT, timestamp_ms=1), arrival=Arrival(b"u1", NOW_MS)).timestamp_ms == 1
    with pytest.raises(BadInput) as info:
        decode_upload(_raw(**_upload_fields(created_at_ms=NOW_MS + 301_000)), arrival=Arrival(b"i1", NOW_MS))
    assert info.value.reason == reasons.SCHEMA_INVALID_TIME and "ContentUpload.created_at_ms" in info.value.detail


@pytest.mark.parametrize(("key", "shown"), [(b"u2", "key b'u2'"), (None, "no key"), (b"U1", "key b'U1'")])
def test_a_key_that_is_not_the_bodys_id_is_a_mismatch(key: bytes | None, shown: str) -> None:
    with pytest.raises(BadInput) as info:
        decode_interaction(_raw(**EVENT, timestamp_ms=NOW_MS), arrival=Arrival(key, NOW_MS))
    assert info.value.reason == reasons.SCHEMA_KEY_MISMATCH
    assert info.value.detail == f"Interaction.user_id: 'u1' but the record has {shown}"
    with pytest.raises(BadInput) as info:
        decode_upload(_raw(**_upload_fields()), arrival=Arrival(b"u1", NOW_MS))
    assert info.value.reason == reasons.SCHEMA_KEY_MISMATCH


def test_a_body_error_is_reported_before_its_key() -> None:
    with pytest.raises(BadInput) as info:
        decode_interaction(_raw(**{**EVENT, "action": "poke"}, timestamp_ms=NOW_MS), arrival=Arrival(b"someone-else", NOW_MS))
    assert info.value.reason == reasons.SCHEMA_INVALID_VALUE


def test_encoder_request_round_trips_with_its_media_bytes() -> None:
    request = EncodeRequest(role="query", title="a cat", tags=("pets",), cover=b"\x89PNG", frames=(b"f1", b"f2"), audio=b"RIFF")
    assert decode_encoder_request(encode_encoder_request(request)) == request
    assert decode_encoder_request(encode_encoder_request(EncodeRequest())) == EncodeRequest()


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (b"\x93 not a request", reasons.DECODE_MSGPACK, "EncodeRequest: ExtraData"),
        (msgpack.packb({"v": 1, "role": "boss"}), reasons.SCHEMA_INVALID_VALUE, "EncodeRequest.role: 'boss'"),
        (
            msgpack.packb({"v": 1, "role": "target", "frames": ["not bytes"]}),
            reasons.SCHEMA_WRONG_TYPE,
            "EncodeRequest.frames[]: expected bin",
        ),
        (msgpack.packb({"role": "target"}), reasons.SCHEMA_VERSION, "EncodeRequest.v"),
    ],
)
def test_a_blob_that_is_not_an_encoder_request_is_bad_input(data: bytes, reason: str, detail: str) -> None:
    with pytest.raises(BadInput) as caught:
        decode_encoder_request(data)
    assert caught.value.reason == reason and caught.value.detail.startswith(detail)


def test_a_corrupt_interest_state_is_bad_input_naming_the_field() -> None:
    remembered = tuple(sorted([(3, 99), (5, event_id_hash("e1"))]))  # one forgotten by the window, one in it
    state = InterestState(positives=(Signal("e1", "i1", 5, 2.0),), recent_positive=remembered, event_count=2, updated_at_ms=5)
    assert decode_interest_state(encode_interest_state(state)) == state
    assert len(msgpack.unpackb(encode_interest_state(state))["rp"]) == 16  # only the pair the window does not carry is written
    with pytest.raises(BadInput, match=r"InterestState.pos\[\]: expected \[str, str, int, float\]"):
        decode_interest_state(msgpack.packb({"v": 2, "pos": [["e1", "i1", "late", 1.0]], "count": 1, "updated": 0}))
    with pytest.raises(BadInput, match=r"InterestState.rp: 7 bytes is not a whole number"):
        decode_interest_state(msgpack.packb({"v": 2, "rp": b"1234567", "count": 1, "updated": 0}))


def test_a_version_1_state_is_read_and_migrated_without_losing_a_user() -> None:
    """What a worker before issue 14 wrote to the changelog: windows plus up to 1,024 event ids."""
    from streams.interest.maths import InterestParams, already_applied, apply_interaction, fold_interactions

    params = InterestParams(window=3)
    likes = [Interaction(f"e{n}", "u", f"i{n}", Action.LIKE, 1000 * n) for n in range(6)]
    skip = Interaction("s1", "u", "i9", Action.SKIP, 2500)
    state = fold_interactions([*likes, skip], params)

    def rows(signals: tuple[Signal, ...]) -> list[list[object]]:
        return [[s.event_id, s.item_id, s.timestamp_ms, s.weight] for s in signals]

    v1 = msgpack.packb(
        {
            "v": 1,
            "pos": rows(state.positives),
            "neg": rows(state.negatives),
            "ids": [e.event_id for e in (*likes, skip)],
            "count": 7,
            "updated": 5000,
        },
        use_bin_type=True,
    )
    old = decode_interest_state(v1)
    assert (old.positives, old.negatives, old.event_count, old.updated_at_ms) == (state.positives, state.negatives, 7, 5000)
    assert all(already_applied(old, e) for e in (*likes, skip))  # every replay, in the window or older, changes nothing
    newer = Interaction("e9", "u", "i7", Action.LIKE, 9000)
    assert not already_applied(old, newer)
    after = apply_interaction(old, newer, params)
    assert after.event_count == 8 and [s.event_id for s in after.positives] == ["e4", "e5", "e9"]
    assert decode_interest_state(encode_interest_state(after)) == after  # written back as version 2


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.sampled_from(["", "a,b", "x'", "\u200b", "é" * 40, "__canary__-1", "ok-id", "a" * 65]))
def test_an_identifier_field_decodes_exactly_when_check_identifier_accepts_it(value: str) -> None:
    from topology.codec import check_identifier

    try:
        expected: object = check_identifier(value, "Interaction.user_id", 64)
    except BadInput as exc:
        expected = exc.reason
    try:
        got: object = decode_interaction(
            _raw(event_id="e", user_id=value, item_id="i", action="like", timestamp_ms=1), Limits(max_id_bytes=64)
        ).user_id
    except BadInput as exc:
        got = exc.reason
    assert got == expected
