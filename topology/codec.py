"""The msgpack wire format of every message, with validation and size limits.

Each message is one msgpack map with a schema version `v`. Decoding checks every field and raises
`BadInput` with a reason from `topology.reasons` and a detail naming the field, so an agent can
dead-letter the original bytes and move on. Unknown extra keys are ignored (newer producers may add
fields); missing or mistyped known keys are errors. Inline media travels as msgpack `bin`, media by
reference as a `str` URI.

Validation matches what the sinks accept, so a record that decodes is one Milvus can store:
integers fit int64; identifiers are at most `max_id_bytes` UTF-8 bytes (Milvus VARCHAR lengths are
bytes), printable, and free of the characters that quote or separate them in Milvus filter
expressions and in the users' comma-joined `recent_item_ids` (`ID_FORBIDDEN_CHARS`). Given the
record's `Arrival` (its Kafka key and arrival time), decoding also checks the body's claims against
it: the key must be the id the body names, and event times may not run ahead of the arrival by more
than `max_future_skew_ms` (nor, when `max_age_ms` is set, lag behind it by more).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final
from urllib.parse import urlsplit

import msgpack

from topology import reasons
from topology.collections import CANARY, INT64_MAX, SID_CHARS  # Milvus's int64: what decodes is what the sink can store
from topology.messages import (
    Action,
    CoEngagement,
    ContentUpload,
    DeadLetter,
    EncodeRequest,
    Interaction,
    InterestState,
    ItemCollabState,
    ItemEmbedding,
    Media,
    RetryEnvelope,
    Role,
    Signal,
)

SCHEMA_VERSION: Final = 1
MEDIA_URI_SCHEMES: Final = frozenset({"file", "http", "https"})
ID_FORBIDDEN_CHARS: Final = frozenset("'\"\\,")  # quote, double quote, backslash, comma

_MiB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied while decoding. Defaults fit the topics' `max.message.bytes` (8 MiB)."""

    max_message_bytes: int = 8 * _MiB
    max_id_bytes: int = 128  # UTF-8 bytes: the VARCHAR length of the id fields in Milvus
    max_title_chars: int = 512
    max_text_chars: int = 8192  # OCR and ASR transcripts; the encoder truncates to its token budget anyway
    max_nickname_chars: int = 128
    max_tags: int = 32
    max_tag_chars: int = 64
    max_image_bytes: int = 4 * _MiB
    max_frames: int = 16
    max_audio_bytes: int = 4 * _MiB
    max_uri_chars: int = 2048
    max_batch_events: int = 500  # events in one batch record of interactions
    max_future_skew_ms: int = 300_000  # event times up to 5 min ahead of the record's arrival (client clocks)
    max_age_ms: int = 0  # event times at most this far behind the arrival; 0: any age (replays, backfills)


@dataclass(frozen=True, slots=True)
class Arrival:
    """What Kafka says about a record, to check the body's claims against: its key, and when it
    arrived (ms; the record's timestamp, never later than the moment it is read)."""

    key: bytes | None
    at_ms: int


DEFAULT_LIMITS: Final = Limits()


