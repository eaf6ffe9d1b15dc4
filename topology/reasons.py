"""Why a message was dead-lettered: a closed set, so dashboards can count by reason."""

from typing import Final

DECODE_MSGPACK: Final = "decode.msgpack"
"""The bytes are not one msgpack value (truncated, garbage, invalid UTF-8, trailing bytes)."""
SCHEMA_NOT_A_MAP: Final = "schema.not_a_map"
SCHEMA_VERSION: Final = "schema.unknown_version"
SCHEMA_MISSING_FIELD: Final = "schema.missing_field"
SCHEMA_WRONG_TYPE: Final = "schema.wrong_type"
SCHEMA_INVALID_VALUE: Final = "schema.invalid_value"
LIMIT_MESSAGE_BYTES: Final = "limit.message_bytes"
LIMIT_TEXT_CHARS: Final = "limit.text_chars"
LIMIT_MEDIA_BYTES: Final = "limit.media_bytes"
LIMIT_FRAMES: Final = "limit.frames"
LIMIT_TAGS: Final = "limit.tags"
ITEM_NOT_FOUND: Final = "item.not_found"
"""An interaction's item still had no embedding after the bounded wait."""
MEDIA_UNREADABLE: Final = "media.unreadable"
"""A media URI could not be fetched, or its bytes are not a decodable image/audio."""

ALL: Final[frozenset[str]] = frozenset(
    {
        DECODE_MSGPACK,
        SCHEMA_NOT_A_MAP,
        SCHEMA_VERSION,
        SCHEMA_MISSING_FIELD,
        SCHEMA_WRONG_TYPE,
        SCHEMA_INVALID_VALUE,
        LIMIT_MESSAGE_BYTES,
        LIMIT_TEXT_CHARS,
        LIMIT_MEDIA_BYTES,
        LIMIT_FRAMES,
        LIMIT_TAGS,
        ITEM_NOT_FOUND,
        MEDIA_UNREADABLE,
    }
)
