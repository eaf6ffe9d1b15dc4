"""What the interest stage does with one event: park it, skip it, or apply it."""

import numpy as np

from streams.worker.interest import disposition
from topology.messages import Action, Interaction, InterestState

VECTORS = {"stored": np.ones(4, dtype=np.float32)}


def _event(item: str, timestamp_ms: int, event_id: str = "e1") -> Interaction:
    return Interaction(event_id=event_id, user_id="u", item_id=item, action=Action.LIKE, timestamp_ms=timestamp_ms)


def test_an_event_older_than_the_dedup_floor_naming_an_unknown_item_is_parked_not_dropped() -> None:
    # The 30-minute soak: a well-formed like of an item nobody uploaded, stamped below the user's positive
    # floor, was skipped as "applied already" and so never reached the dead-letter topic.
    state = InterestState(floor_positive_ms=10_000)
    assert disposition(state, _event("never-uploaded", 5_000), VECTORS) == "park"
    assert disposition(state, _event("stored", 5_000), VECTORS) == "skip"  # a known item under the floor: the bound's price
    assert disposition(state, _event("stored", 20_000), VECTORS) == "apply"
    assert disposition(state, _event("never-uploaded", 20_000), VECTORS) == "park"