class BadInput(ValueError):
    """A message that can never be processed as it is; `reason` is one of `topology.reasons`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------- reading fields


class _Fields:
    """Typed, limit-checked access to one decoded map; errors name `<kind>.<field>`."""

    __slots__ = ("_kind", "_obj", "_version")

    def __init__(
        self, obj: object, kind: str, versions: tuple[int, ...] = (SCHEMA_VERSION,), inherited: int | None = None
    ) -> None:
        """`inherited`: the version of the record this map is part of (an event of a batch has none of its own)."""
        if not isinstance(obj, dict):
            raise BadInput(reasons.SCHEMA_NOT_A_MAP, f"{kind}: expected a msgpack map, got {type(obj).__name__}")
        self._obj: dict[str, Any] = obj
        self._kind = kind
        version = obj.get("v", None) if inherited is None else inherited
        if version not in versions:
            expected = " or ".join(str(v) for v in versions)
            raise BadInput(reasons.SCHEMA_VERSION, f"{kind}.v: expected {expected}, got {version!r}")
        self._version = int(version)

    @property
    def version(self) -> int:
        return self._version

    @property
    def kind(self) -> str:
        return self._kind

    def has(self, name: str) -> bool:
        return self._obj.get(name) is not None

    def raw(self, name: str) -> Any:
        """The field's decoded value unchecked (None when absent): for a caller that checks it itself."""
        return self._obj.get(name)

    def _where(self, name: str) -> str:
        return f"{self._kind}.{name}"

    def _get(self, name: str, required: bool) -> Any:
        if name not in self._obj or self._obj[name] is None:
            if required:
                raise BadInput(reasons.SCHEMA_MISSING_FIELD, f"{self._where(name)} is required")
            return None
        return self._obj[name]

    def _wrong_type(self, name: str, expected: str, value: object) -> BadInput:
        return BadInput(reasons.SCHEMA_WRONG_TYPE, f"{self._where(name)}: expected {expected}, got {type(value).__name__}")

    def ident(self, name: str, max_bytes: int) -> str:
        """A required identifier (see `check_identifier`)."""
        value = self._get(name, required=True)
        if not isinstance(value, str):
            raise self._wrong_type(name, "str", value)
        if (
            value
            and (len(value) * 4 <= max_bytes or len(value.encode("utf-8", "surrogatepass")) <= max_bytes)
            and value.isprintable()
            and ID_FORBIDDEN_CHARS.isdisjoint(value)
            and not value.startswith(CANARY)
        ):
            return value  # every check of `check_identifier` passed (the usual case, without naming the field)
        return check_identifier(value, self._where(name), max_bytes)

    def text(self, name: str, max_chars: int, required: bool = False) -> str:
        value = self._get(name, required)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._wrong_type(name, "str", value)
        if len(value) > max_chars:
            raise BadInput(reasons.LIMIT_TEXT_CHARS, f"{self._where(name)}: {len(value)} chars > limit {max_chars}")
        return value

    def integer(self, name: str, required: bool = True, minimum: int = 0, maximum: int = INT64_MAX) -> int:
        value = self._get(name, required)
        if value is None:
            return minimum
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong_type(name, "int", value)
        if value < minimum:
            raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{self._where(name)}: {value} < {minimum}")
        if value > maximum:
            raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{self._where(name)}: {value} > {maximum}")
        return value

    def binary(self, name: str, max_bytes: int, required: bool = True) -> bytes | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, bytes):
            raise self._wrong_type(name, "bin", value)
        if len(value) > max_bytes:
            raise BadInput(reasons.LIMIT_MEDIA_BYTES, f"{self._where(name)}: {len(value)} bytes > limit {max_bytes}")
        return value

    def tags(self, name: str, limits: Limits) -> tuple[str, ...]:
        value = self._get(name, required=False)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self._wrong_type(name, "array of str", value)
        if len(value) > limits.max_tags:
            raise BadInput(reasons.LIMIT_TAGS, f"{self._where(name)}: {len(value)} tags > limit {limits.max_tags}")
        for tag in value:
            if not isinstance(tag, str):
                raise self._wrong_type(f"{name}[]", "str", tag)
            if len(tag) > limits.max_tag_chars:
                raise BadInput(
                    reasons.LIMIT_TEXT_CHARS, f"{self._where(name)}[]: {len(tag)} chars > limit {limits.max_tag_chars}"
                )
        return tuple(value)

    def binary_list(self, name: str, max_items: int, max_bytes: int) -> tuple[bytes, ...]:
        value = self._get(name, required=False)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self._wrong_type(name, "array of bin", value)
        if len(value) > max_items:
            raise BadInput(reasons.LIMIT_FRAMES, f"{self._where(name)}: {len(value)} > limit {max_items}")
        for item in value:
            if not isinstance(item, bytes):
                raise self._wrong_type(f"{name}[]", "bin", item)
        return tuple(value)

    def strings(self, name: str, max_items: int) -> tuple[str, ...]:
        value = self._get(name, required=False)
        if value is None:
            return ()
        if not isinstance(value, list) or not set(map(type, value)) <= {str}:  # (half the cost of all(isinstance) on 1,024 ids)
            raise self._wrong_type(name, "array of str", value)
        if len(value) > max_items:
            raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{self._where(name)}: {len(value)} > limit {max_items}")
        return tuple(value)

    def weighted_ids(self, name: str, max_items: int, max_id_bytes: int) -> tuple[tuple[str, float], ...]:
        """[[id, weight], ...]: identifiers with finite weights, at most `max_items`; absent: none."""
        value = self._get(name, required=False)
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) > max_items:
            raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{self._where(name)}: expected at most {max_items} [id, weight] pairs")
        out = []
        for pair in value:
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not isinstance(pair[0], str)
                or isinstance(pair[1], bool)
                or not isinstance(pair[1], int | float)
                or not math.isfinite(pair[1])
            ):
                raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{self._where(name)}: expected [id, finite weight] pairs")
            out.append((check_identifier(pair[0], self._where(name), max_id_bytes), float(pair[1])))
        return tuple(out)

    def dims_weights(self, name: str) -> tuple[tuple[int, float], ...]:
        """(dimension, weight) pairs packed as n uint32 then n float64, little-endian (weights exact)."""
        value = self.binary(name, max_bytes=12 * 65536, required=False) or b""
        if len(value) % 12:
            raise BadInput(
                reasons.SCHEMA_INVALID_VALUE, f"{self._where(name)}: {len(value)} bytes is not whole (uint32, float64) pairs"
            )
        n = len(value) // 12
        numbers = struct.unpack(f"<{n}I{n}d", value)
        return tuple(zip(numbers[:n], numbers[n:]))  # "d" unpacks to float already

    def stamped_hashes(self, name: str) -> tuple[tuple[int, int], ...]:
        """(timestamp_ms, hash) pairs packed as little-endian int64 + uint64 in one bin, ascending."""
        value = self.binary(name, max_bytes=16 * 65536, required=False) or b""
        if len(value) % 16:
            raise BadInput(
                reasons.SCHEMA_INVALID_VALUE, f"{self._where(name)}: {len(value)} bytes is not a whole number of 16-byte pairs"
            )
        pairs = struct.unpack(f"<{len(value) // 16 * 'qQ'}", value)
        return tuple(zip(pairs[::2], pairs[1::2]))

    def signals(self, name: str) -> tuple[Signal, ...]:
        """[[event_id, item_id, timestamp_ms, weight], ...] rows of an interest state."""
        value = self._get(name, required=False)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self._wrong_type(name, "array of signals", value)
        out = []
        for row in value:
            if not (
                isinstance(row, list)
                and len(row) == 4
                and isinstance(row[0], str)
                and isinstance(row[1], str)
                and isinstance(row[2], int)
                and isinstance(row[3], (int, float))
            ):
                raise self._wrong_type(f"{name}[]", "[str, str, int, float]", row)
            out.append(Signal(row[0], row[1], row[2], float(row[3])))
        return tuple(out)

    def media(self, name: str, max_bytes: int, max_uri_chars: int) -> Media | None:
        value = self._get(name, required=False)
        return None if value is None else _media(value, self._where(name), max_bytes, max_uri_chars)

    def media_list(self, name: str, max_items: int, max_bytes: int, max_uri_chars: int) -> tuple[Media, ...]:
        value = self._get(name, required=False)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self._wrong_type(name, "array of media", value)
        if len(value) > max_items:
            raise BadInput(reasons.LIMIT_FRAMES, f"{self._where(name)}: {len(value)} > limit {max_items}")
        return tuple(_media(item, f"{self._where(name)}[{i}]", max_bytes, max_uri_chars) for i, item in enumerate(value))


