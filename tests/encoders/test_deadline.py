"""The client deadline follows the measured service time and backs off after a miss (pure)."""

from __future__ import annotations

import pytest

from encoders.client import Deadline


def test_before_any_answer_the_floor_applies() -> None:
    assert Deadline(5.0).seconds(64) == 5.0


def test_grows_with_the_batch_and_the_measured_service_time() -> None:
    deadline = Deadline(floor_s=0.5)
    for _ in range(20):
        deadline.observe(32, 3.2)  # a steady 0.1 s per item
    assert deadline.seconds(1) == 0.5  # small batches: the floor
    assert deadline.seconds(32) == pytest.approx(2 * 32 * 0.1, rel=0.15)  # twice the expected time, little jitter
    assert deadline.seconds(64) == pytest.approx(2 * deadline.seconds(32), rel=0.01)


def test_a_slower_server_raises_the_deadline_instead_of_abandoning_its_work() -> None:
    deadline = Deadline(floor_s=0.1)
    for _ in range(10):
        deadline.observe(10, 0.5)
    before = deadline.seconds(10)
    deadline.observe(10, 5.0)  # ten times slower, once
    assert deadline.seconds(10) > 3 * before  # the deviation term reacts at once


def test_a_missed_deadline_doubles_the_next_until_a_request_succeeds() -> None:
    deadline = Deadline(floor_s=2.0)
    deadline.missed()
    assert deadline.seconds(8) == 4.0
    deadline.missed()
    assert deadline.seconds(8) == 8.0
    for _ in range(10):
        deadline.missed()
    assert deadline.seconds(8) == 128.0  # backoff capped at 64x
    deadline.observe(8, 0.08)
    assert deadline.seconds(8) == 2.0


def test_never_past_the_ceiling() -> None:
    deadline = Deadline(floor_s=500.0)
    deadline.missed()
    assert deadline.seconds(1) == Deadline.CEILING_S


def test_one_request_held_by_a_frozen_server_is_not_every_items_delay() -> None:
    """A 1-item request answered after a 15 s freeze (Triton SIGSTOPped in bench.interest's bad day) made
    the per-item figure 9 s and a full batch's deadline 600 s: a worker then waited 10 minutes on a
    Triton that had died. The freeze now raises the deviation, a request's delay, not every item's."""
    deadline = Deadline(floor_s=5.0)
    for _ in range(50):
        deadline.observe(1, 0.022)  # live traffic: batches of one upload, 22 ms each
    deadline.observe(1, 9.0)  # sent during the freeze, answered when it ended
    assert deadline.seconds(64) < 30.0  # not 64 x 9 s
    assert deadline.seconds(1) == pytest.approx(18.0, rel=0.05)  # the next small request waits out such a freeze
    for _ in range(20):
        deadline.observe(64, 0.15)
    assert deadline.seconds(64) == 5.0  # and forgotten once answers are normal again


def test_a_lasting_slowdown_is_learnt_within_a_few_answers() -> None:
    deadline = Deadline(floor_s=0.5)
    for _ in range(20):
        deadline.observe(64, 0.15)
    for _ in range(10):
        deadline.observe(64, 1.5)  # ten times slower from now on
        assert deadline.seconds(64) >= 2 * 1.5  # never less than twice what a batch now takes
