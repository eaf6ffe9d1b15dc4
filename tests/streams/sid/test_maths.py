"""Semantic-ID maths: the fit, the assignment, the suffix, the health figures, the sid score, fusion."""

from __future__ import annotations

import numpy as np
import pytest

from streams.sid.maths import (
    DriftWindow,
    assign,
    fit,
    fuse,
    health,
    parse_sid,
    prefix_text,
    shared_depth,
    sid_scores,
    sid_text,
    suffixes,
)


def _clusters(n_per: int = 40, centres: int = 12, dim: int = 16, seed: int = 3) -> np.ndarray:
    """Unit vectors around `centres` random directions (a catalogue with structure)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(centres, dim))
    points = np.concatenate([c + 0.15 * rng.normal(size=(n_per, dim)) for c in base])
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_a_fit_with_the_same_items_and_seed_gives_the_same_codebook_and_codes() -> None:
    vectors = _clusters()
    a = fit(vectors, levels=3, codes=8, seed=7, codebook_id="a", model_version="m", fitted_at_ms=1)
    b = fit(vectors.copy(), levels=3, codes=8, seed=7, codebook_id="b", model_version="m", fitted_at_ms=2)
    assert a.centroids.shape == (3, 8, 16)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(assign(a, vectors)[0], assign(b, vectors)[0])
    other = fit(vectors, levels=3, codes=8, seed=8, codebook_id="c", model_version="m", fitted_at_ms=1)
    assert not np.array_equal(other.centroids, a.centroids)  # the seed matters


def test_each_level_explains_more_of_the_vector_and_the_health_is_measured_on_the_fit_items() -> None:
    vectors = _clusters()
    errors = []
    for levels in (1, 2, 3):
        book = fit(vectors, levels=levels, codes=8, seed=0, codebook_id="x", model_version="m", fitted_at_ms=0)
        codes, error = assign(book, vectors)
        assert codes.shape == (len(vectors), levels) and codes.min() >= 0 and codes.max() < 8
        assert book.health.quantisation_error == pytest.approx(float(error.mean()), abs=1e-5)
        errors.append(book.health.quantisation_error)
    assert errors[0] > errors[1] > errors[2] > 0
    book = fit(vectors, levels=2, codes=8, seed=0, codebook_id="x", model_version="m", fitted_at_ms=0)
    assert book.health.items == len(vectors) and all(0 < u <= 1 for u in book.health.utilisation)


def test_a_vector_equal_to_a_centroid_sum_is_exact_and_its_codes_are_those_centroids() -> None:
    book = fit(_clusters(), levels=2, codes=8, seed=0, codebook_id="x", model_version="m", fitted_at_ms=0)
    exact = book.centroids[0][5] + book.centroids[1][2]
    codes, error = assign(book, exact[None, :])
    assert codes.tolist() == [[5, 2]] and error[0] < 1e-10


def test_health_counts_codes_in_use_and_items_sharing_a_full_code() -> None:
    found = np.array([[0, 1], [0, 1], [2, 3], [1, 1]], dtype=np.int32)
    h = health(found, np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32), codes=4)
    assert h.utilisation == (0.75, 0.5) and h.collision_rate == 0.5 and h.quantisation_error == pytest.approx(0.25)


def test_fit_refuses_fewer_items_than_codes_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="3 items cannot fill 8 codes"):
        fit(_clusters()[:3], levels=2, codes=8, seed=0, codebook_id="x", model_version="m", fitted_at_ms=0)


def test_sid_text_and_prefixes_cannot_confuse_code_1_with_code_12() -> None:
    assert sid_text([12, 200, 7]) == "12.200.7" and parse_sid("12.200.7") == (12, 200, 7) and parse_sid("") == ()
    assert prefix_text([1, 2, 3], 1) == "1." and not "12.200.7".startswith(prefix_text([1, 2, 3], 1))


def test_suffixes_keep_an_items_own_give_the_smallest_free_and_count_the_batch() -> None:
    existing = {"1.2.3": {"a": 0, "b": 2}}
    batch = [("c", "1.2.3"), ("a", "1.2.3"), ("d", "1.2.3"), ("e", "4.5.6"), ("f", "4.5.6"), ("e", "4.5.6")]
    assert suffixes(batch, existing) == [1, 0, 3, 0, 1, 0]
    assert existing == {"1.2.3": {"a": 0, "b": 2}}  # not modified


def test_the_sid_score_favours_a_positives_own_bucket_and_sums_over_positives() -> None:
    positives = np.array([[1, 2, 3], [1, 5, 6]], dtype=np.int32)
    candidates = np.array([[1, 2, 3], [1, 2, 9], [1, 7, 7], [9, 9, 9]], dtype=np.int32)
    assert shared_depth(candidates, positives).tolist() == [[3, 1], [2, 1], [1, 1], [0, 0]]
    scores = sid_scores(candidates, positives)
    assert scores[0] > scores[1] > scores[2] > scores[3] == 0
    assert scores[0] == pytest.approx((7 + 1) / 7) and scores[2] == pytest.approx(2 / 7)
    assert sid_scores(candidates, positives[:0]).tolist() == [0, 0, 0, 0]


def test_fuse_ranks_by_reciprocal_rank_across_lists() -> None:
    fused = fuse([["a", "b", "c"], ["c", "d"]], k=60)
    assert [item for item, _ in fused] == ["c", "a", "b", "d"]  # c is in both lists
    assert fused[0][1] == pytest.approx(1 / 63 + 1 / 61)


def test_the_drift_window_warns_only_when_fresh_items_quantise_worse_than_the_fit_by_the_ratio() -> None:
    window = DriftWindow(fitted_error=0.2, threshold=1.25, window=100)
    window.add([0.2] * 20)
    assert window.drift().fresh_error is None  # too few
    window.add([0.22] * 80)
    d = window.drift()
    assert not d.drifting and d.ratio == pytest.approx(1.08, abs=0.01) and d.items == 100
    window.add([0.4] * 100)  # the window rolls: only the last 100 count
    d = window.drift()
    assert d.drifting and d.ratio == pytest.approx(2.0) and d.fresh_error == pytest.approx(0.4)