def check_identifier(value: str, where: str, max_bytes: int) -> str:
    """`value` if it is a valid identifier: non-empty, printable (no control, format or zero-width
    characters), at most `max_bytes` UTF-8 bytes, none of `ID_FORBIDDEN_CHARS`, and not in the workers'
    own namespace (`CANARY`: the freshness and isolation probes write and delete rows under those keys,
    so an upload there would be overwritten and deleted without a trace, and recall skips it).

    Raises:
        BadInput: `limit.text_chars` when too long, `schema.invalid_value` otherwise.
    """
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise BadInput(reasons.LIMIT_TEXT_CHARS, f"{where}: identifier of {size} UTF-8 bytes > limit {max_bytes}")
    if not value or not value.isprintable():
        raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{where}: must be non-empty printable text")
    forbidden = sorted(ID_FORBIDDEN_CHARS.intersection(value))
    if forbidden:
        raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{where}: identifiers may not contain {' '.join(forbidden)}")
    if value.startswith(CANARY):
        raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{where}: the prefix {CANARY} is reserved for the workers' probes")
    return value


def check_arrival(kind: str, key_field: str, key_value: str, times: Mapping[str, int], arrival: Arrival, limits: Limits) -> None:
    """The body's claims against its record: the Kafka key names the same id, and each event time
    lies within the allowed skew ahead of (and age behind) the arrival.

    Raises:
        BadInput: `schema.key_mismatch` or `schema.invalid_time`.
    """
    if arrival.key != key_value.encode():
        shown = "no key" if arrival.key is None else f"key {arrival.key[:64]!r}"
        raise BadInput(reasons.SCHEMA_KEY_MISMATCH, f"{kind}.{key_field}: {key_value!r} but the record has {shown}")
    for name, value_ms in times.items():
        ahead_ms = value_ms - arrival.at_ms
        if ahead_ms > limits.max_future_skew_ms:
            raise BadInput(
                reasons.SCHEMA_INVALID_TIME,
                f"{kind}.{name}: {value_ms} is {ahead_ms / 1000:.0f}s after the record arrived (allowed skew "
                f"{limits.max_future_skew_ms / 1000:.0f}s)",
            )
        if limits.max_age_ms and -ahead_ms > limits.max_age_ms:
            raise BadInput(
                reasons.SCHEMA_INVALID_TIME,
                f"{kind}.{name}: {value_ms} is {-ahead_ms / 1000:.0f}s before the record arrived (allowed age "
                f"{limits.max_age_ms / 1000:.0f}s)",
            )


