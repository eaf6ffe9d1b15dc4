"""How the fault harness turns offset samples into recovery times (pure; no stack)."""

from __future__ import annotations

from bench.faults import Fault, measure

TP0, TP1 = ("up", 0), ("up", 1)


def _sample(t: float, done0: int, done1: int, end: int = 100) -> tuple[float, dict]:
    return t, {TP0: (done0, end), TP1: (done1, end)}


def test_resumed_counts_from_the_restore_and_ignores_commits_made_before_the_fault() -> None:
    samples = [
        _sample(9.0, 40, 40, end=100),  # lag 120 before the fault
        _sample(10.2, 45, 40, end=105),  # the killed worker's last commit, read just after the kill at 10.0
        _sample(12.0, 45, 40, end=110),
        _sample(30.0, 45, 40, end=150),  # restarted at 20.0, still waiting for the group
        _sample(31.0, 60, 50, end=150),  # commits again (lag 190)
        _sample(60.0, 150, 140, end=150),  # lag 10
    ]
    fault = Fault("kill", injected_at=10.0, restored_at=20.0)
    measure(fault, samples)
    assert fault.resumed_s == 11.0  # 31.0 - 20.0, not the stale commit at 10.2
    assert fault.caught_up_s == 40.0  # lag back under the 120 of the 10 s before at 60.0


def test_only_the_faults_partitions_count() -> None:
    samples = [_sample(9.0, 10, 10), _sample(12.0, 10, 20), _sample(25.0, 10, 30), _sample(40.0, 15, 40)]
    fault = Fault("survivor takes over", injected_at=10.0, restored_at=10.0, partitions=frozenset({TP0}))
    measure(fault, samples)
    assert fault.resumed_s == 30.0  # TP1 kept committing all along; TP0 moved at 40.0


def test_never_resumed_stays_none() -> None:
    fault = Fault("down", injected_at=10.0, restored_at=20.0)
    measure(fault, [_sample(9.0, 10, 10, end=20), _sample(12.0, 10, 10, end=30), _sample(25.0, 10, 10, end=40)])
    assert fault.resumed_s is None and fault.caught_up_s is None


def test_a_kafka_outage_with_no_sample_during_it_counts_from_the_last_sample_before() -> None:
    samples = [_sample(9.0, 10, 10, end=50), _sample(25.0, 50, 50, end=50)]  # monitor blind from 10 to 20
    fault = Fault("kafka down", injected_at=10.0, restored_at=20.0)
    measure(fault, samples)
    assert fault.resumed_s == 5.0 and fault.caught_up_s == 5.0  # drained by the first sample after


def test_a_stuck_scenario_reports_the_workers_stall_reports_with_their_waits() -> None:
    from bench.faults import stall_reports

    log = "\n".join(
        [
            "[t] [1] [INFO] progress events_per_s={}",
            "[t] [1] [WARNING] partition not committing tp=x.interactions[1]: "
            "no commit for 30s at offset 0, 261 records behind: read=40",
            "[t] [1] [WARNING] the worker's tasks wait in:",
            "  agent streams.worker.app.update_interests[0]: update_interests (app.py:115) -> handle (interest.py:70) -> Future",
            "[t] [1] [INFO] progress events_per_s={}",
        ]
    )
    report = stall_reports(log).splitlines()
    assert [line.split("] ")[-1][:40] for line in report[:2]] == [
        "partition not committing tp=x.interactio",
        "the worker's tasks wait in:",
    ]
    assert report[2].startswith("  agent streams.worker.app.update_interests[0]") and len(report) == 3
    assert stall_reports("[t] [1] [INFO] nothing wrong") == "(none)"


def test_the_longest_commit_wait_counts_only_while_records_wait_past_an_unmoved_commit() -> None:
    from bench.faults import longest_commit_wait

    a, b = ("t", 0), ("t", 1)
    samples = [
        (0.0, {a: (5, 9), b: (3, 3)}),
        (4.0, {a: (5, 9), b: (3, 4)}),  # a waits at 5; b has one record waiting from here
        (10.0, {a: (7, 9), b: (3, 4)}),  # a committed: its wait ended at 4 s
        (30.0, {a: (9, 9), b: (3, 4)}),  # a caught up; b still at 3 after 26 s
        (31.0, {a: (9, 9), b: (4, 4)}),
    ]
    assert longest_commit_wait(samples) == (26.0, "t[1]@3")
    assert longest_commit_wait([(0.0, {a: (9, 9)}), (60.0, {a: (9, 9)})]) == (0.0, "")  # nothing waited: no wait


def test_repairs_are_counted_by_kind_from_the_workers_logs() -> None:
    from bench.faults import repairs_logged

    log = "\n".join(
        [
            "[W] repaired a Faust offset-commit fault kind=seek tp=x[1]: offsets 3..4 were never acked",
            "[W] repaired a Faust offset-commit fault kind=dedup tp=x[0]: 1 duplicate acked offsets removed",
            "[W] repaired a Faust offset-commit fault kind=seek tp=x[2]: ...",
            "[W] partition not committing tp=x[2]: no commit for 30s",
            "[I] progress events_per_s={}",
        ]
    )
    assert repairs_logged(log) == {"dedup": 1, "seek": 2, "stall": 1}
    assert repairs_logged("nothing here") == {}
