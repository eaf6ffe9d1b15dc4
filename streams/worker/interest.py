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
from typing import Any

from streams.interest.maths import InterestParams, Vector, already_applied, apply_interaction, interest_vectors
from streams.ops.quality import probe
from streams.worker.context import Context
from streams.worker.events import arrival
from streams.worker.waiting import ItemWait
from topology import reasons
from topology.codec import BadInput, decode_interaction, decode_interest_state, encode_interest_state
from topology.collections import RECENT_ITEMS_CHARS, user_row
from topology.messages import InterestState


def recent_items_field(state: InterestState, positives_only: bool = False) -> str:
    """The window's item ids (or its positive ones), newest first, cut to the collection's VARCHAR
    limit (UTF-8 bytes; identifiers never contain the comma, see `topology.codec.ID_FORBIDDEN_CHARS`)."""
    signals = state.positives if positives_only else (*state.positives, *state.negatives)
    ids = list(dict.fromkeys(s.item_id for s in sorted(signals, key=lambda s: s.order, reverse=True)))
    text = ",".join(ids)
    while len(text.encode()) > RECENT_ITEMS_CHARS and ids:
        ids.pop()
        text = ",".join(ids)
    return text


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


class InterestStage:
    def __init__(self, ctx: Context, waiting: ItemWait) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.waiting = waiting
        self.params = InterestParams.for_settings(s)

    async def handle(self, events: Sequence[Any], table: Any) -> None:
        """One micro-batch of interactions."""
        ctx = self.ctx
        live = await ctx.live()  # one version for the whole batch: its item vectors, its users collection
        ctx.metrics.count_events("interest", len(events))
        phase = Phases(ctx.metrics.interest_seconds)
        by_user: dict[str, list[tuple[Any, Any]]] = {}
        malformed: list[tuple[Any, str, str]] = []
        for event in events:
            try:
                interaction = decode_interaction(event.value, ctx.limits, arrival(event))
            except BadInput as exc:
                malformed.append((event, exc.reason, exc.detail))
                continue
            by_user.setdefault(interaction.user_id, []).append((event, interaction))
        if malformed:
            await ctx.outbox.dead_letter_events(malformed)
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
        waiting: list[Any] = []
        probes = []
        share = ctx.settings.online_hit_sample
        for user, pairs in by_user.items():
            state = states[user]
            if share > 0:  # the online hit rate: sampled positives against the vectors before this batch
                fresh = (i for _, i in pairs if i.item_id in vectors and not already_applied(state, i))
                first = next((p for i in fresh if (p := probe(i, state, vectors, self.params, share)) is not None), None)
                if first is not None:  # one per user and batch: the later ones would ask the same vectors
                    probes.append(first)
            for event, interaction in pairs:
                if already_applied(state, interaction):
                    continue
                if interaction.item_id not in vectors:
                    waiting.append(event)
                    continue
                state = apply_interaction(state, interaction, self.params)
                applied.setdefault(user, []).append(event)
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
                letters += [(event, reasons.SINK_REJECTED, reason) for event in applied[user]]
            if letters:
                await ctx.outbox.dead_letter_events(letters)
            acked_s = time.time()
            for user in {str(r["user_id"]) for r in rows} & changed.keys():
                newest_ms = max(i.timestamp_ms for _, i in by_user[user])
                ctx.metrics.user_freshness.observe(max(acked_s - newest_ms / 1000, 0.0))
        phase("upsert")
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


class Phases:
    """Time since the last mark, counted under each phase's name."""

    def __init__(self, counter: Any) -> None:
        self._counter = counter
        self._last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self._counter.labels(name).inc(now - self._last)
        self._last = now
