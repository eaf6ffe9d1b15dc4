"""The interest stage with two micro-batches in flight: the second is prepared on the states the first
prepared (not the table, which the first has not written yet), and a user the first's store did not
write as prepared (Milvus refused the row) is redone by the second from the table. The result must be
what one batch at a time gives. Pure asyncio: the sinks are stand-ins that record what they get."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from streams.interest.maths import InterestParams, fold_interactions
from streams.ops.metrics import Metrics
from streams.ops.pacing import TokenBucket
from streams.worker.interest import InFlightStates, InterestStage, user_rows
from topology import reasons
from topology.codec import decode_interest_state, encode_interaction
from topology.collections import VECTOR_FIELD
from topology.messages import Action, Interaction, InterestState
from topology.settings import Settings
from topology.versions import Version

DIM = 8
ITEMS = {f"i{n}": np.eye(DIM, dtype=np.float32)[n % DIM] for n in range(6)}


@dataclass
class Message:
    key: bytes
    topic: str
    partition: int
    offset: int
    timestamp: float = 0.0


@dataclass
class Event:
    value: bytes
    message: Message


class Table:
    """What the stage uses of a Faust table: `get` and `data` (written by the outbox stand-in)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog_topic = None

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


class Sinks:
    """Milvus and Kafka as the stage sees them through its context: upserts recorded (the users' held
    at `gate` while it is set, refused for `refuse` once), dead letters and table writes recorded."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.refuse = set(refuse or ())
        self.gate: asyncio.Event | None = None
        self.upserted: list[dict[str, Any]] = []
        self.letters: list[tuple[Any, str, str]] = []
        self.collab: list[dict[str, Any]] = []  # collab_users rows
        self.sent: list[tuple[Any, bytes, bytes]] = []  # co-engagements
        self.log: list[str] = []

    async def upsert_each(self, spec: Any, rows: list[dict[str, Any]]) -> dict[int, str]:
        if "collab" in spec.name:
            self.collab += rows
            return {}
        self.log.append(f"upsert {len(rows)}")
        if self.gate is not None:
            await self.gate.wait()
        refused = {i: "refused by the test" for i, row in enumerate(rows) if row["user_id"] in self.refuse}
        self.refuse -= {str(rows[i]["user_id"]) for i in refused}
        self.upserted += [row for i, row in enumerate(rows) if i not in refused]
        return refused

    async def dead_letter_events(self, letters: Sequence[tuple[Any, str, str]]) -> None:
        self.letters += letters

    async def dead_letters(self, letters: Sequence[Any]) -> None:
        raise AssertionError("no batch record here")

    async def send_all(self, records: Sequence[tuple[Any, bytes, bytes]], what: str) -> None:
        self.sent += records

    async def write_table(self, table: Table, values: dict[bytes, bytes]) -> None:
        self.log.append(f"write {len(values)}")
        table.data.update(values)


def _stage(sinks: Sinks, in_flight: int = 2, sample: float = 0.0, online: Any = None) -> InterestStage:
    settings = Settings(online_hit_sample=sample, interest_in_flight=in_flight)  # type: ignore[call-arg]
    items, users = settings.collections()
    version = Version("v1", items.name, users.name, DIM)
    live = SimpleNamespace(version=version, items=items, users=users)

    async def get(needed: set[str], spec: Any) -> dict[str, np.ndarray]:
        return {item: ITEMS[item] for item in needed if item in ITEMS}

    async def current() -> Any:
        return live

    ctx = SimpleNamespace(
        settings=settings,
        metrics=Metrics(),
        limits=settings.limits(),
        live=current,
        vectors=SimpleNamespace(get=get, version_of=lambda spec: "v1"),
        online=online or SimpleNamespace(submit=lambda probes, name: None),
        outbox=sinks,
        upsert_each=sinks.upsert_each,
        topic=lambda name: name,
        topics=settings.topics(),
    )
    return InterestStage(ctx, waiting=SimpleNamespace())  # type: ignore[arg-type]


def _events(interactions: list[Interaction], first_offset: int) -> list[Event]:
    return [
        Event(encode_interaction(i), Message(i.user_id.encode(), "interactions", 0, first_offset + n))
        for n, i in enumerate(interactions)
    ]


def _like(user: str, item: str, at_ms: int) -> Interaction:
    return Interaction(event_id=f"{user}-{item}-{at_ms}", user_id=user, item_id=item, action=Action.LIKE, timestamp_ms=at_ms)


FIRST = [_like("u", "i0", 1_000), _like("u", "i1", 2_000), _like("w", "i2", 1_500)]
SECOND = [_like("u", "i3", 3_000), _like("w", "i4", 3_500), _like("x", "i5", 3_600)]
PARAMS = InterestParams()


def _state(table: Table, user: str) -> InterestState:
    return decode_interest_state(table.get(user.encode()))


def _run_two(sinks: Sinks, hold_first_store: bool, second: list[Interaction] = SECOND) -> tuple[Table, list[str]]:
    """FIRST then `second` through a two-deep pipeline; with `hold_first_store`, the first's users upsert
    waits until the second has been prepared (so the second cannot have read the first's states from the table)."""
    stage = _stage(sinks)
    table = Table()
    order: list[str] = []

    async def go() -> None:
        sinks.gate = asyncio.Event() if hold_first_store else None

        async def prepare(events: list[Event]) -> Any:
            prepared = await stage.prepare(events, table)
            order.append(f"prepared {prepared.batch}")
            if prepared.batch == 1 and sinks.gate is not None:
                sinks.gate.set()  # only now may the first batch's store go on
            return prepared

        async def acknowledged() -> None:
            order.append("acked")

        for events in (_events(FIRST, 0), _events(second, 3)):
            await stage.pipeline.submit(lambda events=events: prepare(events), stage.store, acknowledged)
        await stage.pipeline.drain()

    asyncio.run(go())
    return table, order + sinks.log


def _last_row(sinks: Sinks, user: str) -> dict[str, Any]:
    return [row for row in sinks.upserted if row["user_id"] == user][-1]


def test_the_second_batch_builds_on_the_first_ones_states_before_the_first_is_stored() -> None:
    sinks = Sinks()
    table, order = _run_two(sinks, hold_first_store=True)
    assert order[:2] == ["prepared 0", "prepared 1"]  # the second was prepared while the first waited on Milvus
    for user in ("u", "w", "x"):
        expected = fold_interactions([i for i in FIRST + SECOND if i.user_id == user], PARAMS)
        assert _state(table, user) == expected
        row = user_rows({user: expected}, ITEMS, PARAMS, "v1")[user][0]
        assert np.allclose(_last_row(sinks, user)[VECTOR_FIELD], row[VECTOR_FIELD])
    assert not sinks.letters


def test_a_user_refused_by_milvus_in_the_first_batch_is_redone_by_the_second_from_the_table() -> None:
    sinks = Sinks(refuse={"u"})
    table, _ = _run_two(sinks, hold_first_store=True)
    # The first batch's events of u are dead letters; the second's are applied to u's state as the table
    # has it (none), not to what the first batch prepared.
    assert sorted(e.message.offset for e, reason, _ in sinks.letters if reason == reasons.SINK_REJECTED) == [0, 1]
    expected = fold_interactions([i for i in SECOND if i.user_id == "u"], PARAMS)
    assert _state(table, "u") == expected
    assert np.allclose(_last_row(sinks, "u")[VECTOR_FIELD], user_rows({"u": expected}, ITEMS, PARAMS, "v1")["u"][0][VECTOR_FIELD])
    assert _state(table, "w") == fold_interactions([i for i in FIRST + SECOND if i.user_id == "w"], PARAMS)


def test_one_batch_at_a_time_gives_the_same_result() -> None:
    piped, one = Sinks(refuse={"u"}), Sinks(refuse={"u"})
    table_piped, _ = _run_two(piped, hold_first_store=True)
    stage, table = _stage(one, in_flight=1), Table()

    async def go() -> None:
        for events in (_events(FIRST, 0), _events(SECOND, 3)):
            await stage.store(await stage.prepare(events, table))

    asyncio.run(go())
    assert table.data == table_piped.data
    assert [(e.message.offset, r) for e, r, _ in one.letters] == [(e.message.offset, r) for e, r, _ in piped.letters]


def test_in_flight_states_say_which_users_a_later_batch_must_redo() -> None:
    held = InFlightStates()
    a, b, c = InterestState(event_count=1), InterestState(event_count=2), InterestState(event_count=3)
    held.hold(0, "u", a)
    assert held.base("v") is None
    assert held.base("u") == (0, a)  # batch 1 reads batch 0's state of u...
    held.hold(1, "u", b)  # ...and changes it
    held.not_as_prepared(0, "u", None)  # batch 0's store refused u: batch 1 read a wrong state
    held.release(0, ["u"])
    assert held.stale({"u": 0}) == ["u"]  # batch 1's store redoes u
    held.not_as_prepared(1, "u", c)  # nobody read batch 1's entry yet: corrected in place
    assert held.base("u") == (1, c)  # batch 2 reads the corrected state
    assert held.stale({"u": 1}) == []
    held.release(1, ["u"])
    assert held.base("u") is None


def test_a_batch_that_read_a_state_but_left_the_user_unchanged_still_redoes_the_user() -> None:
    held = InFlightStates()
    a = InterestState(event_count=1)
    held.hold(5, "x", a)
    assert held.base("x") == (5, a)  # batch 6 reads it; its events of x are replays of it: no entry of its own
    held.not_as_prepared(5, "x", None)
    held.release(5, ["x"])
    assert held.base("x") is None  # later batches read the table
    assert held.stale({"x": 5}) == ["x"]  # batch 6 redoes x: its replays were none as the table has x


def test_a_replay_skipped_on_a_state_milvus_then_refused_is_applied_as_one_batch_at_a_time_would() -> None:
    # The second batch holds only a replay of u's first event: on the first batch's prepared state it is a
    # replay (u unchanged); the first batch's store then refuses u, so as the table has u it is new.
    replay = [FIRST[0], _like("w", "i4", 3_500)]
    piped, one = Sinks(refuse={"u"}), Sinks(refuse={"u"})
    table_piped, _ = _run_two(piped, hold_first_store=True, second=replay)
    stage, table = _stage(one, in_flight=1), Table()

    async def go() -> None:
        for events in (_events(FIRST, 0), _events(replay, 3)):
            await stage.store(await stage.prepare(events, table))

    asyncio.run(go())
    assert _state(table, "u") == fold_interactions([FIRST[0]], PARAMS)
    assert table_piped.data == table.data


def test_the_online_hit_probes_keep_to_their_budget() -> None:
    """Every positive sampled, six users each with a known positive already, a budget of 2 (clock
    stopped): the second batch submits 2 probes, and the first, whose users had no positive before,
    spends none of the budget."""
    submitted: list[int] = []
    online = SimpleNamespace(
        submit=lambda probes, name: submitted.append(len(probes)), take=TokenBucket(2.0, 2, clock=lambda: 0.0).take
    )
    stage, table = _stage(Sinks(), in_flight=1, sample=1.0, online=online), Table()
    users = [f"user{n}" for n in range(6)]

    async def go() -> None:
        for n, at in enumerate((1_000, 2_000)):
            batch = [_like(u, f"i{(k + n) % 6}", at + k) for k, u in enumerate(users)]
            await stage.store(await stage.prepare(_events(batch, 6 * n), table))

    asyncio.run(go())
    assert submitted == [0, 2]
