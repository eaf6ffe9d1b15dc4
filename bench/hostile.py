"""Hostile input: the fault harness's corpus of what producers get wrong, and an end-to-end fuzzer.

    python -m bench.hostile --fuzz 2000                    # 1,000 fuzzed uploads, 1,000 fuzzed interactions
    python -m bench.hostile --fuzz 400 --seed 3 --json fuzz.json

Two tools share this module.

`Fuzzer` (the corpus, for `bench.faults --scenarios hostile`): every bad message comes with the
dead-letter reason the workers must give it (None where several are right, e.g. random bytes). Two
kinds are *good* events in disguise and must be applied like any other: an exact duplicate of an
earlier interaction (applied once) and an interaction with an out-of-order timestamp (the interest
maths depends on the set of events, not their arrival order).

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

`Mutator` and `FuzzRun` (the end-to-end fuzzer, issue 30): seeded structure-aware mutations of valid
uploads and interactions (a field replaced by an edge case of its own domain or by a value of another
type, dropped, nulled, an unknown key added, the Kafka key changed, the msgpack bytes themselves
altered, or several at once), each classified by the real decoder into refused (with its reason) and
accepted. All of them go through the real pipeline (Kafka, a worker, Triton, Milvus): uploads first,
then interactions, whose items are base items, the accepted fuzzed uploads or items nobody uploaded.
The end state is checked against the contract: every refused message dead-lettered once with the
decoder's reason; every accepted upload stored exactly as decoded (ids, times, a unit vector of the
collection's width equal to the encoder's for that upload, a model version; the item-embeddings and
item-content topics carrying the same) or dead-lettered with the media, encoder or sink reason it
deserves; every accepted interaction applied (the user's row equals the pure interest maths over the
user's events) or dead-lettered with a reason; no row and no dead letter that nothing explains. It
reports the counts and every violation with the offending message. A benchmark-sized run, never a
test by itself: `tests/integration/test_fuzz.py` runs a small one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgpack
import numpy as np

from bench.results import scratch_dir, write_result
from deploy.local.stack import Stack, free_ports
from deploy.local.workers import start_worker, wait_for_group
from encoders.client import EncoderClient
from streams.interest.maths import InterestParams, fold_interactions, interest_vectors
from streams.sinks.kafka import ensure_topics, group_offsets, producer, read_topic
from streams.sinks.media import MediaResolver
from streams.sinks.milvus import MilvusSink, ensure_collections, scan_rows
from streams.worker.content import resolve_request
from tests.support.media import image_bytes, wav_bytes
from topology import reasons
from topology.codec import (
    Arrival,
    BadInput,
    Limits,
    decode_dead_letter,
    decode_interaction,
    decode_item_embedding,
    decode_upload,
    encode_interaction,
    encode_upload,
)
from topology.collections import CANARY, INT64_MAX, VECTOR_FIELD, CollectionSpec, row_problem, user_key
from topology.messages import Action, ContentUpload, DeadLetter, Interaction, InterestState, Media

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


# =========================================================================== the end-to-end fuzzer (issue 30)

FUZZ_OPERATORS = ("replace", "retype", "drop", "null", "extra", "key", "wire", "havoc")
# own-domain edge cases weigh most: they are the ones that pass the decoder and test what lies past it
_OPERATOR_WEIGHTS = np.array([6, 1, 1, 1, 1, 1, 2, 2], dtype=np.float64) / 15
UPLOAD_DOMAINS: dict[str, str] = {
    "v": "version",
    "item_id": "id",
    "creator_id": "id",
    "created_at_ms": "time",
    "title": "title",
    "ocr_text": "text",
    "asr_text": "text",
    "author_nickname": "nickname",
    "tags": "tags",
    "cover": "media",
    "frames": "frames",
    "audio": "audio",
}
INTERACTION_DOMAINS: dict[str, str] = {
    "v": "version",
    "event_id": "id",
    "user_id": "id",
    "item_id": "item",
    "action": "action",
    "timestamp_ms": "time",
    "dwell_ms": "count",
}
_FIELD_WEIGHTS: dict[str, float] = {"id": 3.0, "item": 3.0, "time": 2.0}
KEYED_BY: dict[str, str] = {"uploads": "item_id", "interactions": "user_id"}  # the body field the Kafka key must equal
_WORDS = ("cat", "dog", "recipe", "guitar", "travel", "city", "night", "football", "dance", "street", "rain", "piano", "mountain")
SINK_REASONS = frozenset({reasons.SINK_REJECTED, reasons.ENCODER_REJECTED})  # what a store may still refuse of an accepted upload


class _Raw(bytes):
    """Msgpack bytes spliced into a message verbatim: an encoding no msgpack library writes itself."""


def _pack_pairs(pairs: Sequence[tuple[object, object]], header: bytes | None = None) -> bytes:
    """A msgpack map of `pairs` in this order (duplicate keys kept), `_Raw` values as they are."""
    packer = msgpack.Packer(use_bin_type=True)
    out = [header if header is not None else packer.pack_map_header(len(pairs))]
    for name, value in pairs:
        out += [packer.pack(name), bytes(value) if isinstance(value, _Raw) else packer.pack(value)]
    return b"".join(out)


def pad_utf8(stem: str, size: int, filler: str = "x") -> str:
    """`stem` followed by `filler` characters (then 'x') up to exactly `size` UTF-8 bytes."""
    text = stem
    while len((text + filler).encode()) <= size:
        text += filler
    return text + "x" * (size - len(text.encode()))


@dataclass(frozen=True, slots=True)
class Case:
    """One fuzzed message as sent, and the decoder's verdict: `refused` is its reason (None: accepted,
    and `decoded` is what the decoder made of it, the value the end state must hold exactly)."""

    n: int
    topic: Topic
    operator: str
    fields: tuple[str, ...]  # what was mutated: body fields, "<key>" or "<wire:how>"
    key: bytes | None
    value: bytes
    refused: str | None
    decoded: ContentUpload | Interaction | None

    def describe(self) -> str:
        """The offending message, for a report: case number, what was done to it, its key and body."""
        what = f"{self.operator} {'+'.join(self.fields)}"
        return f"case {self.n} ({self.topic}, {what}) key={_short(self.key)} body={show(self.value)}"


def _short(value: object, chars: int = 80) -> str:
    if isinstance(value, bytes) and len(value) > 24:
        return f"<{len(value)} bytes {value[:12]!r}...>"
    if isinstance(value, str) and len(value) > chars:
        return repr(value[: chars // 2]) + f"...<{len(value)} chars>"
    return repr(value)


def show(value: bytes) -> str:
    """A message's body as readable text: its map with long strings and blobs abridged."""
    try:
        obj = msgpack.unpackb(value, raw=False, strict_map_key=False)
    except Exception:
        return f"<{len(value)} bytes, not one msgpack value: {value[:60]!r}>"
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{_short(k)}: {_short(v)}" for k, v in obj.items()) + "}"
    return _short(obj)


