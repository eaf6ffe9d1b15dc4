"""Hostile input for the fault harness: a seeded fuzzer of what production producers get wrong.

Every bad message comes with the dead-letter reason the workers must give it (None where several
are right, e.g. random bytes). Two kinds are *good* events in disguise and must be applied like any
other: an exact duplicate of an earlier interaction (applied once) and an interaction with an
out-of-order timestamp (the interest maths depends on the set of events, not their arrival order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgpack
import numpy as np

from topology import reasons
from topology.codec import Limits, encode_interaction, encode_upload
from topology.messages import Action, ContentUpload, Interaction

Topic = Literal["uploads", "interactions"]
BAD_KINDS = (
    "random_bytes", "truncated", "wrong_type", "missing_field", "unknown_version", "oversized_image", "huge_text",
    "unknown_action", "unknown_item", "not_a_map",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Hostile:
    """One bad message: where it goes, its bytes, and the reason it must be dead-lettered with."""

    kind: str
    topic: Topic
    key: bytes
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

    def __init__(self, seed: int, limits: Limits, run_id: str) -> None:
        self.rng = np.random.default_rng(seed)
        self.limits = limits
        self.run_id = run_id
        self.count = 0

    def bad(self, upload: ContentUpload, event: Interaction) -> Hostile:
        """One bad message of a random kind, built from a good upload and a good interaction."""
        self.count += 1
        kind = BAD_KINDS[int(self.rng.integers(len(BAD_KINDS)))]
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
            return Hostile(kind, "interactions", event.user_id.encode(), _repack(encode_interaction(event), action="poke"), reasons.SCHEMA_INVALID_VALUE)
        # unknown_item: a well-formed interaction of a real user with an item nobody uploaded
        ghost = Interaction(
            event_id=f"{self.run_id}-ghost-ev-{self.count}", user_id=event.user_id, item_id=f"{self.run_id}-ghost-item-{self.count}",
            action=Action.LIKE, timestamp_ms=event.timestamp_ms,
        )  # fmt: skip
        return Hostile(kind, "interactions", event.user_id.encode(), encode_interaction(ghost), reasons.ITEM_NOT_FOUND)

    def out_of_order(self, event: Interaction, max_age_ms: int = 3_600_000) -> Interaction:
        """A good interaction stamped up to `max_age_ms` in the past (a late or replayed client)."""
        self.count += 1
        return Interaction(
            event_id=f"{self.run_id}-late-ev-{self.count}", user_id=event.user_id, item_id=event.item_id, action=event.action,
            timestamp_ms=max(event.timestamp_ms - int(self.rng.integers(1, max_age_ms)), 0), dwell_ms=event.dwell_ms,
        )  # fmt: skip