def _media(value: object, where: str, max_bytes: int, max_uri_chars: int) -> Media:
    if isinstance(value, bytes):
        if len(value) > max_bytes:
            raise BadInput(reasons.LIMIT_MEDIA_BYTES, f"{where}: {len(value)} bytes > limit {max_bytes}")
        if not value:
            raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{where}: empty media bytes")
        return Media(data=value)
    if isinstance(value, str):
        if len(value) > max_uri_chars:
            raise BadInput(reasons.LIMIT_TEXT_CHARS, f"{where}: URI of {len(value)} chars > limit {max_uri_chars}")
        check_media_uri(value, where)
        return Media(uri=value)
    raise BadInput(reasons.SCHEMA_WRONG_TYPE, f"{where}: expected bin (inline) or str (URI), got {type(value).__name__}")


def check_media_uri(uri: str, where: str = "uri") -> None:
    """Accept only `file://` paths and `http(s)://` URLs with a host.

    Raises:
        BadInput: with reason `schema.invalid_value` for anything else.
    """
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{where}: unparsable URI ({exc})") from exc
    if parts.scheme not in MEDIA_URI_SCHEMES:
        raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{where}: URI scheme {parts.scheme!r} not in {sorted(MEDIA_URI_SCHEMES)}")
    if parts.scheme == "file" and not parts.path:
        raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{where}: file URI without a path")
    if parts.scheme != "file" and not parts.hostname:
        raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{where}: {parts.scheme} URI without a host")


# --------------------------------------------------------------------------- bytes <-> map


