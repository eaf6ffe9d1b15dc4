"""Interactions -> user-interest states (the Faust table) and Milvus `users` rows.

One micro-batch: decode; read each user's state; fetch the vectors of every item involved
(`streams.worker.items`); apply the events through the pure maths (`streams.interest.maths`; a
replayed event changes nothing) -- that is `prepare`; then `store`: park events whose item has no
vector yet (`streams.worker.waiting`), upsert the users' rows, then write the states. Users' rows
reach Milvus before their table state, so a crash in between replays to the same result.

Up to `interest_in_flight` batches are in flight (`streams.worker.inflight`): the next batch is
prepared while the last one waits on Milvus and Kafka. It reads the states the batches before it
prepared (`InFlightStates`), not the table, which they have not written yet; a user whose state a
store did not write as prepared (Milvus refused the row) is redone by the batches that built on it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Literal

from streams.collab.maths import CollabParams, co_engagement, user_items, user_vector
from streams.interest.maths import InterestParams, Vector, already_applied, apply_interaction, interest_vectors_many
from streams.ops.quality import probe, sampled
from streams.worker.context import Context
from streams.worker.events import arrival, source
from streams.worker.inflight import InOrderPipeline
from streams.worker.waiting import ItemWait
from topology import reasons
from topology.codec import (
    BadInput,
    decode_interactions,
    decode_interest_state,
    encode_co_engagement,
    encode_interaction,
    encode_interest_state,
)
from topology.collections import RECENT_ITEMS_CHARS, collab_user_row, user_row
from topology.messages import CoEngagement, Interaction, InterestState

logger = logging.getLogger(__name__)


def recent_items_field(state: InterestState, positives_only: bool = False) -> str:
    """The window's item ids (or its positive ones), newest first, cut to the collection's VARCHAR
    limit (UTF-8 bytes; identifiers never contain the comma, see `topology.codec.ID_FORBIDDEN_CHARS`)."""
    signals = state.positives if positives_only else (*state.positives, *state.negatives)
    return item_ids_field(list(dict.fromkeys(s.item_id for s in sorted(signals, key=_NEWEST, reverse=True))))


_NEWEST = attrgetter("timestamp_ms", "event_id")  # `Signal.order` without a Python call per signal: 6.4 -> 4.3 us a user


def item_ids_field(ids: list[str]) -> str:
    """Item ids, comma-separated, cut from the end to the collections' VARCHAR limit (UTF-8 bytes)."""
    text = ",".join(ids)
    while len(text.encode()) > RECENT_ITEMS_CHARS and ids:
        ids = ids[:-1]
        text = ",".join(ids)
    return text


def collab_user_rows(user: str, state: InterestState, params: CollabParams) -> list[dict[str, object]]:
    """The user's `collab_users` row (none before a positive)."""
    mine = user_items(state, params)
    if not mine:
        return []
    ids = item_ids_field([item for item, _ in mine])
    return [collab_user_row(user, ids, state.event_count, state.updated_at_ms, user_vector(state, params, mine))]


def user_rows(
    states: Mapping[str, InterestState], vectors: Mapping[str, Vector], params: InterestParams, model_version: str
) -> dict[str, list[dict[str, object]]]:
    """The `users` rows of each user's state (one per interest slot) over `vectors`, the interest
    vectors of all of them computed together (`interest_vectors_many`); none for a user while no
    positive item's vector is known (negatives only so far: no interest vector to write yet)."""
    slots = interest_vectors_many(list(states.values()), vectors, params)
    rows: dict[str, list[dict[str, object]]] = {}
    for (user, state), vectors_of in zip(states.items(), slots):
        if vectors_of is None:
            rows[user] = []
            continue
        recent, positives = recent_items_field(state), recent_items_field(state, positives_only=True)
        rows[user] = [
            user_row(user, slot, state.updated_at_ms, state.event_count, recent, model_version, vector, positives)
            for slot, vector in enumerate(vectors_of)
        ]
    return rows


Step = Literal["park", "skip", "apply"]


def disposition(state: InterestState, interaction: Interaction, vectors: Mapping[str, Vector]) -> Step:
    """What one event does to its user's state: "park" while its item has no vector (checked first: an
    event older than the state's dedup floor but naming an item nobody uploaded still ends as an
    `item.not_found` dead letter, where checking the floor first dropped it silently; the 30-minute soak,
    2026-12-03), "skip" when applying it changes nothing (`already_applied`), else "apply"."""
    if interaction.item_id not in vectors:
        return "park"
    return "skip" if already_applied(state, interaction) else "apply"


