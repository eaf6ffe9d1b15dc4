"""The msgpack wire format of every message, with validation and size limits.

Each message is one msgpack map with a schema version `v`. Decoding checks every field and raises
`BadInput` with a reason from `topology.reasons` and a detail naming the field, so an agent can
dead-letter the original bytes and move on. Unknown extra keys are ignored (newer producers may add
fields); missing or mistyped known keys are errors. Inline media travels as msgpack `bin`, media by
reference as a `str` URI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import msgpack

from topology import reasons
from topology.messages import Action, ContentUpload, DeadLetter, Interaction, ItemEmbedding, Media, RetryEnvelope

SCHEMA_VERSION: Final = 1
MEDIA_URI_SCHEMES: Final = frozenset({"file", "http", "https"})

_MiB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied while decoding. Defaults fit the topics' `max.message.bytes` (8 MiB)."""

    max_message_bytes: int = 8 * _MiB
    max_id_chars: int = 128
    max_title_chars: int = 512
    max_text_chars: int = 8192  # OCR and ASR transcripts; the encoder truncates to its token budget anyway
    max_nickname_chars: int = 128
    max_tags: int = 32
    max_tag_chars: int = 64
    max_image_bytes: int = 4 * _MiB
    max_frames: int = 16
    max_audio_bytes: int = 4 * _MiB
    max_uri_chars: int = 2048


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

    __slots__ = ("_kind", "_obj")

    def __init__(self, obj: object, kind: str) -> None:
        if not isinstance(obj, dict):
            raise BadInput(reasons.SCHEMA_NOT_A_MAP, f"{kind}: expected a msgpack map, got {type(obj).__name__}")
        self._obj: dict[str, Any] = obj
        self._kind = kind
        version = obj.get("v", None)
        if version != SCHEMA_VERSION:
            raise BadInput(reasons.SCHEMA_VERSION, f"{kind}.v: expected {SCHEMA_VERSION}, got {version!r}")

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

    def ident(self, name: str, max_chars: int) -> str:
        """A required, non-empty, printable identifier."""
        value = self.text(name, max_chars, required=True)
        if not value or not value.isprintable():
            raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{self._where(name)}: must be non-empty printable text")
        return value

    def text(self, name: str, max_chars: int, required: bool = False) -> str:
        value = self._get(name, required)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._wrong_type(name, "str", value)
        if len(value) > max_chars:
            raise BadInput(reasons.LIMIT_TEXT_CHARS, f"{self._where(name)}: {len(value)} chars > limit {max_chars}")
        return value

    def integer(self, name: str, required: bool = True, minimum: int = 0) -> int:
        value = self._get(name, required)
        if value is None:
            return minimum
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong_type(name, "int", value)
        if value < minimum:
            raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"{self._where(name)}: {value} < {minimum}")
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
                raise BadInput(reasons.LIMIT_TEXT_CHARS, f"{self._where(name)}[]: {len(tag)} chars > limit {limits.max_tag_chars}")
        return tuple(value)

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


def _unpack(data: bytes, kind: str, limits: Limits) -> _Fields:
    if len(data) > limits.max_message_bytes:
        raise BadInput(reasons.LIMIT_MESSAGE_BYTES, f"{kind}: {len(data)} bytes > limit {limits.max_message_bytes}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:  # ExtraData, FormatError, bad UTF-8, ...
        raise BadInput(reasons.DECODE_MSGPACK, f"{kind}: {type(exc).__name__}: {exc}"[:300]) from exc
    return _Fields(obj, kind)


def _pack(fields: Mapping[str, object]) -> bytes:
    return msgpack.packb({"v": SCHEMA_VERSION, **fields}, use_bin_type=True)


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


def decode_upload(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ContentUpload:
    """Decode and validate one content upload.

    Raises:
        BadInput: undecodable, invalid or over a limit; `reason` says which.
    """
    f = _unpack(data, "ContentUpload", limits)
    return ContentUpload(
        item_id=f.ident("item_id", limits.max_id_chars),
        creator_id=f.ident("creator_id", limits.max_id_chars),
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


def decode_interaction(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Interaction:
    """Decode and validate one interaction.

    Raises:
        BadInput: undecodable, invalid (unknown action, negative time) or over a limit.
    """
    f = _unpack(data, "Interaction", limits)
    event_id = f.ident("event_id", limits.max_id_chars)
    user_id = f.ident("user_id", limits.max_id_chars)
    item_id = f.ident("item_id", limits.max_id_chars)
    action_name = f.ident("action", 32)
    try:
        action = Action(action_name)
    except ValueError as exc:
        known = ", ".join(a.value for a in Action)
        raise BadInput(reasons.SCHEMA_INVALID_VALUE, f"Interaction.action: {action_name!r} not one of {known}") from exc
    return Interaction(
        event_id=event_id,
        user_id=user_id,
        item_id=item_id,
        action=action,
        timestamp_ms=f.integer("timestamp_ms"),
        dwell_ms=f.integer("dwell_ms", required=False),
    )


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
        key=f.binary("key", limits.max_id_chars * 4, required=False),
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
        item_id=f.ident("item_id", limits.max_id_chars),
        vector=vector,
        dim=dim,
        model_version=f.ident("model_version", 128),
        created_at_ms=f.integer("created_at_ms"),
        encoded_at_ms=f.integer("encoded_at_ms"),
        creator_id=f.text("creator_id", limits.max_id_chars),
    )


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
