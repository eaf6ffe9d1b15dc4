"""The item side of the collaborative update (`CollabStage`) on stand-in sinks: an item's state and row
build on what the table holds, also when the table's value changed between two batches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from streams.collab.maths import CollabParams, apply_co_engagements, item_vector
from streams.ops.metrics import Metrics
from streams.worker.collab import CollabStage
from tests.streams.worker.test_interest_pipeline import Event, Message, Table
from topology.codec import decode_collab_state, encode_co_engagement, encode_collab_state
from topology.collections import COLLAB_FIELD
from topology.messages import CoEngagement
from topology.settings import Settings


class Sinks:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    async def upsert_each(self, spec: Any, rows: list[dict[str, Any]]) -> dict[int, str]:
        self.rows += rows
        return {}

    async def dead_letter_events(self, letters: Sequence[Any]) -> None:
        raise AssertionError(f"no dead letters expected: {letters}")

    async def write_table(self, table: Table, values: dict[bytes, bytes]) -> None:
        table.data.update(values)


def _liked(n: int, before: tuple[str, ...]) -> CoEngagement:
    return CoEngagement(f"e{n}", f"u{n}", "a", 1_000 + n, before)


def _events(engagements: list[CoEngagement]) -> list[Event]:
    return [Event(encode_co_engagement(e), Message(b"a", "co", 0, n)) for n, e in enumerate(engagements)]


def test_an_items_state_and_row_build_on_the_tables_value() -> None:
    settings = Settings()  # type: ignore[call-arg]
    params = CollabParams.for_settings(settings)
    sinks = Sinks()
    ctx = SimpleNamespace(
        settings=settings, limits=settings.limits(), metrics=Metrics(), outbox=sinks, upsert_each=sinks.upsert_each
    )
    stage = CollabStage(ctx)  # type: ignore[arg-type]
    table = Table()
    first, second, third = [_liked(1, ("b", "c"))], [_liked(2, ("c",))], [_liked(3, ("d",))]
    elsewhere = apply_co_engagements(decode_collab_state(None), [_liked(9, ("z",))], params)

    async def go() -> None:
        await stage.handle(_events(first), table)
        await stage.handle(_events(second), table)
        table.data[b"a"] = encode_collab_state(elsewhere)  # recovered with another worker's writes
        await stage.handle(_events(third), table)

    asyncio.run(go())
    want = apply_co_engagements(elsewhere, third, params)
    assert decode_collab_state(table.get(b"a")) == want
    assert sinks.rows[-1][COLLAB_FIELD] == item_vector("a", want, params)
    kept = apply_co_engagements(decode_collab_state(None), first + second, params)
    assert sinks.rows[1][COLLAB_FIELD] == item_vector("a", kept, params)