def _unpack(data: bytes, kind: str, limits: Limits, versions: tuple[int, ...] = (SCHEMA_VERSION,)) -> _Fields:
    if len(data) > limits.max_message_bytes:
        raise BadInput(reasons.LIMIT_MESSAGE_BYTES, f"{kind}: {len(data)} bytes > limit {limits.max_message_bytes}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:  # ExtraData, FormatError, bad UTF-8, ...
        raise BadInput(reasons.DECODE_MSGPACK, f"{kind}: {type(exc).__name__}: {exc}"[:300]) from exc
    return _Fields(obj, kind, versions)


def _pack(fields: Mapping[str, object], version: int = SCHEMA_VERSION) -> bytes:
    packed: bytes = msgpack.packb({"v": version, **fields}, use_bin_type=True)
    return packed


def _media_wire(media: Media | None) -> bytes | str | None:
    if media is None:
        return None
    return media.data if media.data is not None else media.uri


# --------------------------------------------------------------------------- public codec


def encode_upload(upload: ContentUpload) -> bytes:
    """The wire bytes of an upload (not validated: `decode_upload` is the gate)."""
    return _pack(
        {
            "item_id": upload.item_id,
            "creator_id": upload.creator_id,
            "created_at_ms": upload.created_at_ms,
            "title": upload.title,
            "ocr_text": upload.ocr_text,
            "asr_text": upload.asr_text,
            "author_nickname": upload.author_nickname,
            "tags": list(upload.tags),
            "cover": _media_wire(upload.cover),
            "frames": [_media_wire(frame) for frame in upload.frames],
            "audio": _media_wire(upload.audio),
        }
    )


def decode_upload(data: bytes, limits: Limits = DEFAULT_LIMITS, arrival: Arrival | None = None) -> ContentUpload:
    """Decode and validate one content upload; with its `arrival`, check its key and time too.

    Raises:
        BadInput: undecodable, invalid or over a limit; `reason` says which.
    """
    f = _unpack(data, "ContentUpload", limits)
    upload = ContentUpload(
        item_id=f.ident("item_id", limits.max_id_bytes),
        creator_id=f.ident("creator_id", limits.max_id_bytes),
        created_at_ms=f.integer("created_at_ms"),
        title=f.text("title", limits.max_title_chars),
        ocr_text=f.text("ocr_text", limits.max_text_chars),
        asr_text=f.text("asr_text", limits.max_text_chars),
        author_nickname=f.text("author_nickname", limits.max_nickname_chars),
        tags=f.tags("tags", limits),
        cover=f.media("cover", limits.max_image_bytes, limits.max_uri_chars),
        frames=f.media_list("frames", limits.max_frames, limits.max_image_bytes, limits.max_uri_chars),
        audio=f.media("audio", limits.max_audio_bytes, limits.max_uri_chars),
    )
    if arrival is not None:
        check_arrival("ContentUpload", "item_id", upload.item_id, {"created_at_ms": upload.created_at_ms}, arrival, limits)
    return upload


def encode_interaction(event: Interaction) -> bytes:
    """The wire bytes of an interaction."""
    return _pack(
        {
            "event_id": event.event_id,
            "user_id": event.user_id,
            "item_id": event.item_id,
            "action": str(event.action),
            "timestamp_ms": event.timestamp_ms,
            "dwell_ms": event.dwell_ms,
        }
    )


def decode_interaction(data: bytes, limits: Limits = DEFAULT_LIMITS, arrival: Arrival | None = None) -> Interaction:
    """Decode and validate one interaction; with its `arrival`, check its key and time too.

    Raises:
        BadInput: undecodable, invalid (unknown action, negative time) or over a limit.
    """
    return _interaction(_unpack(data, "Interaction", limits), limits, arrival)


def _interaction(f: _Fields, limits: Limits, arrival: Arrival | None, user_id: str | None = None) -> Interaction:
    """The interaction in `f`; `user_id`: the batch's user, which the event may omit or must repeat."""
    event_id = f.ident("event_id", limits.max_id_bytes)
    if user_id is None:
        user_id = f.ident("user_id", limits.max_id_bytes)
    elif f.has("user_id") and f.ident("user_id", limits.max_id_bytes) != user_id:
        raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{f.kind}.user_id: not the batch's user {user_id!r}")
    item_id = f.ident("item_id", limits.max_id_bytes)
    action_name = f.ident("action", 32)
    try:
        action = Action(action_name)
    except ValueError as exc:
        known = ", ".join(a.value for a in Action)
        raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{f.kind}.action: {action_name!r} not one of {known}") from exc
    event = Interaction(
        event_id=event_id,
        user_id=user_id,
        item_id=item_id,
        action=action,
        timestamp_ms=f.integer("timestamp_ms"),
        dwell_ms=f.integer("dwell_ms", required=False),
    )
    if arrival is not None:
        check_arrival(f.kind, "user_id", event.user_id, {"timestamp_ms": event.timestamp_ms}, arrival, limits)
    return event


def encode_interaction_batch(user_id: str, events: Sequence[Interaction]) -> bytes:
    """The wire bytes of one user's events in one record (`decode_interactions` reads either form;
    the events leave out the user they share)."""
    if any(e.user_id != user_id for e in events):
        raise ValueError(f"a batch record holds one user's events: not all of them are {user_id!r}'s")
    return _pack(
        {
            "user_id": user_id,
            "events": [
                {
                    "event_id": e.event_id,
                    "item_id": e.item_id,
                    "action": str(e.action),
                    "timestamp_ms": e.timestamp_ms,
                    "dwell_ms": e.dwell_ms,
                }
                for e in events
            ],
        }
    )


@dataclass(frozen=True, slots=True)
class BadEvent:
    """One event of a batch record that cannot be applied: its own bytes (a single-event record, as
    a producer would send it again once fixed), its position in the batch, and why."""

    original: bytes
    index: int
    error: BadInput


@dataclass(frozen=True, slots=True)
class InteractionRecord:
    """What one record of the interactions topic holds: its valid events, its bad ones (a batch
    only), and whether it was a batch (a single event's bytes are then its own record's value)."""

    events: list[Interaction]
    bad: list[BadEvent]
    batch: bool


def decode_interactions(data: bytes, limits: Limits = DEFAULT_LIMITS, arrival: Arrival | None = None) -> InteractionRecord:
    """One record of the interactions topic: a single event, or a batch of one user's events
    (`{"v": 1, "user_id", "events": [{event_id, item_id, action, timestamp_ms, dwell_ms?}, ...]}`,
    at most `limits.max_batch_events`). Each event of a batch is validated on its own: the good ones
    are returned with the bad ones beside them, so one bad event never stops the others.

    Raises:
        BadInput: the record itself is bad (undecodable, a single event that is invalid, a batch
            without a valid user or events list, a key that is not the batch's user, too many events).
    """
    f = _unpack(data, "Interaction", limits)
    if not f.has("events"):
        return InteractionRecord([_interaction(f, limits, arrival)], [], batch=False)
    user_id = f.ident("user_id", limits.max_id_bytes)
    if arrival is not None:
        check_arrival("InteractionBatch", "user_id", user_id, {}, arrival, limits)
    raw = f.raw("events")
    if not isinstance(raw, list) or not raw:
        raise BadInput(reasons.SCHEMA_WRONG_TYPE, "InteractionBatch.events: expected a non-empty array of maps")
    if len(raw) > limits.max_batch_events:
        raise BadInput(
            reasons.LIMIT_BATCH_EVENTS, f"InteractionBatch.events: {len(raw)} events > limit {limits.max_batch_events}"
        )
    good: list[Interaction] = []
    bad: list[BadEvent] = []
    for index, element in enumerate(raw):
        try:
            fields = _Fields(element, "InteractionBatch.events[]", inherited=f.version)
            good.append(_interaction(fields, limits, arrival, user_id))
        except BadInput as exc:  # the event's position named only now: formatting it for every event cost a tenth
            error = BadInput(exc.reason, exc.detail.replace("events[]", f"events[{index}]", 1))
            alone = {"user_id": user_id, **element} if isinstance(element, dict) else element
            bad.append(BadEvent(_pack(alone, f.version) if isinstance(alone, dict) else msgpack.packb(alone), index, error))
    return InteractionRecord(good, bad, batch=True)


def encode_dead_letter(letter: DeadLetter) -> bytes:
    """The wire bytes of a dead-letter envelope; `original` is carried untouched."""
    return _pack(
        {
            "original": letter.original,
            "source_topic": letter.source_topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "reason": letter.reason,
            "detail": letter.detail,
            "key": letter.key,
            "failed_at_ms": letter.failed_at_ms,
        }
    )


def decode_dead_letter(data: bytes, limits: Limits = DEFAULT_LIMITS) -> DeadLetter:
    """Decode a dead-letter envelope (used by tests, replay tools and the status page).

    Raises:
        BadInput: when the envelope itself is malformed.
    """
    # The envelope wraps a message that may itself have hit the size limit: allow for the wrapping.
    wrapped_limit = limits.max_message_bytes + 64 * 1024
    f = _unpack(data, "DeadLetter", Limits(max_message_bytes=wrapped_limit))
    original = f.binary("original", wrapped_limit)
    assert original is not None  # required=True
    return DeadLetter(
        original=original,
        source_topic=f.ident("source_topic", 249),  # Kafka's topic name limit
        partition=f.integer("partition"),
        offset=f.integer("offset"),
        reason=f.ident("reason", 64),
        detail=f.text("detail", 4096),
        key=f.binary("key", wrapped_limit, required=False),  # the key exactly as it arrived, whatever its size
        failed_at_ms=f.integer("failed_at_ms", required=False),
    )


def encode_item_embedding(embedding: ItemEmbedding) -> bytes:
    """The wire bytes of an item embedding for the compacted item-embeddings topic."""
    return _pack(
        {
            "item_id": embedding.item_id,
            "vector": embedding.vector,
            "dim": embedding.dim,
            "model_version": embedding.model_version,
            "created_at_ms": embedding.created_at_ms,
            "encoded_at_ms": embedding.encoded_at_ms,
            "creator_id": embedding.creator_id,
            "sid_codes": embedding.sid_codes,
            "sid_suffix": embedding.sid_suffix,
            "sid_codebook": embedding.sid_codebook,
        }
    )


def decode_item_embedding(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ItemEmbedding:
    """Decode an item embedding; the vector must hold exactly `dim` float32 values.

    Raises:
        BadInput: malformed, or vector length not `4 * dim` bytes.
    """
    f = _unpack(data, "ItemEmbedding", limits)
    dim = f.integer("dim", minimum=1)
    vector = f.binary("vector", max_bytes=4 * 65536)
    if vector is None or len(vector) != 4 * dim:
        raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"ItemEmbedding.vector: {len(vector or b'')} bytes for dim {dim}")
    return ItemEmbedding(
        item_id=f.ident("item_id", limits.max_id_bytes),
        vector=vector,
        dim=dim,
        model_version=f.ident("model_version", 128),
        created_at_ms=f.integer("created_at_ms"),
        encoded_at_ms=f.integer("encoded_at_ms"),
        creator_id=f.text("creator_id", limits.max_id_bytes),
        sid_codes=f.text("sid_codes", SID_CHARS),
        sid_suffix=f.integer("sid_suffix", required=False, minimum=-1),  # absent (before issue 18): -1
        sid_codebook=f.text("sid_codebook", 128),
    )


PAIRS_MAX: Final = 1024  # most previous positives one co-engagement may carry (`collab_pairs` is at most this)
PRIOR_MAX: Final = 64  # most content neighbours one prior may name


def encode_co_engagement(engagement: CoEngagement) -> bytes:
    """The wire bytes of a co-engagement (topic `co-engagements`, key `item_id`)."""
    return _pack(
        {
            "event_id": engagement.event_id,
            "user_id": engagement.user_id,
            "item_id": engagement.item_id,
            "ts": engagement.timestamp_ms,
            "before": list(engagement.before),
            "prior": [[item, float(w)] for item, w in engagement.prior],
        }
    )


def decode_co_engagement(data: bytes, limits: Limits = DEFAULT_LIMITS) -> CoEngagement:
    """Decode a co-engagement; every id must be an identifier, the lists bounded, weights finite.

    Raises:
        BadInput: malformed.
    """
    f = _unpack(data, "CoEngagement", limits)
    before = f.strings("before", PAIRS_MAX)
    for item in before:
        check_identifier(item, "CoEngagement.before", limits.max_id_bytes)
    prior = f.weighted_ids("prior", PRIOR_MAX, limits.max_id_bytes)
    return CoEngagement(
        event_id=f.ident("event_id", limits.max_id_bytes),
        user_id=f.text("user_id", limits.max_id_bytes),
        item_id=f.ident("item_id", limits.max_id_bytes),
        timestamp_ms=f.integer("ts"),
        before=before,
        prior=prior,
    )


COLLAB_STATE_VERSION: Final = 1


def encode_collab_state(state: ItemCollabState) -> bytes:
    """An item's collaborative state as the value of the workers' `item-collab` table: the pairs as
    little-endian uint32 dimensions and float64 weights, the remembered events as 16-byte records."""
    return _pack(
        {
            "pairs": _dims_weights(state.pairs),
            "prior": _dims_weights(state.prior),
            "likes": state.likes,
            "recent": _stamped_hashes(state.recent),
            "floor": state.floor_ms,
            "updated": state.updated_at_ms,
        },
        version=COLLAB_STATE_VERSION,
    )


def decode_collab_state(data: bytes | None, limits: Limits = DEFAULT_LIMITS) -> ItemCollabState:
    """Inverse of `encode_collab_state`; None (an item never engaged with) is the empty state.

    Raises:
        BadInput: not a collaborative state (corrupt, or another writer's record).
    """
    if data is None:
        return ItemCollabState()
    f = _unpack(data, "ItemCollabState", limits, versions=(COLLAB_STATE_VERSION,))
    return ItemCollabState(
        pairs=f.dims_weights("pairs"),
        prior=f.dims_weights("prior"),
        likes=f.integer("likes"),
        recent=f.stamped_hashes("recent"),
        floor_ms=f.integer("floor"),
        updated_at_ms=f.integer("updated"),
    )


def _dims_weights(pairs: tuple[tuple[int, float], ...]) -> bytes:
    return struct.pack(f"<{len(pairs)}I{len(pairs)}d", *(d for d, _ in pairs), *(w for _, w in pairs))


def encode_retry(envelope: RetryEnvelope) -> bytes:
    """The wire bytes of a retry envelope."""
    return _pack(
        {
            "original": envelope.original,
            "source_topic": envelope.source_topic,
            "partition": envelope.partition,
            "offset": envelope.offset,
            "attempts": envelope.attempts,
            "first_seen_ms": envelope.first_seen_ms,
            "not_before_ms": envelope.not_before_ms,
        }
    )


def decode_retry(data: bytes, limits: Limits = DEFAULT_LIMITS) -> RetryEnvelope:
    """Decode a retry envelope.

    Raises:
        BadInput: malformed envelope.
    """
    f = _unpack(data, "RetryEnvelope", limits)
    original = f.binary("original", limits.max_message_bytes)
    assert original is not None  # required=True
    return RetryEnvelope(
        original=original,
        source_topic=f.ident("source_topic", 249),
        partition=f.integer("partition"),
        offset=f.integer("offset"),
        attempts=f.integer("attempts"),
        first_seen_ms=f.integer("first_seen_ms"),
        not_before_ms=f.integer("not_before_ms"),
    )


def encode_encoder_request(request: EncodeRequest) -> bytes:
    """One encode request as the per-item element of the encoder's `item` BYTES tensor."""
    return _pack(
        {
            "role": request.role,
            "title": request.title,
            "ocr_text": request.ocr_text,
            "asr_text": request.asr_text,
            "author_nickname": request.author_nickname,
            "tags": list(request.tags),
            "cover": request.cover,
            "frames": list(request.frames),
            "audio": request.audio,
        }
    )


_ROLES: dict[str, Role] = {"target": "target", "query": "query"}


def decode_encoder_request(data: bytes, limits: Limits = DEFAULT_LIMITS) -> EncodeRequest:
    """Decode an encode request on the server. Field types are checked; sizes only against the
    message limit (the worker checked the upload's own limits, which the server does not know).

    Raises:
        BadInput: not a request blob.
    """
    f = _unpack(data, "EncodeRequest", limits)
    size = limits.max_message_bytes
    text = f.text("role", 8, required=True)
    role = _ROLES.get(text)
    if role is None:
        raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"EncodeRequest.role: {text!r} is not target or query")
    return EncodeRequest(
        role=role,
        title=f.text("title", size),
        ocr_text=f.text("ocr_text", size),
        asr_text=f.text("asr_text", size),
        author_nickname=f.text("author_nickname", size),
        tags=f.strings("tags", size),
        cover=f.binary("cover", size, required=False),
        frames=f.binary_list("frames", size, size),
        audio=f.binary("audio", size, required=False),
    )


