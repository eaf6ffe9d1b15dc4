"""Message types carried on the topics. Plain frozen data; `topology.codec` puts them on the wire."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Media:
    """One image or audio payload: inline bytes, or a `file://` / `http(s)://` URI to fetch.

    Exactly one of `data` and `uri` is set; the codec enforces it.
    """

    data: bytes | None = None
    uri: str | None = None

    @classmethod
    def inline(cls, data: bytes) -> Media:
        return cls(data=data)

    @classmethod
    def at(cls, uri: str) -> Media:
        return cls(uri=uri)


@dataclass(frozen=True, slots=True)
class ContentUpload:
    """A creator's new item, keyed by `item_id` on the content-uploads topic."""

    item_id: str
    creator_id: str
    created_at_ms: int
    title: str = ""
    ocr_text: str = ""
    asr_text: str = ""
    author_nickname: str = ""
    tags: tuple[str, ...] = ()
    cover: Media | None = None
    frames: tuple[Media, ...] = ()
    audio: Media | None = None


class Action(StrEnum):
    """What a user did with an item. Positive actions feed the interest vector; negative ones push away."""

    VIEW = "view"
    LIKE = "like"
    SHARE = "share"
    COMMENT = "comment"
    FOLLOW = "follow"
    SKIP = "skip"
    DISLIKE = "dislike"

    @property
    def is_negative(self) -> bool:
        return self in (Action.SKIP, Action.DISLIKE)


@dataclass(frozen=True, slots=True)
class Interaction:
    """One user event, keyed by `user_id` on the interactions topic. `event_id` makes replays idempotent."""

    event_id: str
    user_id: str
    item_id: str
    action: Action
    timestamp_ms: int
    dwell_ms: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be processed: the original bytes exactly as they arrived, and why."""

    original: bytes
    source_topic: str
    partition: int
    offset: int
    reason: str
    detail: str = ""
    key: bytes | None = None
    failed_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class ItemEmbedding:
    """An item's vector as published on the compacted item-embeddings topic (key `item_id`).

    `vector` is float32 little-endian bytes of shape (dim,); `dim` says how many.
    """

    item_id: str
    vector: bytes
    dim: int
    model_version: str
    created_at_ms: int
    encoded_at_ms: int
    creator_id: str = ""


@dataclass(frozen=True, slots=True)
class RetryEnvelope:
    """An interaction waiting for its item's embedding, on the interactions-retry topic (key `user_id`).

    `original` is the interaction exactly as it arrived; the source coordinates are kept for the
    dead letter if the item never shows up.
    """

    original: bytes
    source_topic: str
    partition: int
    offset: int
    attempts: int
    first_seen_ms: int
    not_before_ms: int
