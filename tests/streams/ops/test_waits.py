"""Where the worker's own coroutines wait: the await chain below a suspended task."""

from __future__ import annotations

import asyncio

from streams.ops.waits import await_chain, own_waits


async def _inner(gate: asyncio.Event) -> None:
    await gate.wait()


async def _outer(gate: asyncio.Event) -> None:
    await _inner(gate)


def test_the_chain_goes_down_to_the_future_and_only_tasks_through_our_code_are_listed() -> None:
    async def run() -> tuple[list[tuple[str, str, int]], list[str], list[str]]:
        gate = asyncio.Event()
        task = asyncio.create_task(_outer(gate))
        foreign = asyncio.create_task(asyncio.sleep(30))  # no frame of ours: not listed
        await asyncio.sleep(0)
        chain = await_chain(task.get_coro())
        hidden = _outer(asyncio.Event())  # a coroutine no task of ours awaits directly (Faust's actors)
        mine = own_waits(root=__file__.rsplit("/", 1)[0], coroutines={"agent x": hidden})
        hidden.close()
        nothing = own_waits(root="/nowhere")
        gate.set()
        foreign.cancel()
        await asyncio.gather(task, foreign, return_exceptions=True)
        return chain, mine, nothing

    chain, mine, nothing = asyncio.run(run())
    assert [name for name, _, _ in chain] == ["_outer", "_inner", "wait", "Future"]
    assert chain[0][1].endswith("test_waits.py") and chain[0][2] > 0
    assert len(mine) == 3  # _outer's task and run() itself, which awaits in this file, then the named one
    assert mine[-1] == "agent x: _outer (test_waits.py:14)"  # created, never started: its first line
    assert any(line.startswith("_outer (test_waits.py:") and line.endswith("-> Future") for line in mine)
    assert nothing == []
