"""Message types carried on the topics, the interest state kept in the table's changelog, and the
request the worker sends the encoder. Plain frozen data; `topology.codec` puts them on the wire."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


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
    sid_codes: str = ""  # the semantic ID (issue 18): L codes "12.200.7", "" before a codebook
    sid_suffix: int = -1  # the collision suffix; -1 with no codes
    sid_codebook: str = ""  # the codebook that assigned them


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


# --------------------------------------------------------------------------- the user-interest table's changelog


@dataclass(frozen=True, slots=True)
class Signal:
    """One applied positive or negative event, as kept in the state (vectors are looked up)."""

    event_id: str
    item_id: str
    timestamp_ms: int
    weight: float

    @property
    def order(self) -> tuple[int, str]:
        return (self.timestamp_ms, self.event_id)


@dataclass(frozen=True, slots=True)
class InterestState:
    """A user's interest state: the value of the worker's table (key `user_id`), so the changelog
    topic's records. `streams.interest.maths` computes it; `topology.codec` puts it on the wire.

    De-duplication is bounded: per kind (positive, negative), the (timestamp_ms, 64-bit id hash) of
    the newest applied events, at most `InterestParams.dedup_per_kind`, and a floor below which an
    event counts as applied already (too old to tell)."""

    positives: tuple[Signal, ...] = ()  # oldest first, at most `window`
    negatives: tuple[Signal, ...] = ()
    recent_positive: tuple[tuple[int, int], ...] = ()  # (timestamp_ms, id hash), ascending
    recent_negative: tuple[tuple[int, int], ...] = ()
    floor_positive_ms: int = 0  # a positive event older than this counts as applied
    floor_negative_ms: int = 0
    event_count: int = 0  # events applied (each once)
    updated_at_ms: int = 0  # the newest event timestamp applied
    history: tuple[str, ...] = ()  # item ids of the newest applied positives, in the order applied (collaborative pairs)

    def item_ids(self) -> set[str]:
        return {s.item_id for s in (*self.positives, *self.negatives)}


# --------------------------------------------------------------------------- collaborative vectors (worker -> worker)


@dataclass(frozen=True, slots=True)
class CoEngagement:
    """One applied positive, as the item-keyed collaborative stage reads it (topic `co-engagements`,
    key `item_id`): the user's positives before it are the items it was engaged together with. The
    content stage sends one more kind, an upload's prior (`prior` set, `before` empty, no user)."""

    event_id: str
    user_id: str
    item_id: str
    timestamp_ms: int
    before: tuple[str, ...] = ()  # the user's previous positives, newest first (at most `collab_pairs`)
    prior: tuple[tuple[str, float], ...] = ()  # an upload's nearest items by content (the content stage's prior record)


@dataclass(frozen=True, slots=True)
class ItemCollabState:
    """An item's collaborative state: the value of the worker's `collab` table (key `item_id`).

    `pairs`: (dimension, weight) of the items engaged together with this one, ascending by
    dimension (`streams.collab.maths.dimension`); `prior`: the same for the content-mapped start of
    an upload (its nearest items by content), which interactions outweigh; de-duplication as the
    interest state's: the newest applied (timestamp, event id hash) pairs and a floor."""

    pairs: tuple[tuple[int, float], ...] = ()
    prior: tuple[tuple[int, float], ...] = ()
    likes: int = 0
    recent: tuple[tuple[int, int], ...] = ()
    floor_ms: int = 0
    updated_at_ms: int = 0


# --------------------------------------------------------------------------- the encoder's request (worker -> Triton)

Role = Literal["target", "query"]


@dataclass(frozen=True, slots=True)
class EncodeRequest:
    """One item (role `target`) or query (role `query`) to embed: token-free text and raw media bytes.

    Media URIs are resolved by the caller; the server decodes and preprocesses next to the model.
    """

    role: Role = "target"
    title: str = ""
    ocr_text: str = ""
    asr_text: str = ""
    author_nickname: str = ""
    tags: tuple[str, ...] = ()
    cover: bytes | None = None
    frames: tuple[bytes, ...] = ()
    audio: bytes | None = None  # a WAV file's bytes
