from topology.topics import DEAD_LETTER_OVERHEAD_BYTES, build_topics


def test_topics_are_prefixed_and_keyed_as_the_design_says() -> None:
    topics = build_topics("t1.", partitions=4, max_message_bytes=1000)
    names = [t.name for t in topics.all()]
    assert names == [
        "t1.content-uploads",
        "t1.interactions",
        "t1.item-embeddings",
        "t1.interactions-retry",
        "t1.dead-letters",
        "t1.item-content",
        "t1.co-engagements",
    ]
    assert topics.uploads.key == topics.item_content.key == topics.co_engagements.key == "item_id"  # one worker per item
    assert topics.interactions.key == "user_id"
    assert topics.interactions_retry.key == "user_id"  # retries keep a user's order
    assert all(t.partitions == 4 for t in topics.all())


def test_only_item_embeddings_and_item_content_are_compacted_and_kept_forever() -> None:
    topics = build_topics("p.", 2, 1000)
    compacted = [t for t in topics.all() if t.compacted]
    assert compacted == [topics.item_embeddings, topics.item_content]  # the latest vector, and the latest content, per item
    for spec in compacted:
        configs = spec.configs()
        assert configs["cleanup.policy"] == "compact"
        assert configs["retention.ms"] == "-1"
    assert topics.uploads.configs()["cleanup.policy"] == "delete"
    assert topics.item_content.max_message_bytes == topics.uploads.max_message_bytes  # any upload accepted fits


def test_dead_letters_have_room_for_a_message_at_the_limit() -> None:
    topics = build_topics("p.", 2, max_message_bytes=1000)
    assert topics.uploads.configs()["max.message.bytes"] == "1000"
    assert int(topics.dead_letters.configs()["max.message.bytes"]) == 1000 + DEAD_LETTER_OVERHEAD_BYTES
