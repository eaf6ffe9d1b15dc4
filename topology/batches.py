"""How a producer sends interactions: one event per record, or each user's events gathered into batch
records as tracking SDKs flush them (the wire form: `topology.codec.encode_interaction_batch`)."""

from __future__ import annotations

from topology.codec import encode_interaction, encode_interaction_batch
from topology.messages import Interaction


class UserBatches:
    """Interactions as a tracking SDK sends them: each user's events gathered into one batch record
    (`topology.codec.encode_interaction_batch`) of up to `size`, sent when full or once its oldest
    event has waited `linger_s`; `size` 1 sends every event as its own record. Records come out as
    (key, value) for the interactions topic, each user's events in their order."""

    def __init__(self, size: int = 1, linger_s: float = 2.0) -> None:
        if size < 1:
            raise ValueError(f"a batch holds at least one event, not {size}")
        self.size, self.linger_s = size, linger_s
        self._open: dict[str, tuple[float, list[Interaction]]] = {}  # user -> (first added at, events)

    def add(self, event: Interaction, now_s: float) -> list[tuple[bytes, bytes]]:
        """Take one event; returns the records now ready (its user's batch if full, and any overdue)."""
        if self.size == 1:
            return [(event.user_id.encode(), encode_interaction(event))]
        _, events = self._open.setdefault(event.user_id, (now_s, []))
        events.append(event)
        ready = self._close(event.user_id) if len(events) >= self.size else []
        return ready + self.due(now_s)

    def due(self, now_s: float) -> list[tuple[bytes, bytes]]:
        """The batches whose oldest event has waited `linger_s`."""
        late = [user for user, (since, _) in self._open.items() if now_s - since >= self.linger_s]
        return [record for user in late for record in self._close(user)]

    def drain(self) -> list[tuple[bytes, bytes]]:
        """Every open batch, now (at the end of the traffic)."""
        return [record for user in list(self._open) for record in self._close(user)]

    def _close(self, user: str) -> list[tuple[bytes, bytes]]:
        _, events = self._open.pop(user)
        value = encode_interaction(events[0]) if len(events) == 1 else encode_interaction_batch(user, events)
        return [(user.encode(), value)]
