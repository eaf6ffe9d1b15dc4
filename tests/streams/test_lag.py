from streams.lag import PartitionLag, caught_up, format_table, lag_of


def test_nothing_behind_means_zero_seconds_whatever_the_timestamps() -> None:
    assert lag_of(committed=10, end=10, oldest_unprocessed_ms=None, now_ms=5_000) == (0, 0.0)


def test_seconds_behind_is_the_age_of_the_oldest_unprocessed_record() -> None:
    assert lag_of(committed=7, end=10, oldest_unprocessed_ms=1_000, now_ms=4_500) == (3, 3.5)


def test_clock_skew_never_gives_negative_seconds() -> None:
    assert lag_of(committed=0, end=1, oldest_unprocessed_ms=9_000, now_ms=8_000) == (1, 0.0)


def test_table_totals_sum_messages_and_take_the_worst_seconds() -> None:
    rows = [PartitionLag("g", "t", 0, 5, 9, 4, 2.0), PartitionLag("g", "t", 1, 3, 3, 0, 0.0), PartitionLag("g", "t", 2, 1, 4, 3, 7.5)]
    last = format_table(rows).splitlines()[-1].split()
    assert last == ["g", "t", "all", "7", "7.5"]


def test_caught_up_only_when_every_pending_record_is_newer_than_the_moment() -> None:
    assert caught_up([], since_ms=5_000)  # no lag anywhere
    assert caught_up([6_000, 9_000], since_ms=5_000)  # what is left was written after the moment
    assert not caught_up([6_000, 5_000], since_ms=5_000)  # a record from that moment still waits
    assert not caught_up([None], since_ms=5_000)  # lag whose age is unknown: not caught up
