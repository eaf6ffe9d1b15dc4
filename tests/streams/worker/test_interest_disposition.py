"""What the interest stage does with one event: park it, skip it, or apply it."""

import numpy as np

from streams.worker.interest import disposition, recent_items_field
from topology.messages import Action, Interaction, InterestState, Signal

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


def test_the_recent_items_field_lists_the_window_newest_first_once_each() -> None:
    positives = (Signal("e2", "a", 2_000, 1.0), Signal("e5", "b", 5_000, 1.0), Signal("e7", "a", 7_000, 1.0))
    negatives = (Signal("e6", "c", 6_000, -1.0), Signal("f6", "d", 6_000, -1.0))  # a tie broken by the event id
    state = InterestState(positives=positives, negatives=negatives)
    assert recent_items_field(state) == "a,d,c,b"
    assert recent_items_field(state, positives_only=True) == "a,b"
