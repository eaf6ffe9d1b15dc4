"""User-interest maths: pure functions, so replays, reordering and duplicates must not matter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.interest.maths import (
    InterestParams,
    apply_interaction,
    fold_interactions,
    interest_vectors,
    interest_vectors_many,
    l2_normalise,
    matryoshka,
)
from topology.codec import decode_interest_state, encode_interest_state
from topology.messages import Action, Interaction, InterestState

DIM = 8
RNG = np.random.default_rng(0)
ITEMS = {f"i{n}": l2_normalise(RNG.standard_normal(DIM).astype(np.float32)) for n in range(30)}
PARAMS = InterestParams(window=10)


def ev(n: int, item: str, action: Action = Action.LIKE, ts: int | None = None, dwell: int = 0) -> Interaction:
    return Interaction(
        event_id=f"e{n}",
        user_id="u",
        item_id=item,
        action=action,
        timestamp_ms=ts if ts is not None else n * 1000,
        dwell_ms=dwell,
    )


events_strategy = st.lists(
    st.builds(
        lambda n, item, action, ts: ev(n, f"i{item}", action, ts),
        st.integers(0, 60),
        st.integers(0, 29),
        st.sampled_from(list(Action)),
        st.integers(0, 10**7),
    ),
    max_size=40,
    unique_by=lambda e: e.event_id,
)


def test_mean_of_the_last_ten_positive_items_as_in_the_sail_report() -> None:
    params = InterestParams(window=10, half_life_s=1e12)  # no decay: the plain SAIL mean
    events = [ev(n, f"i{n}") for n in range(15)]
    vector = interest_vectors(fold_interactions(events, params), ITEMS, params)
    assert vector is not None and vector.shape == (1, DIM)
    expected = l2_normalise(np.mean([ITEMS[f"i{n}"] for n in range(5, 15)], axis=0))
    np.testing.assert_allclose(vector[0], expected, atol=1e-6)


def test_replayed_event_leaves_state_and_vector_unchanged() -> None:
    state = fold_interactions([ev(1, "i1"), ev(2, "i2", Action.DISLIKE)], PARAMS)
    assert apply_interaction(state, ev(1, "i1"), PARAMS) is state
    assert apply_interaction(state, ev(2, "i2", Action.DISLIKE), PARAMS) is state


@settings(max_examples=150)
@given(events_strategy, st.randoms(use_true_random=False))
def test_order_and_duplicates_do_not_change_the_vector(events: list[Interaction], rnd) -> None:
    shuffled = events + events[: len(events) // 2]
    rnd.shuffle(shuffled)
    for slots in (1, 3):
        params = InterestParams(window=10, slots=slots)
        a = interest_vectors(fold_interactions(events, params), ITEMS, params)
        b = interest_vectors(fold_interactions(shuffled, params), ITEMS, params)
        if a is None:
            assert b is None
        else:
            assert b is not None
            np.testing.assert_allclose(a, b, atol=1e-6)


def _reference(state: InterestState, vectors: dict[str, np.ndarray], params: InterestParams) -> np.ndarray | None:
    """The single-slot vector by its definition, one state at a time in plain Python."""

    def mean(signals: tuple) -> tuple[np.ndarray, float]:
        total, weights = np.zeros(DIM), 0.0
        for s in signals:
            if s.item_id in vectors:
                w = s.weight * 0.5 ** (max(state.updated_at_ms - s.timestamp_ms, 0) / 1000 / params.half_life_s)
                total, weights = total + w * vectors[s.item_id].astype(np.float64), weights + w
        return total / (weights or 1.0), weights

    positive, known = mean(state.positives)
    if known == 0:
        return None
    v = positive - params.negative_weight * mean(state.negatives)[0]
    return v / np.linalg.norm(v)


@settings(max_examples=100)
@given(st.lists(events_strategy, min_size=1, max_size=6), st.integers(0, 29))
def test_a_batch_of_users_gets_each_users_own_vector(logs: list[list[Interaction]], unknown: int) -> None:
    # The batched maths give every user exactly the vector it has alone (a replayed or recomputed state
    # must give the row written), and that vector is its definition's; some items have no vector yet.
    vectors = {item: v for item, v in ITEMS.items() if item != f"i{unknown}"}
    for params in (PARAMS, InterestParams(window=4, half_life_s=30.0), InterestParams(window=10, slots=3)):
        states = [fold_interactions(log, params) for log in logs]
        together = interest_vectors_many(states, vectors, params)
        for state, batched in zip(states, together):
            alone = interest_vectors(state, vectors, params)
            assert (batched is None) == (alone is None)
            if batched is not None:
                assert alone is not None and np.array_equal(batched, alone)
                want = _reference(state, vectors, params) if params.slots == 1 else None
                if want is not None:
                    np.testing.assert_allclose(batched[0], want, atol=1e-6)


def test_negatives_push_the_vector_away() -> None:
    likes = [ev(n, f"i{n}") for n in range(3)]
    base = interest_vectors(fold_interactions(likes, PARAMS), ITEMS, PARAMS)
    pushed = interest_vectors(fold_interactions([*likes, ev(9, "i20", Action.DISLIKE, ts=2500)], PARAMS), ITEMS, PARAMS)
    assert base is not None and pushed is not None
    assert float(pushed[0] @ ITEMS["i20"]) < float(base[0] @ ITEMS["i20"])


def test_only_negatives_give_no_vector_yet() -> None:
    state = fold_interactions([ev(1, "i1", Action.SKIP)], PARAMS)
    assert interest_vectors(state, ITEMS, PARAMS) is None
    assert state.event_count == 1


def test_longer_dwell_weighs_a_view_more() -> None:
    short = fold_interactions([ev(1, "i1", Action.VIEW, dwell=500)], PARAMS).positives[0].weight
    full = fold_interactions([ev(1, "i1", Action.VIEW, dwell=30_000)], PARAMS).positives[0].weight
    assert short < full == 1.0


def test_recency_decay_favours_the_newest_item() -> None:
    params = InterestParams(window=10, half_life_s=60.0)
    vector = interest_vectors(fold_interactions([ev(1, "i1", ts=0), ev(2, "i2", ts=600_000)], params), ITEMS, params)
    assert vector is not None
    assert float(vector[0] @ ITEMS["i2"]) > float(vector[0] @ ITEMS["i1"])


def test_k_slots_separate_two_distinct_interests() -> None:
    cats = l2_normalise(np.eye(DIM, dtype=np.float32)[0] + 0.05 * RNG.standard_normal((4, DIM)).astype(np.float32))
    cars = l2_normalise(np.eye(DIM, dtype=np.float32)[1] + 0.05 * RNG.standard_normal((3, DIM)).astype(np.float32))
    vectors = {**{f"cat{n}": v for n, v in enumerate(cats)}, **{f"car{n}": v for n, v in enumerate(cars)}}
    events = [ev(n, f"cat{n}") for n in range(4)] + [ev(10 + n, f"car{n}") for n in range(3)]
    params = InterestParams(window=10, slots=2)
    slots = interest_vectors(fold_interactions(events, params), vectors, params)
    assert slots is not None and slots.shape == (2, DIM)
    assert np.argmax(np.abs(slots[0])) == 0  # the stronger interest (4 cats) first
    assert np.argmax(np.abs(slots[1])) == 1
    np.testing.assert_allclose(np.linalg.norm(slots, axis=1), 1.0, atol=1e-6)


def test_fewer_clusters_than_slots_repeat_the_strongest() -> None:
    params = InterestParams(window=10, slots=3)
    slots = interest_vectors(fold_interactions([ev(1, "i1"), ev(2, "i1")], params), ITEMS, params)
    assert slots is not None and slots.shape == (3, DIM)
    np.testing.assert_allclose(slots[1], slots[0])


def test_items_without_a_known_vector_are_left_out() -> None:
    state = fold_interactions([ev(1, "i1"), ev(2, "unknown")], PARAMS)
    vector = interest_vectors(state, ITEMS, PARAMS)
    assert vector is not None
    np.testing.assert_allclose(vector[0], ITEMS["i1"], atol=1e-6)


@given(events_strategy)
def test_state_round_trips_through_table_bytes(events: list[Interaction]) -> None:
    state = fold_interactions(events, PARAMS)
    assert decode_interest_state(encode_interest_state(state)) == state
    assert decode_interest_state(None) == InterestState()


def test_matryoshka_prefix_is_unit_norm() -> None:
    v = l2_normalise(RNG.standard_normal((3, 16)).astype(np.float32))
    np.testing.assert_allclose(np.linalg.norm(matryoshka(v, 4), axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError):
        matryoshka(v, 17)


def test_the_state_stays_bounded_however_many_events_a_user_has() -> None:
    from topology.codec import encode_interest_state

    kinds = [Action.LIKE, Action.VIEW, Action.SKIP, Action.SHARE, Action.DISLIKE]
    events = [ev(n, f"i{n % 30}", kinds[n % len(kinds)]) for n in range(5000)]
    state = fold_interactions(events, PARAMS)
    assert state.event_count == 5000 and state.updated_at_ms == 4999 * 1000
    assert len(state.recent_positive) == len(state.recent_negative) == PARAMS.dedup_per_kind
    assert len(encode_interest_state(state)) < 4096  # was ~20 kB with 1,024 remembered ids
    for old in (events[0], events[2], events[4000], events[-1]):  # forgotten long ago, or remembered
        assert apply_interaction(state, old, PARAMS) is state


@settings(max_examples=200)
@given(
    st.lists(
        st.builds(
            lambda n, item, action: (n, f"i{item}", action), st.integers(0, 80), st.integers(0, 29), st.sampled_from(list(Action))
        ),
        max_size=40,
        unique_by=lambda t: t[0],
    ),
    st.randoms(use_true_random=False),
)
def test_forgetting_old_ids_changes_neither_the_vector_nor_the_replay_invariance(
    spec: list[tuple[int, str, Action]], rnd
) -> None:
    """With a de-duplication memory barely over the window, most ids are forgotten: the windows and
    the newest time are still a function of the set of events, whatever the order and duplicates."""
    params = InterestParams(window=3, dedup_per_kind=4)
    events = [ev(n, item, action, ts=n * 7) for n, item, action in spec]  # distinct milliseconds
    shuffled = events + events[: len(events) // 2]
    rnd.shuffle(shuffled)
    a, b = fold_interactions(events, params), fold_interactions(shuffled, params)
    assert (a.positives, a.negatives, a.updated_at_ms) == (b.positives, b.negatives, b.updated_at_ms)
    va, vb = interest_vectors(a, ITEMS, params), interest_vectors(b, ITEMS, params)
    assert (va is None) == (vb is None)
    if va is not None:
        np.testing.assert_allclose(va, vb, atol=1e-6)  # type: ignore[arg-type]
    assert len(b.recent_positive) <= 4 and len(b.recent_negative) <= 4


def test_a_memory_smaller_than_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match="dedup_per_kind"):
        InterestParams(window=10, dedup_per_kind=5)
