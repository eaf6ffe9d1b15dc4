"""Collaborative-vector maths: replays and reordering change nothing, and the sparse search is the
online item-to-item co-occurrence score it claims to be."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.quality import Collab
from streams.collab.maths import (
    CollabParams,
    apply_co_engagement,
    apply_co_engagements,
    co_engagement,
    dimension,
    dot,
    identity,
    item_vector,
    search_vector,
    user_items,
    user_vector,
    with_prior,
)
from streams.interest.maths import InterestParams, apply_interaction
from topology.codec import decode_interest_state, encode_interest_state
from topology.messages import Action, CoEngagement, Interaction, InterestState, ItemCollabState

PARAMS = CollabParams(pairs=5, user_items=4, user_decay=0.5, item_norm=0.3, max_pairs=1024, dedup=64)
ITEMS = [f"m{k}" for k in range(12)]


def log(seed: int, events: int = 200, users: int = 6) -> list[Interaction]:
    rng = random.Random(seed)
    actions = [Action.LIKE, Action.LIKE, Action.VIEW, Action.SKIP]
    return [
        Interaction(f"e{k}", f"u{rng.randrange(users)}", rng.choice(ITEMS), rng.choice(actions), 1_000 + k, 10_000)
        for k in range(events)
    ]


def stream(events: list[Interaction], params: CollabParams = PARAMS) -> tuple[dict[str, InterestState], list[CoEngagement]]:
    """Users' states and the co-engagements their applied positives emit, as the worker makes them."""
    interest = InterestParams(history=params.pairs)
    users: dict[str, InterestState] = defaultdict(InterestState)
    emitted = []
    for e in events:
        before = users[e.user_id]
        users[e.user_id] = apply_interaction(before, e, interest)
        if not e.action.is_negative and users[e.user_id] is not before:
            emitted.append(co_engagement(before, e.event_id, e.user_id, e.item_id, e.timestamp_ms, params.pairs))
    return users, emitted


