"""Isolating the records a dependency refuses: pure logic over plain callables standing for a batch
request (the real Milvus and Triton paths are in tests/integration/test_poison.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from streams.sinks.isolation import Verdict, isolate


class Refused(Exception):
    pass


class Down(Exception):
    pass


class Odd(Exception):
    """An error the dependency does not explain (a suspect)."""


def _verdict(exc: Exception) -> Verdict:
    return "rejected" if isinstance(exc, Refused) else "suspect" if isinstance(exc, Odd) else "down"


class Dependency:
    """Squares numbers; refuses the `bad` ones with `error`, and fails everything while `down`."""

    def __init__(self, bad: set[int], error: type[Exception] = Refused, down: bool = False) -> None:
        self.bad, self.error, self.down = bad, error, down
        self.calls: list[list[int]] = []
        self.probes = 0

    async def attempt(self, records: Sequence[int]) -> list[int]:
        self.calls.append(list(records))
        if self.down:
            raise Down("connection refused")
        refused = [r for r in records if r in self.bad]
        if refused:
            raise self.error(f"value {refused[0]} out of range")
        return [r * r for r in records]

    async def probe(self) -> bool:
        self.probes += 1
        return not self.down


async def test_a_clean_batch_is_one_request_and_no_probe() -> None:
    dep = Dependency(bad=set())
    out = await isolate(list(range(8)), dep.attempt, _verdict, dep.probe)
    assert out.done == {i: i * i for i in range(8)} and out.rejected == {}
    assert dep.calls == [list(range(8))] and dep.probes == 0


@pytest.mark.parametrize("bad", [{0}, {5}, {31}, {3, 17}, {0, 1, 2}])
async def test_refused_records_are_isolated_and_every_other_record_is_done(bad: set[int]) -> None:
    dep = Dependency(bad=bad)
    records = list(range(32))
    out = await isolate(records, dep.attempt, _verdict, dep.probe)
    assert set(out.rejected) == bad
    assert all(out.rejected[i] == f"value {i} out of range" for i in bad)
    assert out.done == {i: i * i for i in records if i not in bad}
    assert len(dep.calls) <= 1 + 2 * len(bad) * 5 + 2  # about 2 k log2(n)


async def test_suspect_errors_blame_a_record_only_when_the_probe_succeeds() -> None:
    dep = Dependency(bad={4}, error=Odd)
    out = await isolate(list(range(8)), dep.attempt, _verdict, dep.probe)
    assert out.rejected == {4: "value 4 out of range"} and len(out.done) == 7
    assert dep.probes == 2  # before the split and after it


async def test_a_down_dependency_blames_no_record() -> None:
    dep = Dependency(bad=set(), down=True)
    with pytest.raises(Down):
        await isolate(list(range(8)), dep.attempt, _verdict, dep.probe)
    assert dep.calls == [list(range(8))]


async def test_a_dependency_failing_everything_with_odd_errors_is_down_not_refusing() -> None:
    dep = Dependency(bad=set(range(8)), error=Odd)

    async def failing_probe() -> bool:
        dep.probes += 1
        return False

    with pytest.raises(Odd):
        await isolate(list(range(8)), dep.attempt, _verdict, failing_probe)
    assert len(dep.calls) == 1 and dep.probes == 1  # no bisection against a dependency that is away


async def test_a_dependency_going_down_during_the_split_blames_no_record() -> None:
    dep = Dependency(bad={2})

    async def attempt(records: Sequence[int]) -> list[int]:
        if len(dep.calls) >= 2:
            dep.down = True
        return await dep.attempt(records)

    with pytest.raises(Down):
        await isolate(list(range(8)), attempt, _verdict, dep.probe)
