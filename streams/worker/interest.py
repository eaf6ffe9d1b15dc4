"""Interactions -> user-interest states (the Faust table) and Milvus `users` rows.

One micro-batch: decode; read each user's state; fetch the vectors of every item involved
(`streams.worker.items`); apply the events through the pure maths (`streams.interest.maths`; a
replayed event changes nothing); park events whose item has no vector yet (`streams.worker.waiting`);
upsert the users' rows; then write the states. Users' rows reach Milvus before their table state,
so a crash in between replays to the same result.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from streams.collab.maths import CollabParams, co_engagement, user_items, user_vector
from streams.interest.maths import InterestParams, Vector, already_applied, apply_interaction, interest_vectors
from streams.ops.quality import probe
from streams.worker.context import Context
from streams.worker.events import arrival, source
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


def recent_items_field(state: InterestState, positives_only: bool = False) -> str:
    """The window's item ids (or its positive ones), newest first, cut to the collection's VARCHAR
    limit (UTF-8 bytes; identifiers never contain the comma, see `topology.codec.ID_FORBIDDEN_CHARS`)."""
    signals = state.positives if positives_only else (*state.positives, *state.negatives)
    return item_ids_field(list(dict.fromkeys(s.item_id for s in sorted(signals, key=lambda s: s.order, reverse=True))))


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
    user: str, state: InterestState, vectors: Mapping[str, Vector], params: InterestParams, model_version: str
) -> list[dict[str, object]]:
    """The `users` rows of one user's state (one per interest slot) over `vectors`; none while no
    positive item's vector is known (negatives only so far: no interest vector to write yet)."""
    slots = interest_vectors(state, vectors, params)
    if slots is None:
        return []
    recent, positives = recent_items_field(state), recent_items_field(state, positives_only=True)
    return [
        user_row(user, slot, state.updated_at_ms, state.event_count, recent, model_version, vector, positives)
        for slot, vector in enumerate(slots)
    ]


Step = Literal["park", "skip", "apply"]


def disposition(state: InterestState, interaction: Interaction, vectors: Mapping[str, Vector]) -> Step:
    """What one event does to its user's state: "park" while its item has no vector (checked first: an
    event older than the state's dedup floor but naming an item nobody uploaded still ends as an
    `item.not_found` dead letter, where checking the floor first dropped it silently; the 30-minute soak,
    2026-12-03), "skip" when applying it changes nothing (`already_applied`), else "apply"."""
    if interaction.item_id not in vectors:
        return "park"
    return "skip" if already_applied(state, interaction) else "apply"


