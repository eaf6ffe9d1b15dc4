"""The item-wait decision: an interaction is dead-lettered only once every earlier upload was processed."""

from streams.worker.waiting import caught_up


def test_caught_up_only_when_every_pending_record_is_newer_than_the_moment() -> None:
    assert caught_up([], since_ms=5_000)  # no lag anywhere
    assert caught_up([6_000, 9_000], since_ms=5_000)  # what is left was written after the moment
    assert not caught_up([6_000, 5_000], since_ms=5_000)  # a record from that moment still waits
    assert not caught_up([None], since_ms=5_000)  # lag whose age is unknown: not caught up
