"""Find the records a dependency refuses, so one bad record never stops the records around it.

A batch request to Milvus or Triton fails as a whole. Retrying is right when the dependency is down
and wrong when it refuses something the batch carries: that would retry forever and stop every
record behind it (a poison pill). `isolate` tells the two apart and returns which records were
refused, with the dependency's message, once the rest have been accepted:

- "down" errors (connection refused, deadline) propagate at once: the caller backs off and retries
  the whole batch later, nothing is blamed on a record;
- "rejected" errors (the adapter knows the request itself is invalid) and "suspect" errors (the
  dependency answered with an error it does not explain) split the batch in halves, recursively, until
  the refused records stand alone. A suspect error blames a record only after a known-good `probe`
  request succeeded (before the split and again after it): a dependency that fails everything is down,
  not refusing.

Cost: one request when all is well; about 2 k log2(n) more for k refused records in a batch of n.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
Verdict = Literal["rejected", "suspect", "down"]


@dataclass(slots=True)
class Isolated(Generic[R]):
    """What became of each record of a batch, by its index: a result, or the dependency's refusal."""

    done: dict[int, R] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)


async def isolate(
    records: Sequence[T],
    attempt: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
    verdict: Callable[[Exception], Verdict],
    probe: Callable[[], Awaitable[bool]],
) -> Isolated[R]:
    """Run `attempt` over `records` (it returns one result per record), isolating refused records.

    Raises:
        Exception: the dependency's error when it is down (the verdict says so, or the probe fails).
    """
    outcome: Isolated[R] = Isolated()
    try:
        outcome.done.update(enumerate(await attempt(records)))
        return outcome
    except Exception as exc:
        kind = verdict(exc)
        if kind == "down" or (kind == "suspect" and not await probe()):
            raise
        first = exc
    logger.warning("isolating refused records in a batch of %d: %s", len(records), _line(first))
    suspects = await _split(records, list(range(len(records))), attempt, verdict, outcome)
    if suspects and not await probe():
        raise first  # the dependency stopped answering while we looked: blame no record, retry later
    return outcome


async def _split(
    records: Sequence[T],
    indices: list[int],
    attempt: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
    verdict: Callable[[Exception], Verdict],
    outcome: Isolated[R],
) -> bool:
    """Halve `indices` until each refused record stands alone; True when a suspect error blamed one."""
    suspects = False
    middle = len(indices) // 2
    for part in (indices[:middle], indices[middle:]):
        if not part:
            continue
        try:
            outcome.done.update(zip(part, await attempt([records[i] for i in part])))
            continue
        except Exception as exc:
            kind = verdict(exc)
            if kind == "down":
                raise
            if len(part) > 1:
                suspects |= await _split(records, part, attempt, verdict, outcome)
                continue
            outcome.rejected[part[0]] = _line(exc)
            suspects |= kind == "suspect"
    return suspects


def _line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:1000]
