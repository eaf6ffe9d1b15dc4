"""Topic specs: names, partitioning keys, retention and compaction, declared once.

Names are `<prefix><base>` so that several deployments (or test runs) can share one cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

UPLOADS: Final = "content-uploads"
INTERACTIONS: Final = "interactions"
ITEM_EMBEDDINGS: Final = "item-embeddings"
ITEM_CONTENT: Final = "item-content"
INTERACTIONS_RETRY: Final = "interactions-retry"
DEAD_LETTERS: Final = "dead-letters"
CO_ENGAGEMENTS: Final = "co-engagements"

INTEREST_TABLE: Final = "user-interest"  # the workers' Faust table of users' interest states
COLLAB_TABLE: Final = "item-collab"  # the workers' Faust table of items' collaborative states (key item_id)

_DAY_MS: Final = 24 * 3600 * 1000
DEAD_LETTER_OVERHEAD_BYTES: Final = 64 * 1024
"""Room for the envelope around an original message that was itself at the size limit."""


def table_changelog(app_id: str, table: str = INTEREST_TABLE) -> str:
    """The changelog topic Faust keeps for a table of app `app_id` (compacted; created by Faust)."""
    return f"{app_id}-{table}-changelog"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as the project expects it to exist."""

    name: str
    partitions: int
    key: str  # the message field the record key is taken from
    retention_ms: int  # -1: keep forever (compacted topics)
    compacted: bool
    max_message_bytes: int
    replication_factor: int = 1

    def configs(self) -> dict[str, str]:
        """Topic-level configs, as `kafka-configs` would take them."""
        configs = {
            "cleanup.policy": "compact" if self.compacted else "delete",
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(self.max_message_bytes),
        }
        min_insync = replication(self.replication_factor)[1]
        if min_insync > 1:  # an acks=all write is then on two brokers at least, and the topic takes writes with one broker down
            configs["min.insync.replicas"] = str(min_insync)
        if self.compacted:
            # A fresh embedding should replace the old one on disk within minutes, not at segment roll.
            configs["min.cleanable.dirty.ratio"] = "0.1"
            configs["segment.ms"] = str(3600 * 1000)
        return configs


def replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `brokers`: 3 and 2 from three brokers
    on, so an `acks=all` write survives one broker down; 1 and 1 on one broker. The local stack's
    brokers, the topics' configs and the settings' default replication follow this one rule."""
    factor = min(brokers, 3)
    return factor, max(factor - 1, 1)


def changelog_topic(
    app_id: str, partitions: int, max_message_bytes: int, replication_factor: int = 1, table: str = INTEREST_TABLE
) -> TopicSpec:
    """A table's changelog as the workers' Faust app creates it (compacted, kept for ever), for whoever
    must declare it beforehand: a cluster that refuses topic creation by clients, a test."""
    key = "item_id" if table == COLLAB_TABLE else "user_id"
    return TopicSpec(table_changelog(app_id, table), partitions, key, -1, True, max_message_bytes, replication_factor)


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one deployment."""

    uploads: TopicSpec
    interactions: TopicSpec
    item_embeddings: TopicSpec
    interactions_retry: TopicSpec
    dead_letters: TopicSpec
    item_content: TopicSpec
    co_engagements: TopicSpec

    def all(self) -> tuple[TopicSpec, ...]:
        return (
            self.uploads,
            self.interactions,
            self.item_embeddings,
            self.interactions_retry,
            self.dead_letters,
            self.item_content,
            self.co_engagements,
        )


def build_topics(prefix: str, partitions: int, max_message_bytes: int, replication_factor: int = 1) -> Topics:
    """The topic specs for a deployment whose topics are named `<prefix><base>`."""

    def spec(
        base: str, key: str, retention_ms: int, compacted: bool = False, extra_bytes: int = 0, parts: int = partitions
    ) -> TopicSpec:
        return TopicSpec(
            name=f"{prefix}{base}",
            partitions=parts,
            key=key,
            retention_ms=retention_ms,
            compacted=compacted,
            max_message_bytes=max_message_bytes + extra_bytes,
            replication_factor=replication_factor,
        )

    return Topics(
        uploads=spec(UPLOADS, "item_id", 7 * _DAY_MS),
        interactions=spec(INTERACTIONS, "user_id", 7 * _DAY_MS),
        # Compacted: the latest vector per item, so a new worker can warm its cache from the topic.
        item_embeddings=spec(ITEM_EMBEDDINGS, "item_id", -1, compacted=True),
        # Interactions whose item had no embedding yet; same key, so a user's order is kept.
        interactions_retry=spec(INTERACTIONS_RETRY, "user_id", 1 * _DAY_MS),
        dead_letters=spec(DEAD_LETTERS, "item_id|user_id", 30 * _DAY_MS, extra_bytes=DEAD_LETTER_OVERHEAD_BYTES),
        # Compacted: the latest upload of every stored item, as it arrived (media inline or by URI), so
        # that a new model can re-embed the whole catalogue after the uploads topic has deleted it.
        item_content=spec(ITEM_CONTENT, "item_id", -1, compacted=True),
        # Workers to workers: each applied positive with the user's previous ones, keyed by the liked
        # item, so one worker owns each item's collaborative state (`streams.collab.maths`).
        co_engagements=spec(CO_ENGAGEMENTS, "item_id", 7 * _DAY_MS),
    )
