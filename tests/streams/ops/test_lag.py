from streams.ops.lag import PartitionLag, format_table, lag_of


def test_nothing_behind_means_zero_seconds_whatever_the_timestamps() -> None:
    assert lag_of(committed=10, end=10, oldest_unprocessed_ms=None, now_ms=5_000) == (0, 0.0)


def test_seconds_behind_is_the_age_of_the_oldest_unprocessed_record() -> None:
    assert lag_of(committed=7, end=10, oldest_unprocessed_ms=1_000, now_ms=4_500) == (3, 3.5)


def test_clock_skew_never_gives_negative_seconds() -> None:
    assert lag_of(committed=0, end=1, oldest_unprocessed_ms=9_000, now_ms=8_000) == (1, 0.0)


def test_table_totals_sum_messages_and_take_the_worst_seconds() -> None:
    rows = [
        PartitionLag("g", "t", 0, 5, 9, 4, 2.0),
        PartitionLag("g", "t", 1, 3, 3, 0, 0.0),
        PartitionLag("g", "t", 2, 1, 4, 3, 7.5),
    ]
    last = format_table(rows).splitlines()[-1].split()
    assert last == ["g", "t", "all", "7", "7.5"]