class InFlightStates:
    """Users' states computed by micro-batches that are prepared but not yet stored, so the next batch
    builds on them (`InterestStage.prepare` reads here before the table), and which of those later
    turned out wrong.

    Batches are numbered in arrival order; at most one entry per user, the newest batch's. A batch that
    read another's state keeps that batch's number (`base`), also when it leaves the user unchanged
    (its events skipped as replays of that state's). When a store does not write a user's state as
    prepared (Milvus refused the user's row, or the store redid the user), every batch that read it
    must redo that user from the table: `stale` says which. Pure bookkeeping, no I/O."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[int, InterestState]] = {}
        self._reads: dict[tuple[str, int], int] = {}  # (user, batch) -> later batches that read that state, not yet stored
        self._wrong: set[tuple[str, int]] = set()  # (user, batch): a state that was read, then not stored as prepared

    def base(self, user: str) -> tuple[int, InterestState] | None:
        """(batch, state) of the newest batch in flight that changed `user`, or None (read the table);
        the caller's batch counts as a reader of it until its `stale`."""
        held = self._held.get(user)
        if held is not None:
            key = (user, held[0])
            self._reads[key] = self._reads.get(key, 0) + 1
        return held

    def hold(self, batch: int, user: str, state: InterestState) -> None:
        self._held[user] = (batch, state)

    def stale(self, bases: Mapping[str, int]) -> list[str]:
        """The users of a batch (`bases`: user -> the batch whose state it read) to redo; once per batch."""
        redo = []
        for key in bases.items():
            if key in self._wrong:
                redo.append(key[0])
            left = self._reads.pop(key, 1) - 1
            if left:
                self._reads[key] = left
            else:
                self._wrong.discard(key)
        return redo

    def not_as_prepared(self, batch: int, user: str, state: InterestState | None) -> None:
        """`batch`'s store leaves `user` at `state` (None: the table's state, unchanged), not at what it prepared."""
        if (user, batch) in self._reads:
            self._wrong.add((user, batch))
        if self._held.get(user, (None,))[0] == batch:  # what later batches read from now on
            if state is None:
                del self._held[user]
            else:
                self._held[user] = (batch, state)

    def release(self, batch: int, users: Iterable[str]) -> None:
        """`batch` is stored: its entries go (a later batch's stay)."""
        for user in users:
            if self._held.get(user, (None,))[0] == batch:
                del self._held[user]

    def clear(self) -> None:
        """Nothing in flight any more (the pipeline was cancelled): the table is the truth again."""
        self._held.clear()
        self._reads.clear()
        self._wrong.clear()


@dataclass(slots=True)
class UserStep:
    """What one micro-batch does to one user: the state after its events and what follows from it."""

    state: InterestState
    changed: bool
    applied: list[Any] = field(default_factory=list)  # the events (records) applied
    engagements: list[CoEngagement] = field(default_factory=list)
    waiting: list[tuple[Any, bytes]] = field(default_factory=list)  # (event, value) parked until their item is stored
    rows: list[dict[str, object]] = field(default_factory=list)  # the user's `users` rows


@dataclass(slots=True)
class PreparedInterest:
    """One micro-batch after `InterestStage.prepare`: what `store` writes."""

    batch: int
    table: Any
    live: Any
    malformed: list[tuple[Any, str, str]]
    loose: list[tuple[bytes, bytes | None, tuple[str, int, int], str, str]]
    by_user: dict[str, list[tuple[Any, Interaction]]]
    batches: set[int]  # the records (by id) that were batch records
    steps: dict[str, UserStep]
    bases: dict[str, int]  # users whose state came from a batch still in flight: that batch
    version: str = ""  # the model version the users' rows are written as


