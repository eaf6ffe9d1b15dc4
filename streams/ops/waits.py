"""Where the worker's own coroutines are waiting, for a log line when something stalls.

`asyncio.Task.get_stack()` shows only a suspended task's outermost frame; the await chain
(`cr_await` / `ag_await` / `gi_yieldfrom`) goes down to the object it is parked on, through an
agent's `async for` into Faust's stream, or through a retry loop into a client call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # streams/


def await_chain(awaitable: Any, limit: int = 24) -> list[tuple[str, str, int]]:
    """(function, file, line) of each coroutine, async generator or generator `awaitable` waits
    through, outermost first; the object at the bottom (a Future, ...) as (type name, "", 0)."""
    chain: list[tuple[str, str, int]] = []
    current = awaitable
    while current is not None and len(chain) < limit:
        frame = getattr(current, "cr_frame", None) or getattr(current, "ag_frame", None) or getattr(current, "gi_frame", None)
        if frame is None:
            name = type(current).__name__
            chain.append(("Future" if name == "FutureIter" else name, "", 0))  # C asyncio awaits a future through its iterator
            break
        chain.append((frame.f_code.co_name, frame.f_code.co_filename, frame.f_lineno))
        current = (
            getattr(current, "cr_await", None) or getattr(current, "ag_await", None) or getattr(current, "gi_yieldfrom", None)
        )
    return chain


def describe(chain: list[tuple[str, str, int]]) -> str:
    """`function (file:line) -> ... -> Future`."""
    return " -> ".join(f"{name} ({Path(path).name}:{line})" if path else name for name, path, line in chain)


def own_waits(root: str = PACKAGE_ROOT, coroutines: Mapping[str, Any] | None = None) -> list[str]:
    """One line per pending task of the running loop whose await chain passes through code under
    `root`, sorted so that equal waits sit together; then one per named coroutine of `coroutines`
    (a task that awaits through an object without a frame, as Faust's agent actors do, hides the
    coroutine below it, so the agents' coroutines are passed in by name)."""
    lines = []
    for task in asyncio.all_tasks():
        chain = await_chain(task.get_coro())
        if any(path.startswith(root) for _, path, _ in chain):
            lines.append(describe(chain))
    return sorted(lines) + [f"{name}: {describe(await_chain(coro))}" for name, coro in (coroutines or {}).items()]
