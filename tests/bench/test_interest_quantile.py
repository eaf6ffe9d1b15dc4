"""bench.interest reads user freshness from the worker's histogram like Prometheus's histogram_quantile."""

from bench.interest import histogram_quantile

PAGE = """# HELP sail_user_freshness_seconds x
# TYPE sail_user_freshness_seconds histogram
sail_user_freshness_seconds_bucket{le="0.1"} 0.0
sail_user_freshness_seconds_bucket{le="0.25"} 50.0
sail_user_freshness_seconds_bucket{le="0.5"} 90.0
sail_user_freshness_seconds_bucket{le="1.0"} 100.0
sail_user_freshness_seconds_bucket{le="+Inf"} 100.0
sail_user_freshness_seconds_count 100.0
sail_user_freshness_seconds_sum 30.0
"""


def test_quantiles_interpolate_within_the_bucket_that_holds_the_rank() -> None:
    assert histogram_quantile(PAGE, "sail_user_freshness_seconds", 0.5) == 0.25  # the 50th of 100 is the last of (0.1, 0.25]
    assert abs(histogram_quantile(PAGE, "sail_user_freshness_seconds", 0.99) - 0.95) < 1e-9  # 9 of 10 into (0.5, 1.0]
    assert (
        histogram_quantile(
            PAGE.replace("100.0", "0.0").replace("90.0", "0.0").replace("50.0", "0.0"), "sail_user_freshness_seconds", 0.5
        )
        is None
    )


def test_quantiles_since_an_earlier_page_count_only_what_came_between() -> None:
    earlier = PAGE.replace("50.0", "40.0").replace("90.0", "40.0").replace("100.0", "40.0")  # 40 fast ones first
    # between the pages: 10 in (0.1, 0.25], 40 in (0.25, 0.5], 10 in (0.5, 1.0]
    # -> the median (30th of 60) is the 20th of 40 in (0.25, 0.5]
    assert abs(histogram_quantile(PAGE, "sail_user_freshness_seconds", 0.5, since=earlier) - (0.25 + 0.25 * 20 / 40)) < 1e-9
    assert histogram_quantile(PAGE, "sail_user_freshness_seconds", 0.5, since=PAGE) is None  # nothing observed between