class InterestStage:
    """Interactions -> states and `users` rows, a micro-batch at a time, up to `interest_in_flight`
    batches at once (`streams.worker.inflight`): `prepare` (decode, states, item vectors, maths) of the
    next batch runs while the last one's `store` (Milvus, the collaborative stage, the changelog)
    waits on the sinks. Prepares run one after the other in arrival order and read the states of the
    batches still in flight (`InFlightStates`); stores keep that order too."""

    def __init__(self, ctx: Context, waiting: ItemWait) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.waiting = waiting
        self.params = InterestParams.for_settings(s)
        self.collab = CollabParams.for_settings(s) if s.collab_enabled else None
        self.collab_users = s.collab_collections()[1]
        self.co_engagements = ctx.topic(s.topics().co_engagements.name) if s.collab_enabled else None
        self.pipeline = InOrderPipeline[PreparedInterest](s.interest_in_flight)
        self.in_flight = InFlightStates()
        self._order = asyncio.Lock()  # prepares one at a time, in the order submitted (the lock is FIFO)
        self._numbers = itertools.count()

    async def prepare(self, events: Sequence[Any], table: Any) -> PreparedInterest:
        """Decode the batch, read its users' states, fetch the item vectors, apply the events (pure
        maths) and build the users' rows. Nothing leaves the worker here."""
        async with self._order:
            ctx = self.ctx
            live = await ctx.live()  # one version for the whole batch: its item vectors, its users collection
            ctx.metrics.count_events("interest", len(events))
            phase = Phases(ctx.metrics.interest_seconds)
            batch = PreparedInterest(next(self._numbers), table, live, [], [], {}, set(), {}, {})
            for event in events:
                try:
                    record = decode_interactions(event.value, ctx.limits, arrival(event))
                except BadInput as exc:
                    batch.malformed.append((event, exc.reason, exc.detail))
                    continue
                if record.batch:
                    batch.batches.add(id(event))
                    for bad in record.bad:
                        detail = f"event {bad.index} of a batch record: {bad.error.detail}"
                        batch.loose.append((bad.original, event.message.key, source(event), bad.error.reason, detail))
                for interaction in record.events:
                    batch.by_user.setdefault(interaction.user_id, []).append((event, interaction))
            if not batch.by_user:
                return batch
            phase("decode")
            states = {}
            for user in batch.by_user:
                held = self.in_flight.base(user)
                if held is None:
                    states[user] = decode_interest_state(table.get(user.encode()))
                else:
                    batch.bases[user], states[user] = held
            phase("state")
            vectors = await self._vectors(batch.by_user, states, live)
            # no registry row yet: the version of the items folded in
            batch.version = live.version.model_version or ctx.vectors.version_of(live.items)
            phase("vectors")
            share, probes = ctx.settings.online_hit_sample, []
            for user, pairs in batch.by_user.items():
                if share > 0:  # the online hit rate: sampled positives against the vectors before this batch
                    state = states[user]
                    fresh = (  # the sample first: it is the cheap test, and leaves 2 % of the events; the budget last
                        i
                        for _, i in pairs
                        if sampled(i.event_id, share)
                        and not i.action.is_negative
                        and state.positives  # else no interest vector to probe yet
                        and i.item_id in vectors
                        and not already_applied(state, i)
                        and ctx.online.take()
                    )
                    first = next(
                        (p for i in fresh if (p := probe(i, state, vectors, self.params, share, self.collab)) is not None), None
                    )
                    if first is not None:  # one per user and batch: the later ones would ask the same vectors
                        probes.append(first)
                step = batch.steps[user] = self._step(states[user], pairs, vectors, batch)
                if step.changed:
                    self.in_flight.hold(batch.batch, user, step.state)
            self._rows(batch, list(batch.steps), vectors)
            ctx.online.submit(probes, live.items.name)
            phase("maths")
            return batch

    async def _vectors(
        self, by_user: Mapping[str, list[tuple[Any, Interaction]]], states: Mapping[str, InterestState], live: Any
    ) -> Mapping[str, Vector]:
        """The vectors of the batch's items and of those in its users' windows."""
        needed = {i.item_id for pairs in by_user.values() for _, i in pairs} | {
            item for s in states.values() for item in s.item_ids()
        }
        return await self.ctx.vectors.get(needed, live.items)

    def _step(
        self, state: InterestState, pairs: list[tuple[Any, Interaction]], vectors: Mapping[str, Vector], batch: PreparedInterest
    ) -> UserStep:
        """The batch's events of one user applied to `state` (pure maths; the rows follow in `_rows`)."""
        start = state
        step = UserStep(state, changed=False)
        for event, interaction in pairs:
            disposed = disposition(state, interaction, vectors)
            if disposed == "skip":
                continue
            if disposed == "park":  # parked alone, also when it came in a batch record
                step.waiting.append((event, encode_interaction(interaction) if id(event) in batch.batches else event.value))
                continue
            before, state = state, apply_interaction(state, interaction, self.params)
            step.applied.append(event)
            if self.collab is not None and not interaction.action.is_negative:
                step.engagements.append(
                    co_engagement(
                        before,
                        interaction.event_id,
                        interaction.user_id,
                        interaction.item_id,
                        interaction.timestamp_ms,
                        self.collab.pairs,
                    )
                )
        step.state, step.changed = state, state is not start
        return step

    def _rows(self, batch: PreparedInterest, users: Sequence[str], vectors: Mapping[str, Vector]) -> None:
        """The `users` rows of those of `users` whose state the batch changed, computed together."""
        steps = batch.steps
        rows = user_rows({u: steps[u].state for u in users if steps[u].changed}, vectors, self.params, batch.version)
        for user, mine in rows.items():
            steps[user].rows = mine

    async def store(self, batch: PreparedInterest) -> None:
        """The batch's effects, in the order a crash replays to the same result: dead letters, parked
        events, users' rows, the collaborative stage, then the states (changelog)."""
        try:
            await self._store(batch)
        finally:
            self.in_flight.release(batch.batch, batch.steps)

    async def _store(self, batch: PreparedInterest) -> None:
        ctx = self.ctx
        phase = Phases(ctx.metrics.interest_seconds)
        if batch.malformed:
            await ctx.outbox.dead_letter_events(batch.malformed)
        if batch.loose:
            await ctx.outbox.dead_letters(batch.loose)
        if not batch.steps:
            return
        phase("decode")  # the dead letters of what did not decode
        stale = self.in_flight.stale(batch.bases)
        if stale:  # built on a state an earlier batch did not store as prepared: redone from the table
            await self._redo(batch, stale)
            phase("maths")
        steps = batch.steps
        waiting = [w for step in steps.values() for w in step.waiting]
        if waiting:
            await self.waiting.park(waiting)
            phase("park")
        changed = {user: step.state for user, step in steps.items() if step.changed}
        rows = [row for step in steps.values() if step.changed for row in step.rows]
        if rows:
            refused = await ctx.upsert_each(batch.live.users, rows)
            letters = []
            for user, reason in {str(rows[i]["user_id"]): message for i, message in refused.items()}.items():
                del changed[user]  # the user's state stays as Milvus has it; this batch's events of theirs are dead letters
                self.in_flight.not_as_prepared(batch.batch, user, None)
                letters += [(event, reasons.SINK_REJECTED, reason) for event in _records(steps[user].applied)]
            if letters:
                await ctx.outbox.dead_letter_events(letters)
            acked_s = time.time()
            for user in {str(r["user_id"]) for r in rows} & changed.keys():
                newest_ms = max(i.timestamp_ms for _, i in batch.by_user[user])
                ctx.metrics.user_freshness.observe(max(acked_s - newest_ms / 1000, 0.0))
        phase("upsert")
        if self.collab is not None and changed:
            await self._collab(batch.batch, changed, steps)
            phase("collab")
        metrics = ctx.metrics
        values = {}
        for user, state in changed.items():
            blob = encode_interest_state(state)  # one changelog record per user per batch
            values[user.encode()] = blob
            metrics.interest_state_bytes.observe(len(blob))
            metrics.interest_changelog_bytes.inc(len(blob))
            metrics.interest_applied.inc(len(steps[user].applied))
        await ctx.outbox.write_table(batch.table, values)
        phase("changelog")

    async def _redo(self, batch: PreparedInterest, users: list[str]) -> None:
        """Apply the batch's events of `users` again to their states as the table has them now (every
        earlier batch is stored), with the vectors those states need."""
        by_user = {user: batch.by_user[user] for user in users}
        states = {user: decode_interest_state(batch.table.get(user.encode())) for user in users}
        vectors = await self._vectors(by_user, states, batch.live)
        for user in users:
            step = batch.steps[user] = self._step(states[user], by_user[user], vectors, batch)
            self.in_flight.not_as_prepared(batch.batch, user, step.state if step.changed else None)
        self._rows(batch, users, vectors)
        logger.info(
            "interest batch %d: %d user(s) redone: an earlier batch's store did not write their state as prepared",
            batch.batch,
            len(users),
        )

    def forget(self) -> None:
        """The pipeline was cancelled: no batch is in flight, the table is the truth again."""
        self.in_flight.clear()

    async def _collab(self, batch: int, changed: dict[str, InterestState], steps: Mapping[str, UserStep]) -> None:
        """The users' `collab_users` rows, then their co-engagements to the items' stage (before the
        states are written: a crash in between sends them again, and the items' states drop replays)."""
        ctx, params = self.ctx, self.collab
        assert params is not None and self.co_engagements is not None
        began = time.process_time()
        rows = [row for user, state in changed.items() for row in collab_user_rows(user, state, params)]
        spent = time.process_time() - began
        if rows:
            refused = await ctx.upsert_each(self.collab_users, rows)
            if refused:
                letters = []
                for index, reason in refused.items():
                    user = str(rows[index]["user_id"])
                    changed.pop(user, None)
                    self.in_flight.not_as_prepared(batch, user, None)
                    letters += [(event, reasons.SINK_REJECTED, reason) for event in _records(steps[user].applied)]
                await ctx.outbox.dead_letter_events(letters)
            ctx.metrics.collab_rows.labels("user").inc(len(rows) - len(refused))
        began = time.process_time()
        records = [
            (self.co_engagements, e.item_id.encode(), encode_co_engagement(e))
            for user in changed
            for e in steps[user].engagements
        ]
        ctx.metrics.collab_seconds.inc(spent + time.process_time() - began)
        if records:
            await ctx.outbox.send_all(records, f"produce {ctx.topics.co_engagements.name}")


def _records(events: Sequence[Any]) -> list[Any]:
    """Each record once (a batch record carries several of a user's events)."""
    return list({id(event): event for event in events}.values())


class Phases:
    """Time since the last mark, counted under each phase's name."""

    def __init__(self, counter: Any) -> None:
        self._counter = counter
        self._last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self._counter.labels(name).inc(now - self._last)
        self._last = now
