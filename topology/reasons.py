"""Why a message was dead-lettered: a closed set, so dashboards can count by reason."""

from typing import Final

DECODE_MSGPACK: Final = "decode.msgpack"
"""The bytes are not one msgpack value (truncated, garbage, invalid UTF-8, trailing bytes)."""
SCHEMA_NOT_A_MAP: Final = "schema.not_a_map"
SCHEMA_VERSION: Final = "schema.unknown_version"
SCHEMA_MISSING_FIELD: Final = "schema.missing_field"
SCHEMA_WRONG_TYPE: Final = "schema.wrong_type"
SCHEMA_INVALID_VALUE: Final = "schema.invalid_value"
SCHEMA_INVALID_TIME: Final = "schema.invalid_time"
"""An event time too far ahead of the record's arrival (or, when a maximum age is set, too old)."""
SCHEMA_KEY_MISMATCH: Final = "schema.key_mismatch"
"""The Kafka key is not the id the body names (or is missing): applying it would split that id's
state across partitions."""
LIMIT_MESSAGE_BYTES: Final = "limit.message_bytes"
LIMIT_TEXT_CHARS: Final = "limit.text_chars"
LIMIT_MEDIA_BYTES: Final = "limit.media_bytes"
LIMIT_FRAMES: Final = "limit.frames"
LIMIT_TAGS: Final = "limit.tags"
LIMIT_BATCH_EVENTS: Final = "limit.batch_events"
"""A batch record of interactions with more events than the limit (the whole record is refused)."""
ITEM_NOT_FOUND: Final = "item.not_found"
"""An interaction's item still had no embedding after the bounded wait."""
MEDIA_UNREADABLE: Final = "media.unreadable"
"""A media URI could not be fetched, or its bytes are not a decodable image/audio."""
MEDIA_FORBIDDEN: Final = "media.forbidden"
"""A media URI outside what the worker may read: a path outside the media roots, a special file,
or an address that is not public and not allowed (loopback, private, link-local)."""
SINK_REJECTED: Final = "sink.rejected"
"""Milvus refused the record itself (a value its schema cannot hold); the detail has its message."""
ENCODER_REJECTED: Final = "encoder.rejected"
"""Triton refused a request holding only this record while the records around it were encoded."""

ALL: Final[frozenset[str]] = frozenset(
    {
        DECODE_MSGPACK,
        SCHEMA_NOT_A_MAP,
        SCHEMA_VERSION,
        SCHEMA_MISSING_FIELD,
        SCHEMA_WRONG_TYPE,
        SCHEMA_INVALID_VALUE,
        SCHEMA_INVALID_TIME,
        SCHEMA_KEY_MISMATCH,
        LIMIT_MESSAGE_BYTES,
        LIMIT_TEXT_CHARS,
        LIMIT_MEDIA_BYTES,
        LIMIT_FRAMES,
        LIMIT_TAGS,
        LIMIT_BATCH_EVENTS,
        ITEM_NOT_FOUND,
        MEDIA_UNREADABLE,
        MEDIA_FORBIDDEN,
        SINK_REJECTED,
        ENCODER_REJECTED,
    }
)