class Mutator:
    """Seeded structure-aware mutations of valid messages, each classified by the real decoder.

    Accepted messages never share their identity (an upload's item, an interaction's user) with
    another accepted one, so the end state can be checked message by message."""

    def __init__(self, seed: int, limits: Limits, run_id: str, reserved_ids: tuple[str, ...] = ()) -> None:
        self.rng = np.random.default_rng(seed)
        self.limits = limits
        self.run_id = run_id
        self.reserved_ids = reserved_ids  # ids the system writes itself (the canary's): a fuzzer's dictionary
        self.count = 0
        self._taken: set[tuple[str, str]] = set()

    def _pick(self, options: Sequence[T]) -> T:
        return options[int(self.rng.integers(len(options)))]

    # ------------------------------------------------------------------ valid seeds

    def _words(self, low: int, high: int) -> str:
        return " ".join(self._pick(_WORDS) for _ in range(int(self.rng.integers(low, high + 1))))

    def seed_upload(self, stem: str, now_ms: int) -> ContentUpload:
        """A valid upload: text fields, tags, and now and then a cover, frames or audio."""
        roll = self.rng.random()
        return ContentUpload(
            item_id=stem,
            creator_id=f"{stem}-creator",
            created_at_ms=now_ms - int(self.rng.integers(0, 3_600_000)),
            title=self._words(2, 6),
            ocr_text=self._words(0, 8),
            asr_text=self._words(0, 12),
            author_nickname=self._words(1, 2),
            tags=tuple(self._words(1, 1) for _ in range(int(self.rng.integers(0, 4)))),
            cover=Media.inline(self._image()) if roll < 0.25 else None,
            frames=tuple(Media.inline(self._image()) for _ in range(int(self.rng.integers(1, 3)))) if 0.25 <= roll < 0.35 else (),
            audio=Media.inline(wav_bytes(0.5)) if roll >= 0.95 else None,
        )

    def seed_interaction(self, stem: str, now_ms: int, items: Sequence[str]) -> Interaction:
        return Interaction(
            event_id=f"{stem}-ev",
            user_id=f"{stem}-user",
            item_id=self._pick(items),
            action=self._pick(tuple(Action)),
            timestamp_ms=now_ms - int(self.rng.integers(0, 3_600_000)),
            dwell_ms=int(self.rng.integers(0, 30_000)),
        )

    # ------------------------------------------------------------------ edge cases per domain

    def _value(self, domain: str, field: str, stem: str, now_ms: int, items: Sequence[str]) -> object:
        """An edge case of `domain`: boundaries, Unicode oddities, empty optional values, the codec's
        forbidden characters, and values just past each limit."""
        lim = self.limits
        if domain == "version":
            return self._pick((1, 1.0, True, 2, 0, -1, "1", None, b"\x01"))
        if domain == "time":
            skew, year_ms = lim.max_future_skew_ms, 365 * 86_400_000
            ahead, beyond = now_ms + skew - 60_000, now_ms + skew + 60_000  # a minute either side of the allowed skew
            times: list[object] = [0, 1, now_ms, now_ms - 86_400_000, now_ms - 50 * year_ms, ahead, beyond]
            times += [INT64_MAX, INT64_MAX + 1, -1, 2**64 - 1, float(now_ms), str(now_ms), True]
            return self._pick(times)
        if domain == "count":
            return self._pick((0, 1, 9_999, 10_000, 10_001, INT64_MAX, -1, 2**63, 1.5, "10", False))
        if domain == "action":
            return self._pick((*(a.value for a in Action), "LIKE", "like ", "", "poke", 1, None, ["like"]))
        if domain in ("title", "text", "nickname"):
            limit = {"title": lim.max_title_chars, "text": lim.max_text_chars, "nickname": lim.max_nickname_chars}[domain]
            return self._text(limit)
        if domain == "id":
            return self._ident(f"{stem}-{field.split('_')[0]}")
        if domain == "item":  # an interaction's item: a known one, or one nobody uploaded (with an odd id)
            return self._pick(items) if self.rng.random() < 0.7 else self._ident(f"{stem}-ghost")
        if domain == "tags":
            n, chars = lim.max_tags, lim.max_tag_chars
            tags: list[object] = [[], [""], ["a"] * n, ["a"] * (n + 1), ["x" * chars], ["x" * (chars + 1)], ["😀" * chars]]
            tags += [["dup", "dup"], [None], [["nested"]], "cats", [1], ["猫", "e\u0301", " "], [self._random_text(8)]]
            return self._pick(tags)
        makers: tuple[Callable[[], object], ...]
        if domain == "media":
            return self._media(lim.max_image_bytes)
        if domain == "frames":
            n = lim.max_frames
            makers = (
                list,
                lambda: [self._image()],
                lambda: [self._image(), self.rng.bytes(40)],
                lambda: [self._image()] * n,
                lambda: [self._image()] * (n + 1),
                lambda: [b""],
                lambda: [None],
                lambda: "frame",
                lambda: [self._media(lim.max_image_bytes)],
                lambda: ["file:///etc/hostname"],
            )
            return self._pick(makers)()
        if domain == "audio":
            makers = (
                lambda: wav_bytes(0.5),
                lambda: self.rng.bytes(64),
                lambda: b"RIFF\x00\x00\x00\x00WAVE",
                lambda: "file:///dev/zero",
            )
            return self._pick((*makers, lambda: b"", lambda: 7))()
        raise ValueError(f"unknown domain {domain!r}")

    def _image(self, fmt: str = "PNG") -> bytes:
        return image_bytes(int(self.rng.integers(1 << 30)), size=32, fmt=fmt)

    def _random_text(self, chars: int) -> str:
        """Random code points from ASCII, the BMP and the astral planes (no surrogates: UTF-8 cannot carry them)."""
        points: list[str] = []
        while len(points) < chars:
            low, high = self._pick(((0x20, 0x7F), (0xA0, 0xD800), (0xE000, 0x10000), (0x10000, 0x110000)))
            points.append(chr(int(self.rng.integers(low, high))))
        return "".join(points)

    def _text(self, limit: int) -> str:
        texts = ["", " ", "a" * limit, "a" * (limit + 1), "😀" * limit, "é" * limit, "e\u0301" * (limit // 2)]
        texts += ["e\u0301" * (limit // 2 + 1), "\u202eevil title", "zero\u200bwidth", "nul\x00inside", "\x1b[31mred\x1b[0m"]
        texts += ["line\nbreak\r\ntab\t", "\ufeffbom", "\U0010ffff\ufffe nonchars", "\ufffd", "𝕳𝖊𝖑𝖑𝖔 𝔀𝓸𝓻𝓵𝓭", "猫の動画 さくら"]
        texts += ["مرحبا بالعالم", "שלום עולם", "<script>alert(1)</script>", "' OR 1=1 --", '{"k": [1, 2]}', "%s%n%x"]
        texts += ["${jndi:ldap://x/a}", "a,b;c|d\\e", self._random_text(int(self.rng.integers(1, min(limit, 64) + 1)))]
        return self._pick(texts)

    def _ident(self, stem: str) -> str:
        """An identifier built on a unique `stem`: accepted oddities (any script, combining marks,
        `#/:@`, spaces, exactly the byte limit) and refused ones (the forbidden and invisible
        characters, one byte over), and the ids the system uses itself."""
        size = self.limits.max_id_bytes
        ids = [stem, f"{stem}#0", f"{stem}/a:b@c", f"{stem} with space", f" {stem} ", f"{stem}-猫", f"{stem}-😀\ufe0f"]
        ids += [f"{stem}-e\u0301", f"{stem}-é", f"{stem}-مرحبا", f"{stem}%*?[]{{}}$`~|;<>&", pad_utf8(stem, size)]
        ids += [pad_utf8(stem, size, "😀"), pad_utf8(stem, size + 1), f"{stem}\u00a0", f"{stem}\u200b", f"{stem}\u202e"]
        ids += [f"{stem},x", f"{stem}'", f'{stem}"', f"{stem}\\", f"{stem}\t", "", f"{stem}-{CANARY}", *self.reserved_ids]
        return self._pick(ids)

    def _media(self, max_bytes: int) -> object:
        makers: tuple[Callable[[], object], ...] = (
            self._image,
            lambda: self._image("JPEG"),
            lambda: self.rng.bytes(int(self.rng.integers(1, 256))),
            lambda: b"\x00",
            lambda: b"",
            lambda: self.rng.bytes(max_bytes),
            lambda: self.rng.bytes(max_bytes + 1),
        )
        uris = (
            "file:///etc/hostname",
            "file:///dev/zero",
            "file:",
            "http://127.0.0.1:9/x.png",
            "http://[::1]/x",
            "http://10.1.2.3/x",
        )
        uris += ("http://localhost/x.png", "ftp://example.com/x", "http:///x", "x" * (self.limits.max_uri_chars + 1), "")
        return self._pick((*makers, *(lambda uri=uri: uri for uri in uris), lambda: 12))()

    # ------------------------------------------------------------------ the cases

    def upload(self, now_ms: int) -> Case:
        """One fuzzed upload (a valid one, mutated), classified."""
        return self._case("uploads", now_ms, ())

    def interaction(self, now_ms: int, items: Sequence[str]) -> Case:
        """One fuzzed interaction whose item is one of `items` (or, mutated, any other), classified."""
        return self._case("interactions", now_ms, items)

    def _case(self, topic: Topic, now_ms: int, items: Sequence[str]) -> Case:
        self.count += 1
        for attempt in range(100):  # re-drawn only when an accepted message would share its identity
            stem = f"{self.run_id}-f{self.count}" + (f"r{attempt}" if attempt else "")
            case = self._mutated(topic, stem, now_ms, items)
            identity = self._identity(case)
            if identity is None or identity not in self._taken:
                if identity is not None:
                    self._taken.add(identity)
                return case
        raise AssertionError("no fresh identity in 100 draws")

    @staticmethod
    def _identity(case: Case) -> tuple[str, str] | None:
        if isinstance(case.decoded, ContentUpload):
            return ("item", case.decoded.item_id)
        if isinstance(case.decoded, Interaction):
            return ("user", case.decoded.user_id)
        return None

    def _mutated(self, topic: Topic, stem: str, now_ms: int, items: Sequence[str]) -> Case:
        if topic == "uploads":
            good, domains = encode_upload(self.seed_upload(stem, now_ms)), UPLOAD_DOMAINS
        else:
            good, domains = encode_interaction(self.seed_interaction(stem, now_ms, items)), INTERACTION_DOMAINS
        pairs: list[tuple[object, object]] = list(msgpack.unpackb(good, raw=False).items())
        key: bytes | None = str(dict(pairs)[KEYED_BY[topic]]).encode()
        operator = str(self.rng.choice(FUZZ_OPERATORS, p=_OPERATOR_WEIGHTS))
        steps = (
            [str(self.rng.choice(FUZZ_OPERATORS[:5])) for _ in range(int(self.rng.integers(2, 5)))]
            if operator == "havoc"
            else [operator]
        )
        done: list[str] = []
        header: bytes | None = None
        tail = b""
        for step in steps:
            if step == "key":
                key = self._pick(
                    (None, b"", (key or b"") + b" ", b" " + (key or b""), (key or b"").upper() + b"X", b"\xff" + (key or b""))
                )
                done.append("<key>")
            elif step == "wire":
                how, header, tail = self._wire(pairs, domains, stem, now_ms, items)
                done.append(f"<wire:{how}>")
            else:
                field = self._mutate(step, pairs, domains, stem, now_ms, items)
                done.append(field)
                if field == KEYED_BY[topic]:  # the key follows the body's id, as a producer keys it
                    value = dict(pairs).get(field)
                    key = value.encode() if isinstance(value, str) else key
        value = _pack_pairs(pairs, header) + tail
        decode = decode_upload if topic == "uploads" else decode_interaction
        try:
            decoded: ContentUpload | Interaction | None = decode(value, self.limits, Arrival(key, now_ms))
            refused = None
        except BadInput as exc:
            decoded, refused = None, exc.reason
        return Case(self.count, topic, operator, tuple(done), key, value, refused, decoded)

    def _field(self, domains: dict[str, str]) -> str:
        """A field to mutate; identifiers (primary keys, filter literals, Kafka keys) and times (checked
        against the arrival) drawn more often: that is where the contract is most easily broken."""
        weights = np.array([_FIELD_WEIGHTS.get(domain, 1.0) for domain in domains.values()])
        return str(self.rng.choice(tuple(domains), p=weights / weights.sum()))

    def _mutate(
        self, step: str, pairs: list[tuple[object, object]], domains: dict[str, str], stem: str, now_ms: int, items: Sequence[str]
    ) -> str:
        """Apply one field-level operator to `pairs` in place; the field's name."""
        names = [str(name) for name, _ in pairs]
        if step == "extra":
            name = self._pick(("x_extra", "V", "", "item_id ", "Title", "\x00", "v2", 7, b"bin", 1.5))
            pairs.append((name, self._pick(HOSTILE_VALUES)))
            return f"+{name!r}"
        field = self._field(domains)
        index = names.index(field) if field in names else None
        if step == "drop":
            if index is not None:
                del pairs[index]
            return f"-{field}"
        value = (
            None
            if step == "null"
            else self._pick(HOSTILE_VALUES)
            if step == "retype"
            else self._value(domains[field], field, stem, now_ms, items)
        )
        if index is None:
            pairs.append((field, value))
        else:
            pairs[index] = (field, value)
        return field

    def _wire(
        self, pairs: list[tuple[object, object]], domains: dict[str, str], stem: str, now_ms: int, items: Sequence[str]
    ) -> tuple[str, bytes | None, bytes]:
        """Alter the encoding rather than the values: (what was done, a map header or None, trailing bytes)."""
        how = self._pick(("utf8", "duplicate", "trailing", "wide_int", "map32", "str8", "ext", "deep"))
        strings = [i for i, (_, v) in enumerate(pairs) if isinstance(v, str)]
        ints = [i for i, (_, v) in enumerate(pairs) if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64]
        if how == "utf8" and strings:  # a lone surrogate, an overlong '/', a byte never valid in UTF-8
            bad = self._pick((b"\xed\xa0\x80", b"\xc0\xaf", b"ok\xff"))
            i = self._pick(strings)
            pairs[i] = (pairs[i][0], _Raw(bytes([0xA0 | len(bad)]) + bad))
        elif how == "duplicate":  # the same key twice: msgpack keeps the last
            field = self._field(domains)
            pairs.append((field, self._value(domains[field], field, stem, now_ms, items)))
        elif how == "trailing":
            return how, None, self._pick((b"\xc0", b"\x00", b"\x81\xa1a\x01"))
        elif how == "wide_int" and ints:  # uint64 encoding of a small integer: the same value
            i = self._pick(ints)
            pairs[i] = (pairs[i][0], _Raw(b"\xcf" + int(pairs[i][1]).to_bytes(8, "big")))  # type: ignore[call-overload]
        elif how == "map32":
            return how, b"\xdf" + len(pairs).to_bytes(4, "big"), b""
        elif how == "str8" and strings:  # a short string in the 1-byte-length form: the same value
            i = self._pick(strings)
            data = str(pairs[i][1]).encode()
            if len(data) < 256:
                pairs[i] = (pairs[i][0], _Raw(b"\xd9" + bytes([len(data)]) + data))
        elif how == "ext":  # msgpack extension types: an opaque ext and a timestamp
            i = int(self.rng.integers(len(pairs)))
            pairs[i] = (pairs[i][0], _Raw(self._pick((b"\xd4\x01\x00", b"\xd6\xff\x00\x00\x00\x01"))))
        elif how == "deep":  # arrays nested past any sane depth
            i = int(self.rng.integers(len(pairs)))
            pairs[i] = (pairs[i][0], _Raw(b"\x91" * 5000 + b"\xc0"))
        return how, None, b""


# --------------------------------------------------------------------------- the end state, row by row (pure)


def item_problems(
    row: Mapping[str, Any], upload: ContentUpload, spec: CollectionSpec, expected: np.ndarray | None, window_ms: tuple[int, int]
) -> list[str]:
    """What is wrong with a stored item row for an accepted `upload`: the collection's own limits,
    every field equal to what was decoded, a finite unit vector of the collection's width (like the
    encoder's `expected` one, cosine >= 0.999), a model version, an encode time within `window_ms`."""
    problems = []
    if (problem := row_problem(spec, row)) is not None:
        problems.append(problem)
    for name in ("item_id", "creator_id", "created_at_ms"):
        if row.get(name) != getattr(upload, name):
            problems.append(f"{name} stored as {_short(row.get(name))}, sent as {_short(getattr(upload, name))}")
    if not row.get("model_version") or row.get("model_version") == "canary":
        problems.append(f"model_version {row.get('model_version')!r}")
    encoded = row.get("encoded_at_ms")
    if not isinstance(encoded, int) or not window_ms[0] <= encoded <= window_ms[1]:
        problems.append(f"encoded_at_ms {encoded!r} outside the run {window_ms}")
    sid = (row.get("sid_codes"), row.get("sid_suffix"), row.get("sid_codebook"))
    if (sid[0] == "") != (sid[1] == -1) or (sid[0] == "") != (sid[2] == ""):
        problems.append(f"semantic id half set: {sid}")
    problems += vector_problems(row.get(VECTOR_FIELD), spec.dim, expected)
    return problems


def vector_problems(value: object, dim: int, expected: np.ndarray | None = None, min_cosine: float = 0.999) -> list[str]:
    """A stored vector's faults: width, NaN/inf, norm (vectors are unit: inner product is cosine),
    and its cosine with `expected` when given."""
    vector = np.asarray(value if value is not None else [], dtype=np.float64)
    if vector.shape != (dim,):
        return [f"vector of shape {vector.shape}, expected ({dim},)"]
    if not np.isfinite(vector).all():
        return ["vector with NaN or infinite components"]
    norm = float(np.linalg.norm(vector))
    problems = [] if abs(norm - 1.0) <= 1e-3 else [f"vector norm {norm:.4f}, not 1"]
    if expected is not None:
        cosine = float(vector @ expected / max(norm * float(np.linalg.norm(expected)), 1e-12))
        if cosine < min_cosine:
            problems.append(f"vector unlike the encoder's for this upload (cosine {cosine:.4f})")
    return problems


def user_problems(
    row: Mapping[str, Any], user_id: str, state: InterestState, want: np.ndarray, spec: CollectionSpec
) -> list[str]:
    """What is wrong with a stored user row (slot 0) against the pure maths over the user's events:
    `state` (their fold) and `want` (its interest vectors, (slots, dim))."""
    problems = []
    if (problem := row_problem(spec, row)) is not None:
        problems.append(problem)
    expected = {
        "user_id": user_id,
        "user_key": user_key(user_id, 0),
        "slot": 0,
        "event_count": state.event_count,
        "updated_at_ms": state.updated_at_ms,
    }
    for name, value in expected.items():
        if row.get(name) != value:
            problems.append(f"{name} stored as {_short(row.get(name))}, expected {_short(value)}")
    if not row.get("model_version"):
        problems.append("no model_version")
    for name, signals in (("recent_item_ids", (*state.positives, *state.negatives)), ("positive_item_ids", state.positives)):
        stored = set(str(row.get(name, "")).split(",")) - {""}
        if stored != {s.item_id for s in signals}:
            problems.append(f"{name} {_short(row.get(name))} holds other ids than {sorted(s.item_id for s in signals)}")
    problems += vector_problems(row.get(VECTOR_FIELD), spec.dim)
    stored = row.get(VECTOR_FIELD)
    vector = np.asarray(stored if stored is not None else [], dtype=np.float32)
    if vector.shape == want[0].shape and not np.allclose(vector, want[0], atol=1e-4):
        problems.append(f"vector differs from the interest maths by {float(np.abs(vector - want[0]).max()):.1e}")
    return problems


# --------------------------------------------------------------------------- the run on the real stack


@dataclass(frozen=True, slots=True)
class FuzzPlan:
    uploads: int = 50  # fuzzed uploads
    interactions: int = 50  # fuzzed interactions
    base_items: int = 4  # valid uploads the interactions may name (and every fuzzed user's first event names)
    seed: int = 30
    drain_timeout_s: float = 300.0


@dataclass
class FuzzResult:
    """What one run generated, what became of it, and every violation of the contract."""

    plan: FuzzPlan
    generated: Counter[str] = field(default_factory=Counter)  # per topic
    refused: Counter[str] = field(default_factory=Counter)  # by the decoder's reason
    accepted: Counter[str] = field(default_factory=Counter)  # per topic
    stored: int = 0  # accepted uploads in Milvus as decoded
    applied: int = 0  # accepted interactions whose effect is in the user's row
    not_applied: int = 0  # accepted interactions the maths drops (a replay by id or time): nothing to store
    accepted_dead_lettered: Counter[str] = field(default_factory=Counter)  # accepted messages dead-lettered, by reason
    dead_lettered: Counter[str] = field(default_factory=Counter)  # every dead letter of the run, by reason
    operators: dict[str, list[int]] = field(default_factory=dict)  # operator -> [generated, accepted]
    drained_s: float = 0.0
    violations: list[str] = field(default_factory=list)

    def add(self, case: Case) -> None:
        self.generated[case.topic] += 1
        counts = self.operators.setdefault(case.operator, [0, 0])
        counts[0] += 1
        if case.refused is None:
            self.accepted[case.topic] += 1
            counts[1] += 1
        else:
            self.refused[case.refused] += 1

    def summary(self) -> dict[str, Any]:
        """The figures as plain JSON values (for `bench.results.write_result`)."""
        return {
            "plan": asdict(self.plan),
            "generated": sum(self.generated.values()),
            "generated_by_topic": dict(sorted(self.generated.items())),
            "refused_by_decoder": sum(self.refused.values()),
            "refused_by_reason": dict(sorted(self.refused.items())),
            "accepted": sum(self.accepted.values()),
            "accepted_by_topic": dict(sorted(self.accepted.items())),
            "uploads_stored": self.stored,
            "interactions_applied": self.applied,
            "interactions_dropped_as_replays": self.not_applied,
            "accepted_dead_lettered_by_reason": dict(sorted(self.accepted_dead_lettered.items())),
            "dead_lettered_by_reason": dict(sorted(self.dead_lettered.items())),
            "operators": {name: {"generated": g, "accepted": a} for name, (g, a) in sorted(self.operators.items())},
            "drained_s": round(self.drained_s, 1),
            "violations": len(self.violations),
            "violation_examples": self.violations[:20],
        }

    def table(self) -> str:
        s = self.summary()
        return "\n".join(
            [
                f"generated {s['generated']} {s['generated_by_topic']}; refused by the decoder {s['refused_by_decoder']}, "
                f"accepted {s['accepted']} {s['accepted_by_topic']}",
                f"uploads stored {self.stored}; interactions applied {self.applied} (+{self.not_applied} dropped as replays); "
                f"accepted but dead-lettered {s['accepted_dead_lettered_by_reason']}",
                f"refused by reason {s['refused_by_reason']}",
                f"dead letters by reason {s['dead_lettered_by_reason']}",
                f"operators (generated/accepted) {', '.join(f'{k} {g}/{a}' for k, (g, a) in sorted(self.operators.items()))}",
                f"violations: {len(self.violations)}",
                *(f"  - {v}" for v in self.violations),
            ]
        )


@dataclass
class _Sent:
    base_uploads: list[tuple[ContentUpload, bytes]] = field(default_factory=list)
    uploads: list[Case] = field(default_factory=list)
    base_events: dict[str, tuple[Interaction, bytes]] = field(default_factory=dict)  # by user
    interactions: list[Case] = field(default_factory=list)


def _now_ms() -> int:
    return int(time.time() * 1000)


class FuzzRun:
    """One fuzzing run on a running stack: its own topics, collections and worker, stopped at the end."""

    def __init__(
        self,
        stack: Stack,
        plan: FuzzPlan,
        run_dir: Path,
        progress: Callable[[str], None] = lambda line: None,
        **overrides: object,
    ) -> None:
        tag = f"fuzz{uuid.uuid4().hex[:8]}"
        self.plan, self.progress, self.run_dir = plan, progress, run_dir / tag
        self.settings = stack.settings.model_copy(update={"item_wait_s": 5.0, **overrides}).namespaced(tag)
        s = self.settings
        ensure_topics(s.kafka_bootstrap, s.kafka_security(), s.topics().all())
        ensure_collections(s.milvus_uri, s.milvus_token_value, s.collections(), s.milvus_backend, tls=s.milvus_tls())

    def run(self) -> FuzzResult:
        s, plan = self.settings, self.plan
        (port,) = free_ports(1)
        worker = start_worker(s, port, self.run_dir)
        result = FuzzResult(plan)
        try:
            wait_for_group(s, [worker])
            began_ms = _now_ms()
            mutator = Mutator(plan.seed, s.limits(), s.app_id, reserved_ids=(f"{CANARY}-{port}", f"{CANARY}-probe", CANARY))
            sent = _Sent()
            for n in range(plan.base_items):
                upload = replace(mutator.seed_upload(f"{s.app_id}-base-{n}", _now_ms()), cover=None, frames=(), audio=None)
                sent.base_uploads.append((upload, encode_upload(upload)))
            sent.uploads = [mutator.upload(_now_ms()) for _ in range(plan.uploads)]
            self._send([("uploads", u.item_id.encode(), data) for u, data in sent.base_uploads])
            self._send([("uploads", c.key, c.value) for c in sent.uploads])
            self.progress(f"fuzz: {plan.uploads} fuzzed uploads sent, {sum(c.refused is None for c in sent.uploads)} accepted")
            drained_at = [self._drain(result)]
            items = [u.item_id for u, _ in sent.base_uploads] + [
                c.decoded.item_id for c in sent.uploads if isinstance(c.decoded, ContentUpload)
            ]
            records: list[tuple[Topic, bytes | None, bytes]] = []
            for _ in range(plan.interactions):
                case = mutator.interaction(_now_ms(), items)
                sent.interactions.append(case)
                if isinstance(case.decoded, Interaction):  # each fuzzed user's first event is a valid like of a base item
                    user = case.decoded.user_id
                    base = Interaction(f"{s.app_id}-base-ev-{case.n}", user, items[0], Action.LIKE, _now_ms() - 1000)
                    sent.base_events[user] = (base, encode_interaction(base))
                    records.append(("interactions", user.encode(), sent.base_events[user][1]))
                records.append(("interactions", case.key, case.value))
            self._send(records)
            self.progress(f"fuzz: {plan.interactions} fuzzed interactions sent, {len(sent.base_events)} accepted")
            drained_at.append(self._drain(result))
            result.drained_s = sum(drained_at)
            for case in (*sent.uploads, *sent.interactions):
                result.add(case)
            if not worker.is_running():
                result.violations.append(f"the worker exited; its log ends: {worker.log_tail(20)}")
            self._verify(sent, result, (began_ms, _now_ms()))
        finally:
            worker.stop()
        return result

    # ------------------------------------------------------------------ Kafka

    def _send(self, records: Sequence[tuple[Topic, bytes | None, bytes]]) -> None:
        s = self.settings
        names = {"uploads": s.topics().uploads.name, "interactions": s.topics().interactions.name}
        p = producer(s.kafka_bootstrap, s.kafka_security(), s.max_message_bytes, linger_ms=5)
        try:
            futures = [p.send(names[topic], key=key, value=value) for topic, key, value in records]
            p.flush()
            for future in futures:
                future.get(timeout=60)
        finally:
            p.close()

    def _drain(self, result: FuzzResult) -> float:
        """Seconds until the worker has committed everything sent (a violation when it never does)."""
        s = self.settings
        topics = [t.name for t in (s.topics().uploads, s.topics().interactions, s.topics().interactions_retry)]
        began = time.monotonic()
        behind: dict[str, int] = {}
        while time.monotonic() < began + self.plan.drain_timeout_s:
            try:
                offsets = group_offsets(s.kafka_bootstrap, s.kafka_security(), s.app_id, topics)
                behind = {
                    f"{t}[{p}]@{done}": end - done
                    for t, parts in offsets.items()
                    for p, (done, end) in parts.items()
                    if done < end
                }
                if not behind:
                    return time.monotonic() - began
            except Exception as exc:
                behind = {f"offsets unreadable: {exc}"[:200]: 0}
            time.sleep(1.0)
        result.violations.append(f"lag did not return to zero in {self.plan.drain_timeout_s:.0f}s, behind: {behind}")
        return time.monotonic() - began

    def _records(self, topic: str) -> list[Any]:
        s = self.settings
        return read_topic(s.kafka_bootstrap, s.kafka_security(), topic, s.max_message_bytes)

    # ------------------------------------------------------------------ the oracle

    async def _expected_vectors(self, uploads: Sequence[ContentUpload]) -> dict[str, np.ndarray | str]:
        """Per upload, the encoder's vector for it asked of Triton directly, or the reason its media
        (under the worker's policy) or the encoder refuse it."""
        s = self.settings
        media = MediaResolver(max_bytes=s.max_image_bytes, timeout_s=s.media_fetch_timeout_s, policy=s.media_policy())
        client = EncoderClient.for_settings(s, timeout_s=60.0)
        await media.start()
        await client.start()
        try:
            expected: dict[str, np.ndarray | str] = {}
            ready = []
            for upload in uploads:
                try:
                    ready.append((upload, await resolve_request(media, upload)))
                except BadInput as exc:
                    expected[upload.item_id] = exc.reason
            for start in range(0, len(ready), 16):
                batch = ready[start : start + 16]
                for (upload, _), answer in zip(batch, await client.encode([request for _, request in batch])):
                    expected[upload.item_id] = answer.vector if answer.vector is not None else answer.reason
            return expected
        finally:
            await client.close()
            await media.close()

    def _rows(self, spec: CollectionSpec) -> dict[str, dict[str, Any]]:
        """Every row of a collection, by primary key (a scan: what a get by id might miss shows too)."""
        s = self.settings
        fields = [f.name for f in spec.fields]
        return {
            str(row[spec.primary_key]): row
            for page in scan_rows(s.milvus_uri, s.milvus_token_value, spec.name, "", fields, tls=s.milvus_tls())
            for row in page
        }

    async def _got_by_id(self, spec: CollectionSpec, ids: Sequence[str]) -> set[str]:
        """The ids a Milvus get finds (the workers read item vectors so)."""
        sink = MilvusSink.for_settings(self.settings)
        await sink.start()
        try:
            return {
                str(row[spec.primary_key])
                for start in range(0, len(ids), 200)
                for row in await sink.get(spec.name, ids[start : start + 200], fields=[spec.primary_key])
            }
        finally:
            await sink.close()

    # ------------------------------------------------------------------ the check

    def _verify(self, sent: _Sent, result: FuzzResult, window_ms: tuple[int, int]) -> None:
        s = self.settings
        items_spec, users_spec = s.collections()
        topics = s.topics()
        problems = result.violations
        letters: dict[bytes, list[DeadLetter]] = {}
        for record in self._records(topics.dead_letters.name):
            letter = decode_dead_letter(record.value, s.limits())
            letters.setdefault(letter.original, []).append(letter)
            result.dead_lettered[letter.reason] += 1
        known: set[bytes] = set()

        # every refused message: dead-lettered once per sending, with the decoder's reason
        expected_reasons: dict[bytes, Counter[str]] = {}
        first: dict[bytes, Case] = {}
        for case in (*sent.uploads, *sent.interactions):
            known.add(case.value)
            if case.refused is not None:
                expected_reasons.setdefault(case.value, Counter())[case.refused] += 1
                first.setdefault(case.value, case)
        for value, want in expected_reasons.items():
            got = Counter(letter.reason for letter in letters.get(value, []))
            if got != want:
                shown = dict(got) or "nothing"
                problems.append(f"refused by the decoder as {dict(want)}, dead-lettered as {shown}: {first[value].describe()}")

        # uploads: stored as decoded, or dead-lettered with the reason their media or the encoder give
        rows = self._rows(items_spec)
        accepted = [(c, c.decoded) for c in sent.uploads if isinstance(c.decoded, ContentUpload)]
        uploads = [(None, u, data) for u, data in sent.base_uploads] + [(c, u, c.value) for c, u in accepted]
        expected = asyncio.run(self._expected_vectors([u for _, u, _ in uploads]))
        contents = {r.key: r.value for r in self._records(topics.item_content.name)}
        embeddings = {r.key: r.value for r in self._records(topics.item_embeddings.name)}
        stored_ids: set[str] = set()
        for case, upload, data in uploads:
            known.add(data)
            what = case.describe() if case is not None else f"base upload {upload.item_id!r}"
            row, dead, want = rows.get(upload.item_id), letters.get(data, []), expected[upload.item_id]
            reasons_got = sorted({letter.reason for letter in dead})
            if case is not None:
                result.accepted_dead_lettered.update(letter.reason for letter in dead)
            if row is not None and dead:
                problems.append(f"stored and dead-lettered ({reasons_got}): {what}")
            elif isinstance(want, str):
                if row is not None or [letter.reason for letter in dead] != [want]:
                    problems.append(
                        f"expected dead-lettered {want}, got {'stored' if row is not None else reasons_got or 'nothing'}: {what}"
                    )
            elif row is not None:
                stored_ids.add(upload.item_id)
                found = item_problems(row, upload, items_spec, want, window_ms)
                found += self._published_problems(
                    upload, data, row, contents.get(upload.item_id.encode()), embeddings.get(upload.item_id.encode())
                )
                if found:
                    problems.append(f"stored wrong ({'; '.join(found)}): {what}")
            elif not dead:
                problems.append(f"lost: accepted, neither stored nor dead-lettered: {what}")
            elif case is None or not set(reasons_got) <= SINK_REASONS:
                problems.append(f"dead-lettered {reasons_got} although the encoder gives it a vector: {what}")
        result.stored = len(stored_ids) - len([u for u, _ in sent.base_uploads if u.item_id in stored_ids])
        expected_ids = {u.item_id for _, u, _ in uploads}
        for item_id, row in rows.items():
            if item_id not in expected_ids and row.get("model_version") != "canary":  # a canary probe may be in flight
                problems.append(f"an item row no accepted upload explains: {_short(item_id)} {_short(row.get('creator_id'))}")
        for key in (contents.keys() | embeddings.keys()) - {i.encode() for i in stored_ids}:
            problems.append(f"item {_short(key)} published on the item topics but not stored")
        missing = stored_ids - asyncio.run(self._got_by_id(items_spec, sorted(stored_ids)))
        if missing:
            problems.append(f"stored items a Milvus get by id does not find (the interest agent reads so): {sorted(missing)[:5]}")

        # interactions: the user's row is the pure maths over the user's applied events
        vectors = {i: np.asarray(rows[i][VECTOR_FIELD], dtype=np.float32) for i in stored_ids}
        params = InterestParams.for_settings(s)
        users = self._rows(users_spec)
        seen_users: set[str] = set()
        for case in sent.interactions:
            if not isinstance(case.decoded, Interaction):
                continue
            event = case.decoded
            base, base_data = sent.base_events[event.user_id]
            known.add(base_data)
            seen_users.add(user_key(event.user_id, 0))
            dead, dead_base = letters.get(case.value, []), letters.get(base_data, [])
            result.accepted_dead_lettered.update(letter.reason for letter in dead)
            if {letter.reason for letter in (*dead, *dead_base)} & SINK_REASONS:
                continue  # Milvus refused the user's row: their batch's events are dead letters, by design
            if dead_base:
                problems.append(
                    f"a valid event dead-lettered ({sorted({x.reason for x in dead_base})}) beside: {case.describe()}"
                )
            if event.item_id in vectors:
                if dead:
                    problems.append(
                        f"dead-lettered {sorted({x.reason for x in dead})} although its item is stored: {case.describe()}"
                    )
                events = [base, event]
            else:
                if [x.reason for x in dead] != [reasons.ITEM_NOT_FOUND]:
                    problems.append(
                        f"item never stored, dead-lettered as {[x.reason for x in dead] or 'nothing'}: {case.describe()}"
                    )
                events = [base]
            state = fold_interactions(events, params)
            if len(events) == 2:
                if state.event_count == 2:
                    result.applied += 1
                else:
                    result.not_applied += 1
            want_vectors = interest_vectors(state, vectors, params)
            row = users.get(user_key(event.user_id, 0))
            if row is None or want_vectors is None:
                problems.append(f"no user row for {_short(event.user_id)}: {case.describe()}")
                continue
            found = user_problems(row, event.user_id, state, want_vectors, users_spec)
            if found:
                problems.append(f"user stored wrong ({'; '.join(found)}): {case.describe()}")
        for key in users.keys() - seen_users:
            problems.append(f"a user row no accepted interaction explains: {_short(key)}")
        for value, found in letters.items():
            if value not in known:
                problems.append(f"a dead letter of a message never sent: {show(value)} ({found[0].reason})")

    @staticmethod
    def _published_problems(
        upload: ContentUpload, data: bytes, row: Mapping[str, Any], content: bytes | None, embedding: bytes | None
    ) -> list[str]:
        """The item topics against the row: the content exactly the bytes sent, the embedding the row's."""
        problems = []
        if content != data:
            problems.append("item-content record " + ("missing" if content is None else "differs from the bytes sent"))
        if embedding is None:
            return [*problems, "item-embeddings record missing"]
        published = decode_item_embedding(embedding)
        vector = np.frombuffer(published.vector, dtype="<f4")
        stored = np.asarray(row[VECTOR_FIELD], dtype=np.float32)
        if (published.item_id, published.creator_id, published.created_at_ms) != (
            upload.item_id,
            upload.creator_id,
            upload.created_at_ms,
        ):
            problems.append(
                f"item-embeddings record names {(published.item_id, published.creator_id, published.created_at_ms)!r}"
            )
        if (
            published.model_version != row.get("model_version")
            or vector.shape != stored.shape
            or not np.allclose(vector, stored, atol=1e-6)
        ):
            problems.append("item-embeddings record's vector or model_version differs from the row")
        return problems


# --------------------------------------------------------------------------- command line


def main() -> None:
    from tests.support.stack import local_settings

    parser = argparse.ArgumentParser(
        prog="python -m bench.hostile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--fuzz", type=int, required=True, metavar="N", help="fuzzed messages: N/2 uploads, then N/2 interactions"
    )
    parser.add_argument("--seed", type=int, default=FuzzPlan().seed, help=f"seed of the mutations (default {FuzzPlan().seed})")
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="seconds to wait for zero lag after each phase")
    parser.add_argument("--json", type=Path, help="also write the whole report (every violation) here")
    args = parser.parse_args()

    def progress(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    state = scratch_dir("sail-bench-fuzz-")
    settings = local_settings(state, f"fuzz{uuid.uuid4().hex[:6]}.", topic_partitions=4).model_copy(
        update={"encoder": "sail-tiny-omni", "max_image_bytes": 256 * 1024}
    )
    plan = FuzzPlan(
        uploads=args.fuzz - args.fuzz // 2, interactions=args.fuzz // 2, seed=args.seed, drain_timeout_s=args.drain_timeout
    )
    stack = Stack(settings, progress=progress)
    try:
        stack.up()
        result = FuzzRun(stack, plan, state / "fuzz", progress).run()
    finally:
        stack.down()
    print(result.table())
    print(f"summary written to {write_result('fuzz', result.summary())}")
    if args.json:
        args.json.write_text(json.dumps({**result.summary(), "violation_examples": result.violations}, indent=2))
    raise SystemExit(1 if result.violations else 0)


if __name__ == "__main__":
    main()