class InterestStage:
    def __init__(self, ctx: Context, waiting: ItemWait) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.waiting = waiting
        self.params = InterestParams.for_settings(s)
        self.collab = CollabParams.for_settings(s) if s.collab_enabled else None
        self.collab_users = s.collab_collections()[1]
        self.co_engagements = ctx.topic(s.topics().co_engagements.name) if s.collab_enabled else None

    async def handle(self, events: Sequence[Any], table: Any) -> None:
        """One micro-batch of interactions."""
        ctx = self.ctx
        live = await ctx.live()  # one version for the whole batch: its item vectors, its users collection
        ctx.metrics.count_events("interest", len(events))
        phase = Phases(ctx.metrics.interest_seconds)
        by_user: dict[str, list[tuple[Any, Any]]] = {}
        malformed: list[tuple[Any, str, str]] = []
        loose: list[tuple[bytes, bytes | None, tuple[str, int, int], str, str]] = []  # bad events of batch records
        batches: set[int] = set()  # the records (by id) that were batches
        for event in events:
            try:
                record = decode_interactions(event.value, ctx.limits, arrival(event))
            except BadInput as exc:
                malformed.append((event, exc.reason, exc.detail))
                continue
            if record.batch:
                batches.add(id(event))
                for bad in record.bad:
                    detail = f"event {bad.index} of a batch record: {bad.error.detail}"
                    loose.append((bad.original, event.message.key, source(event), bad.error.reason, detail))
            for interaction in record.events:
                by_user.setdefault(interaction.user_id, []).append((event, interaction))
        if malformed:
            await ctx.outbox.dead_letter_events(malformed)
        if loose:
            await ctx.outbox.dead_letters(loose)
        if not by_user:
            return
        phase("decode")
        states = {user: decode_interest_state(table.get(user.encode())) for user in by_user}
        needed = {i.item_id for pairs in by_user.values() for _, i in pairs} | {
            item for s in states.values() for item in s.item_ids()
        }
        phase("state")
        vectors = await ctx.vectors.get(needed, live.items)
        phase("vectors")
        changed = {}
        applied: dict[str, list[Any]] = {}
        engagements: dict[str, list[CoEngagement]] = {}
        waiting: list[tuple[Any, bytes]] = []
        probes = []
        share = ctx.settings.online_hit_sample
        for user, pairs in by_user.items():
            state = states[user]
            if share > 0:  # the online hit rate: sampled positives against the vectors before this batch
                fresh = (i for _, i in pairs if i.item_id in vectors and not already_applied(state, i))
                first = next(
                    (p for i in fresh if (p := probe(i, state, vectors, self.params, share, self.collab)) is not None), None
                )
                if first is not None:  # one per user and batch: the later ones would ask the same vectors
                    probes.append(first)
            for event, interaction in pairs:
                step = disposition(state, interaction, vectors)
                if step == "skip":
                    continue
                if step == "park":  # parked alone, also when it came in a batch record
                    waiting.append((event, encode_interaction(interaction) if id(event) in batches else event.value))
                    continue
                before, state = state, apply_interaction(state, interaction, self.params)
                applied.setdefault(user, []).append(event)
                if self.collab is not None and not interaction.action.is_negative:
                    engagements.setdefault(user, []).append(
                        co_engagement(
                            before, interaction.event_id, user, interaction.item_id, interaction.timestamp_ms, self.collab.pairs
                        )
                    )
            if state is not states[user]:
                changed[user] = state
        ctx.online.submit(probes, live.items.name)
        phase("maths")
        if waiting:
            await self.waiting.park(waiting)
            phase("park")
        version = live.version.model_version or ctx.vectors.version_of(
            live.items
        )  # no registry row yet: the version of the items folded in
        rows = [row for user, state in changed.items() for row in user_rows(user, state, vectors, self.params, version)]
        phase("maths")
        if rows:
            refused = await ctx.upsert_each(live.users, rows)
            letters = []
            for user, reason in {str(rows[i]["user_id"]): message for i, message in refused.items()}.items():
                del changed[user]  # the user's state stays as Milvus has it; this batch's events of theirs are dead letters
                letters += [(event, reasons.SINK_REJECTED, reason) for event in _records(applied[user])]
            if letters:
                await ctx.outbox.dead_letter_events(letters)
            acked_s = time.time()
            for user in {str(r["user_id"]) for r in rows} & changed.keys():
                newest_ms = max(i.timestamp_ms for _, i in by_user[user])
                ctx.metrics.user_freshness.observe(max(acked_s - newest_ms / 1000, 0.0))
        phase("upsert")
        if self.collab is not None and changed:
            await self._collab(changed, applied, engagements)
            phase("collab")
        metrics = ctx.metrics
        values = {}
        for user, state in changed.items():
            blob = encode_interest_state(state)  # one changelog record per user per batch
            values[user.encode()] = blob
            metrics.interest_state_bytes.observe(len(blob))
            metrics.interest_changelog_bytes.inc(len(blob))
            metrics.interest_applied.inc(len(applied.get(user, ())))
        await ctx.outbox.write_table(table, values)
        phase("changelog")

    async def _collab(
        self, changed: dict[str, InterestState], applied: dict[str, list[Any]], engagements: dict[str, list[CoEngagement]]
    ) -> None:
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
                    letters += [(event, reasons.SINK_REJECTED, reason) for event in _records(applied.get(user, ()))]
                await ctx.outbox.dead_letter_events(letters)
            ctx.metrics.collab_rows.labels("user").inc(len(rows) - len(refused))
        began = time.process_time()
        records = [
            (self.co_engagements, e.item_id.encode(), encode_co_engagement(e))
            for user in changed
            for e in engagements.get(user, ())
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
