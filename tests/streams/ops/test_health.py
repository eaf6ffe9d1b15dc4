from streams.ops.health import LagSample, Thresholds, evaluate


def samples(points: list[tuple[float, int, int, float]]) -> list[LagSample]:
    return [LagSample(at, committed, end, seconds) for at, committed, end, seconds in points]


def test_keeping_up_is_healthy() -> None:
    history = {("t", 0): samples([(0, 10, 12, 0.5), (10, 20, 21, 0.2), (20, 30, 30, 0.0)])}
    assert evaluate(history, {"triton": True}, freshness_p99_s=0.8).status == "healthy"


def test_growing_lag_is_degraded_with_the_partition_named() -> None:
    history = {
        ("uploads", 3): samples(
            [(0, 0, 0, 0.0), (5, 0, 0, 0.0), (10, 10, 15, 1.0), (15, 15, 25, 2.0), (20, 20, 40, 3.0), (25, 21, 50, 3.5)]
        )
    }
    verdict = evaluate(history, {}, None)
    assert verdict.status == "degraded"
    assert "uploads[3] lag growing" in verdict.reasons[0] and "5 -> 29" in verdict.reasons[0]


def test_lag_that_stopped_growing_and_is_small_is_healthy_again() -> None:
    history = {("t", 0): samples([(0, 10, 15, 1.0), (5, 15, 25, 2.0), (10, 20, 40, 3.0), (15, 40, 40, 0.0)])}
    assert evaluate(history, {}, None).status == "healthy"


def test_stall_is_judged_on_the_trailing_window_only() -> None:
    moving_then_stuck = [(t, min(t, 40), 100, 1.0) for t in range(0, 41, 5)] + [
        (t, 40, 100, float(t - 40)) for t in range(45, 80, 5)
    ]
    verdict = evaluate({("t", 0): samples(moving_then_stuck)}, {}, None, Thresholds(stall_window_s=30, lag_seconds_degraded=1000))
    assert verdict.status == "failing" and "stalled" in verdict.reasons[0]


def test_committed_offset_not_moving_with_lag_is_a_stalled_partition() -> None:
    history = {("interactions", 1): samples([(0, 50, 60, 3.0), (20, 50, 60, 23.0), (40, 50, 60, 43.0)])}
    verdict = evaluate(history, {}, None, Thresholds(stall_window_s=30))
    assert verdict.status == "failing" and "interactions[1] stalled" in verdict.reasons[0]


def test_idle_partition_with_nothing_behind_is_not_stalled() -> None:
    history = {("t", 0): samples([(0, 50, 50, 0.0), (40, 50, 50, 0.0)])}
    assert evaluate(history, {}, None).status == "healthy"


def test_dependency_down_is_failing_and_outranks_degraded() -> None:
    history = {("t", 0): samples([(0, 10, 15, 1.0), (10, 15, 25, 2.0), (20, 20, 40, 3.0), (30, 25, 60, 40.0)])}
    verdict = evaluate(history, {"milvus": False, "triton": True}, None)
    assert verdict.status == "failing" and verdict.reasons == ("milvus is down (calls failing, being retried)",)


def test_freshness_over_the_slo_is_degraded() -> None:
    verdict = evaluate({}, {}, freshness_p99_s=7.5, thresholds=Thresholds(freshness_p99_slo_s=5))
    assert verdict.status == "degraded" and "7.5s is over the 5s SLO" in verdict.reasons[0]


def test_seconds_behind_thresholds() -> None:
    slow = {("t", 0): samples([(0, 0, 5, 31.0)])}
    assert evaluate(slow, {}, None).status == "degraded"
    very_slow = {("t", 0): samples([(0, 0, 5, 301.0)])}
    assert evaluate(very_slow, {}, None).status == "failing"


def test_an_encoder_at_capacity_is_degraded_with_the_reason() -> None:
    verdict = evaluate({}, {"triton": True}, None, saturation=0.97)
    assert verdict.status == "degraded"
    assert "encoder at capacity" in verdict.reasons[0] and "97%" in verdict.reasons[0]
    assert evaluate({}, {"triton": True}, None, saturation=0.5).status == "healthy"


def test_under_replicated_partitions_degrade_and_a_partition_without_a_leader_fails() -> None:
    from streams.sinks.kafka import PartitionReplicas

    whole = PartitionReplicas("t", 0, 1, (1, 2, 3), (1, 2, 3))
    short = PartitionReplicas("t", 1, 2, (2, 3, 1), (2, 1))
    assert evaluate({}, {}, None, replicas=[whole]).status == "healthy"
    verdict = evaluate({}, {}, None, replicas=[whole, short])
    assert verdict.status == "degraded" and verdict.reasons == (
        "1 partition(s) under-replicated, e.g. t[1] with 2 of 3 replicas in sync: a broker is down or behind",
    )
    offline = PartitionReplicas("t", 2, -1, (3, 1, 2), ())
    verdict = evaluate({}, {}, None, replicas=[whole, short, offline])
    assert verdict.status == "failing" and "1 partition(s) without a leader, e.g. t[2]" in verdict.reasons[0]
