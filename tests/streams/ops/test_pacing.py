import pytest

from streams.ops.pacing import TokenBucket


def test_the_token_bucket_holds_the_average_rate_after_one_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10.0, burst=8, clock=lambda: now[0])
    assert bucket.wait_s(8) == 0.0  # the first batch goes at once
    assert bucket.wait_s(8) == pytest.approx(0.8)  # the next waits for 8 tokens at 10/s
    now[0] = 0.8
    assert bucket.wait_s(4) == pytest.approx(0.4)
    assert TokenBucket(rate=0, burst=8).wait_s(10_000) == 0.0  # no cap


def test_take_lets_through_the_burst_then_the_rate_and_never_owes() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=5.0, burst=5, clock=lambda: now[0])
    assert [bucket.take() for _ in range(8)] == [True] * 5 + [False] * 3  # a refusal takes nothing
    now[0] = 0.2  # one token's worth of time
    assert [bucket.take() for _ in range(3)] == [True, False, False]
    now[0] = 100.0  # a long quiet spell refills to the burst, no further
    assert sum(bucket.take() for _ in range(20)) == 5
    assert all(TokenBucket(rate=0, burst=1).take() for _ in range(100))  # no cap
