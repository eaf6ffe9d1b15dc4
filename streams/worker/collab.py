"""Co-engagements -> items' collaborative states (the Faust table, key `item_id`) and Milvus
`collab_items` rows (`streams.collab.maths`).

One micro-batch, gathered for up to SAIL_COLLAB_FLUSH_MS: decode; read each item's state; apply
its co-engagements (a replayed one changes nothing) and an upload's prior; upsert one row per item
changed (a hot item liked a thousand times in the window is written once); then write the states.
Rows reach Milvus before the table, so a crash in between replays to the same result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from streams.collab.maths import CollabParams, apply_co_engagements, item_vector, with_prior
from streams.worker.context import Context
from topology import reasons
from topology.codec import BadInput, decode_co_engagement, decode_collab_state, encode_collab_state
from topology.collections import collab_item_row
from topology.messages import CoEngagement


class CollabStage:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.params = CollabParams.for_settings(ctx.settings)
        self.items, _ = ctx.settings.collab_collections()

    async def handle(self, events: Sequence[Any], table: Any) -> None:
        ctx = self.ctx
        began = time.process_time()
        ctx.metrics.count_events("collab", len(events))
        by_item: dict[str, list[tuple[Any, CoEngagement]]] = {}
        malformed: list[tuple[Any, str, str]] = []
        for event in events:
            try:
                engagement = decode_co_engagement(event.value, ctx.limits)
            except BadInput as exc:
                malformed.append((event, exc.reason, exc.detail))
                continue
            by_item.setdefault(engagement.item_id, []).append((event, engagement))
        if malformed:
            await ctx.outbox.dead_letter_events(malformed)
        changed = {}
        applied = 0
        for item, pairs in by_item.items():
            first = state = decode_collab_state(table.get(item.encode()), ctx.limits)
            for _, engagement in pairs:
                if engagement.prior:
                    state = with_prior(state, engagement.prior, self.params)
            state = apply_co_engagements(state, [e for _, e in pairs if not e.prior], self.params)  # one prune per item
            applied += state.likes - first.likes
            if state is not first:
                changed[item] = state
        if not changed:
            return
        rows = [collab_item_row(item, s.likes, s.updated_at_ms, item_vector(item, s, self.params)) for item, s in changed.items()]
        spent = time.process_time() - began
        refused = await ctx.upsert_each(self.items, rows)
        resumed = time.process_time()
        if refused:
            letters = []
            for index, reason in refused.items():
                item = str(rows[index]["item_id"])
                del changed[item]
                letters += [(event, reasons.SINK_REJECTED, reason) for event, _ in by_item[item]]
            await ctx.outbox.dead_letter_events(letters)
        acked_s = time.time()
        metrics = ctx.metrics
        for item in changed:
            stamps = [e.timestamp_ms for _, e in by_item[item] if not e.prior]
            if stamps:
                metrics.collab_freshness.observe(max(acked_s - max(stamps) / 1000, 0.0))
        metrics.collab_rows.labels("item").inc(len(changed))
        metrics.collab_applied.inc(applied)
        values = {item.encode(): encode_collab_state(state) for item, state in changed.items()}
        metrics.collab_seconds.inc(spent + time.process_time() - resumed)
        await ctx.outbox.write_table(table, values)