HISTORY_MAX: Final = 1024  # most positive item ids a state's history may carry (the setting is far below)
INTEREST_STATE_VERSION: Final = 2  # 1: up to 1,024 remembered event ids in arrival order (read, migrated)


@lru_cache(maxsize=1 << 17)
def event_id_hash(event_id: str) -> int:
    """The stable 64-bit hash of an event id that an interest state remembers (BLAKE2b, 8 bytes).
    Cached: an applied event's id is hashed five times on its way (sampling, replay checks, the
    remembered pair) and a state's window ids at every encode (0.40 -> 0.05 us a hash when cached)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


def _stamped_hashes(pairs: tuple[tuple[int, int], ...]) -> bytes:
    return struct.pack(f"<{len(pairs) * 'qQ'}", *(x for pair in pairs for x in pair))


def encode_interest_state(state: InterestState) -> bytes:
    """A user's interest state as the value of the worker's table (and its changelog record): the
    windows as msgpack rows, the remembered (timestamp, id hash) pairs as 16-byte binary records."""

    def rows(signals: tuple[Signal, ...]) -> list[list[object]]:
        return [[s.event_id, s.item_id, s.timestamp_ms, s.weight] for s in signals]

    def beyond(window: tuple[Signal, ...], recent: tuple[tuple[int, int], ...]) -> bytes:
        """The remembered pairs the window does not already carry (it holds their ids and times)."""
        shown = {(s.timestamp_ms, event_id_hash(s.event_id)) for s in window}
        return _stamped_hashes(tuple(pair for pair in recent if pair not in shown))

    return _pack(
        {
            "pos": rows(state.positives),
            "neg": rows(state.negatives),
            "rp": beyond(state.positives, state.recent_positive),
            "rn": beyond(state.negatives, state.recent_negative),
            "fp": state.floor_positive_ms,
            "fn": state.floor_negative_ms,
            "count": state.event_count,
            "updated": state.updated_at_ms,
            "hist": list(state.history),
        },
        version=INTEREST_STATE_VERSION,
    )


def decode_interest_state(data: bytes | None, limits: Limits = DEFAULT_LIMITS) -> InterestState:
    """Inverse of `encode_interest_state`; None (a user never seen) is the empty state. A version-1
    state (written before the bounded de-duplication) is migrated: its windows are kept, their
    events become the remembered ones, and each kind's floor is its window's oldest event when the
    user applied more events than the windows hold (an older replay changes nothing either way).

    Raises:
        BadInput: not an interest state (a changelog record of another writer, or corrupt).
    """
    if data is None:
        return InterestState()
    f = _unpack(data, "InterestState", limits, versions=(1, INTEREST_STATE_VERSION))
    positives, negatives = f.signals("pos"), f.signals("neg")
    count, updated = f.integer("count"), f.integer("updated")

    def remembered(window: tuple[Signal, ...], beyond: tuple[tuple[int, int], ...] = ()) -> tuple[tuple[int, int], ...]:
        return tuple(sorted({*beyond, *((s.timestamp_ms, event_id_hash(s.event_id)) for s in window)}))

    if f.version == INTEREST_STATE_VERSION:
        rp, rn = remembered(positives, f.stamped_hashes("rp")), remembered(negatives, f.stamped_hashes("rn"))
        history = f.strings("hist", HISTORY_MAX)  # absent in states written before the collaborative pairs: none
        return InterestState(positives, negatives, rp, rn, f.integer("fp"), f.integer("fn"), count, updated, history)
    from_windows = count > len(positives) + len(negatives)  # some applied events are in neither window

    def floor(window: tuple[Signal, ...]) -> int:
        return min(s.timestamp_ms for s in window) if window and from_windows else 0

    return InterestState(
        positives, negatives, remembered(positives), remembered(negatives), floor(positives), floor(negatives), count, updated
    )
