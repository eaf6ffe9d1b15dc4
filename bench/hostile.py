"""Hostile input for the fault harness: a seeded fuzzer of what production producers get wrong.

Every bad message comes with the dead-letter reason the workers must give it (None where several
are right, e.g. random bytes). Two kinds are *good* events in disguise and must be applied like any
other: an exact duplicate of an earlier interaction (applied once) and an interaction with an
out-of-order timestamp (the interest maths depends on the set of events, not their arrival order).

The kinds, by what they attack:
- the decoder: random bytes, truncated msgpack, not a map, unknown version, missing field, wrong type;
- the limits: oversized image, huge text, identifiers over 128 UTF-8 bytes;
- the sinks' types: integers beyond int64 (Milvus refuses the row), identifiers with the characters
  that quote or separate ids in Milvus filters (comma, quotes, backslash) or invisible ones;
- the claims: event times far in the future, a Kafka key that is not the body's id (or none);
- the media fetcher: URIs naming special or private files (`/dev/zero`, `/proc/self/environ`) and
  internal addresses (loopback, link-local metadata, private ranges, IPv4-mapped IPv6): refused
  before any byte is read or any connection opened;
- the schema as a whole: structure-aware mutations of a valid message (one field replaced by a value
  of another type, out of range, or hostile text), kept only when the codec refuses them;
- the item wait: a well-formed interaction with an item nobody uploaded.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

import msgpack
import numpy as np

from topology import reasons
from topology.codec import Arrival, BadInput, Limits, decode_interaction, decode_upload, encode_interaction, encode_upload
from topology.messages import Action, ContentUpload, Interaction, Media

T = TypeVar("T")

Topic = Literal["uploads", "interactions"]
BAD_KINDS = (
    "random_bytes",
    "truncated",
    "wrong_type",
    "missing_field",
    "unknown_version",
    "oversized_image",
    "huge_text",
    "unknown_action",
    "unknown_item",
    "not_a_map",
    "int64_overflow",
    "future_time",
    "key_mismatch",
    "bad_identifier",
    "long_identifier",
    "forbidden_file",
    "internal_url",
    "mutation",
)
MEDIA_KINDS = ("forbidden_file", "internal_url")  # refused by the media fetcher, not by the codec
FORBIDDEN_FILES = (
    "file:///dev/zero",
    "file:///dev/urandom",
    "file:///proc/self/environ",
    "file:///etc/passwd",
    "file:///proc/self/mem",
)
INTERNAL_URLS = (
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/v2/vectordb/collections/list",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/cover.jpg",
    "http://192.168.1.1/x.png",
    "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://0.0.0.0:{port}/",
)
HOSTILE_VALUES: tuple[object, ...] = (
    2**64 - 1,
    2**63,
    -1,
    -(2**63),
    float("nan"),
    float("inf"),
    1.5,
    True,
    None,
    "",
    "a,b",
    "x'y",
    'q"q',
    "b\\s",
    "zero\u200bwidth",
    "\u202eevil",
    "\x00nul",
    "é" * 200,
    b"\x00\x01",
    [],
    [1, [2, [3]]],
    {"k": "v"},
    {1: 2},
)


@dataclass(frozen=True, slots=True)
class Hostile:
    """One bad message: where it goes, its bytes, and the reason it must be dead-lettered with."""

    kind: str
    topic: Topic
    key: bytes | None  # None: sent without a key
    value: bytes
    reason: str | None  # None: any reason of `topology.reasons.ALL` is right


def _repack(data: bytes, **changes: object) -> bytes:
    fields = msgpack.unpackb(data, raw=False)
    for name, value in changes.items():
        if value is _DROP:
            fields.pop(name)
        else:
            fields[name] = value
    return msgpack.packb(fields, use_bin_type=True)


_DROP = object()


class Fuzzer:
    """Bad messages and disguised good ones, derived from the good traffic of the same run."""

    def __init__(self, seed: int, limits: Limits, run_id: str, internal_port: int = 19530) -> None:
        self.rng = np.random.default_rng(seed)
        self.limits = limits
        self.run_id = run_id
        self.internal_port = internal_port  # a loopback service the internal URLs aim at (Milvus's port in the harness)
        self.count = 0
        self.by_kind: Counter[str] = Counter()

    def _pick(self, options: tuple[T, ...]) -> T:
        return options[int(self.rng.integers(len(options)))]

    def bad(self, upload: ContentUpload, event: Interaction) -> Hostile:
        """One bad message of a random kind, built from a good upload and a good interaction."""
        self.count += 1
        hostile = self._bad(self._pick(BAD_KINDS), upload, event)
        self.by_kind[hostile.kind] += 1
        return hostile

    def _bad(self, kind: str, upload: ContentUpload, event: Interaction) -> Hostile:
        upload = replace(upload, item_id=f"{self.run_id}-bad-{self.count}")  # its own item: the good upload stays good
        on_uploads = bool(self.rng.integers(2))
        good = encode_upload(upload) if on_uploads else encode_interaction(event)
        topic: Topic = "uploads" if on_uploads else "interactions"
        key = (upload.item_id if on_uploads else event.user_id).encode()
        if kind == "random_bytes":
            return Hostile(kind, topic, key, self.rng.bytes(int(self.rng.integers(1, 512))), None)
        if kind == "truncated":
            return Hostile(kind, topic, key, good[: int(self.rng.integers(1, len(good)))], None)
        if kind == "not_a_map":
            return Hostile(kind, topic, key, msgpack.packb([1, "two", 3.0]), reasons.SCHEMA_NOT_A_MAP)
        if kind == "unknown_version":
            return Hostile(kind, topic, key, _repack(good, v=99), reasons.SCHEMA_VERSION)
        if kind == "missing_field":
            return Hostile(kind, topic, key, _repack(good, **{"item_id": _DROP}), reasons.SCHEMA_MISSING_FIELD)
        if kind == "wrong_type":
            field = "created_at_ms" if on_uploads else "timestamp_ms"
            return Hostile(kind, topic, key, _repack(good, **{field: "yesterday"}), reasons.SCHEMA_WRONG_TYPE)
        if kind == "huge_text":
            text = "spam " * (self.limits.max_text_chars // 5 + 1)
            value = _repack(encode_upload(upload), asr_text=text)
            return Hostile(kind, "uploads", upload.item_id.encode(), value, reasons.LIMIT_TEXT_CHARS)
        if kind == "oversized_image":
            value = _repack(encode_upload(upload), cover=self.rng.bytes(self.limits.max_image_bytes + 1))
            return Hostile(kind, "uploads", upload.item_id.encode(), value, reasons.LIMIT_MEDIA_BYTES)
        if kind == "unknown_action":
            return Hostile(
                kind,
                "interactions",
                event.user_id.encode(),
                _repack(encode_interaction(event), action="poke"),
                reasons.SCHEMA_INVALID_VALUE,
            )
        if kind == "int64_overflow":
            field = "created_at_ms" if on_uploads else self._pick(("timestamp_ms", "dwell_ms"))
            return Hostile(
                kind, topic, key, _repack(good, **{field: self._pick((2**63, 2**64 - 1))}), reasons.SCHEMA_INVALID_VALUE
            )
        if kind == "future_time":
            ahead_ms = int(self.rng.integers(3600, 1000 * 365 * 86_400)) * 1000  # an hour to a thousand years
            field = "created_at_ms" if on_uploads else "timestamp_ms"
            return Hostile(
                kind, topic, key, _repack(good, **{field: int(time.time() * 1000) + ahead_ms}), reasons.SCHEMA_INVALID_TIME
            )
        if kind == "key_mismatch":  # a message of its own (the good event's bytes are sent as good), under another key or none
            value = good if on_uploads else encode_interaction(replace(event, event_id=f"{self.run_id}-misrouted-{self.count}"))
            return Hostile(kind, topic, self._pick((None, b"", key + b"x", b"someone-else")), value, reasons.SCHEMA_KEY_MISMATCH)
        if kind == "bad_identifier":
            field = "item_id" if on_uploads else self._pick(("user_id", "item_id", "event_id"))
            bad_id = self._pick((",", "'", '"', "\\", "\u200b", "\u202e", "\n")).join(("id", str(self.count)))
            return self._with_field(kind, topic, key, good, field, bad_id, reasons.SCHEMA_INVALID_VALUE)
        if kind == "long_identifier":
            field = "item_id" if on_uploads else self._pick(("user_id", "item_id", "event_id"))
            return self._with_field(kind, topic, key, good, field, "é" * 65, reasons.LIMIT_TEXT_CHARS)  # 65 chars, 130 bytes
        if kind == "forbidden_file":
            return self._cover(kind, upload, self._pick(FORBIDDEN_FILES))
        if kind == "internal_url":
            return self._cover(kind, upload, self._pick(INTERNAL_URLS).format(port=self.internal_port))
        if kind == "mutation":
            return self._mutation(topic, key, good)
        # unknown_item: a well-formed interaction of a real user with an item nobody uploaded
        ghost = Interaction(
            event_id=f"{self.run_id}-ghost-ev-{self.count}",
            user_id=event.user_id,
            item_id=f"{self.run_id}-ghost-item-{self.count}",
            action=Action.LIKE,
            timestamp_ms=event.timestamp_ms,
        )
        return Hostile(kind, "interactions", event.user_id.encode(), encode_interaction(ghost), reasons.ITEM_NOT_FOUND)

    def _with_field(self, kind: str, topic: Topic, key: bytes, good: bytes, field: str, value: str, reason: str) -> Hostile:
        """`good` with one id field replaced; the key follows the body's id where the key is that id."""
        keyed_by = "item_id" if topic == "uploads" else "user_id"
        return Hostile(kind, topic, value.encode() if field == keyed_by else key, _repack(good, **{field: value}), reason)

    def _cover(self, kind: str, upload: ContentUpload, uri: str) -> Hostile:
        value = encode_upload(replace(upload, cover=Media.at(uri)))
        return Hostile(kind, "uploads", upload.item_id.encode(), value, reasons.MEDIA_FORBIDDEN)

    def _mutation(self, topic: Topic, key: bytes, good: bytes) -> Hostile:
        """One field of a valid message replaced by a hostile value, re-drawn until the codec refuses
        it (a mutation that is still valid is a good message, not a bad one)."""
        decode = decode_upload if topic == "uploads" else decode_interaction
        fields = sorted(msgpack.unpackb(good, raw=False))
        for _ in range(100):
            value = _repack(good, **{self._pick(tuple(fields)): self._pick(HOSTILE_VALUES)})
            try:
                decode(value, self.limits, Arrival(key, int(time.time() * 1000)))
            except BadInput:
                return Hostile("mutation", topic, key, value, None)
        raise AssertionError("no refused mutation in 100 draws")

    def out_of_order(self, event: Interaction, max_age_ms: int = 3_600_000) -> Interaction:
        """A good interaction stamped up to `max_age_ms` in the past (a late or replayed client)."""
        self.count += 1
        return Interaction(
            event_id=f"{self.run_id}-late-ev-{self.count}",
            user_id=event.user_id,
            item_id=event.item_id,
            action=event.action,
            timestamp_ms=max(event.timestamp_ms - int(self.rng.integers(1, max_age_ms)), 0),
            dwell_ms=event.dwell_ms,
        )