def items_from(engagements: list[CoEngagement], params: CollabParams = PARAMS) -> dict[str, ItemCollabState]:
    states: dict[str, ItemCollabState] = defaultdict(ItemCollabState)
    for g in engagements:
        states[g.item_id] = apply_co_engagement(states[g.item_id], g, params)
    return dict(states)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_an_items_state_is_the_same_in_any_order_and_with_every_event_redelivered(seed: int) -> None:
    _, emitted = stream(log(seed))
    reference = items_from(emitted)
    shuffled = emitted + emitted[: len(emitted) // 2]  # half of them delivered twice
    random.Random(seed).shuffle(shuffled)
    again = items_from(shuffled)
    assert again.keys() == reference.keys()
    for item, state in reference.items():
        assert item_vector(item, again[item], PARAMS) == pytest.approx(item_vector(item, state, PARAMS))
        assert again[item].likes == state.likes


def test_the_search_score_is_the_co_occurrence_of_the_users_recent_positives() -> None:
    users, emitted = stream(log(7, events=400))
    items = items_from(emitted)
    # the reference, straight from the definition: F[j][i] = times i was among the previous positives of a liker of j
    together: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    likes: dict[str, int] = defaultdict(int)
    for g in emitted:
        likes[g.item_id] += 1
        for i in g.before:
            together[g.item_id][i] += 1.0
    checked = 0
    for user, state in users.items():
        mine = user_items(state, PARAMS)
        query = search_vector([(w, item_vector(i, items[i], PARAMS)) for i, w in mine if i in items])
        for j in ITEMS:
            expected = sum(
                w * (together[j][i] + together[i][j]) / (max(likes[i], 1) * max(likes[j], 1)) ** PARAMS.item_norm
                for i, w in mine
                if i in items
            )
            got = dot(item_vector(j, items[j], PARAMS), query) if j in items else 0.0
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (user, j)
            checked += expected > 0
    assert checked > 20  # the log pairs items: most scores are not zero


def test_a_co_engagement_pairs_the_previous_positives_newest_first_without_the_item_itself() -> None:
    interest = InterestParams(history=3)
    state = InterestState()
    for k, item in enumerate(["a", "b", "a", "c", "d"]):
        state = apply_interaction(state, Interaction(f"e{k}", "u", item, Action.LIKE, 1_000 + k), interest)
    assert state.history == ("a", "c", "d")  # bounded, in the order applied
    g = co_engagement(state, "e9", "u", "c", 2_000, pairs=5)
    assert g.before == ("d", "a")
    assert decode_interest_state(encode_interest_state(state)).history == state.history
    assert user_items(state, PARAMS) == [("d", 1.0), ("c", 0.5), ("a", 0.25)]
    assert user_vector(state, PARAMS) == {dimension("d"): 1.0, dimension("c"): 0.5, dimension("a"): 0.25}


def test_a_fresh_upload_starts_from_its_content_neighbours_and_its_likes_outweigh_them() -> None:
    state = with_prior(ItemCollabState(), [("a", 0.9), ("b", 0.5), ("c", -0.2)], PARAMS)
    vector = item_vector("new", state, PARAMS)
    assert vector == {dimension("a"): 0.9, dimension("b"): 0.5, identity("new"): 1.0}
    assert with_prior(state, [("z", 1.0)], PARAMS) == state  # set once
    for k in range(3):
        state = apply_co_engagement(state, CoEngagement(f"e{k}", f"u{k}", "new", 1_000 + k, ("c",)), PARAMS)
    vector = item_vector("new", state, PARAMS)
    assert vector[dimension("c")] > vector[dimension("a")]
    assert with_prior(state, [("z", 1.0)], PARAMS) == state  # a liked item keeps its state


def test_state_stays_bounded() -> None:
    small = CollabParams(pairs=50, max_pairs=8, dedup=4)
    state = ItemCollabState()
    for k in range(40):
        state = apply_co_engagement(
            state, CoEngagement(f"e{k}", "u", "x", 1_000 + k, tuple(f"i{k}-{n}" for n in range(5))), small
        )
    assert len(state.pairs) == 8 and len(state.recent) == 4
    assert state.likes == 40
    old = CoEngagement("e0", "u", "x", 1_000, ("q",))
    assert apply_co_engagement(state, old, small) == state  # older than the floor: counts as applied


def test_the_benchmarks_dense_form_equals_the_sparse_maths() -> None:
    users, emitted = stream(log(3, events=300))
    rng = np.random.default_rng(0)
    content = rng.standard_normal((len(ITEMS), 8)).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    dense = Collab(ITEMS, PARAMS)
    for k in range(len(ITEMS)):
        dense.arrive(k, content, k + 1)
    states = {item: dense.states[k] for k, item in enumerate(ITEMS)}
    for g in emitted:
        dense.states[dense.of[g.item_id]] = apply_co_engagement(dense.states[dense.of[g.item_id]], g, PARAMS)
        dense._store(dense.of[g.item_id])
        states[g.item_id] = apply_co_engagement(states[g.item_id], g, PARAMS)
    for state in users.values():
        row = dense.row(state)
        mine = user_items(state, PARAMS)
        query = search_vector([(w, item_vector(i, states[i], PARAMS)) for i, w in mine])
        expected = [dot(item_vector(j, states[j], PARAMS), query) for j in ITEMS]
        assert row is not None and row == pytest.approx(expected, rel=1e-5)


def test_a_batch_applied_at_once_equals_its_events_applied_one_by_one_within_the_bound() -> None:
    _, emitted = stream(log(11, events=300))
    for item in ITEMS:
        mine = [g for g in emitted if g.item_id == item]
        one_by_one = ItemCollabState()
        for g in mine:
            one_by_one = apply_co_engagement(one_by_one, g, PARAMS)
        at_once = apply_co_engagements(ItemCollabState(), mine + mine[:3], PARAMS)  # a redelivery inside the batch too
        assert at_once == one_by_one
