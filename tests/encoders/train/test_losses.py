"""The SAIL recipe's contrastive losses, against hand-computed values and their defining properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from encoders.train.losses import Temperature, info_nce, matryoshka_info_nce, mine_hard_negatives


def unit(*rows: list[float]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_info_nce_is_the_cross_entropy_of_the_positive_among_in_batch_negatives() -> None:
    q = unit([1, 0], [0, 1])
    t = unit([1, 0], [1, 1])
    # row 0: positive 1, negative cos(45 deg); row 1: positive cos(45 deg), negative 0; tau 0.5
    c = math.cos(math.pi / 4)
    expected = (-math.log(math.exp(2) / (math.exp(2) + math.exp(2 * c))) - math.log(math.exp(2 * c) / (math.exp(2 * c) + 1))) / 2
    assert info_nce(q, t, 0.5, false_negative_margin=None).item() == pytest.approx(expected, rel=1e-5)


def test_the_same_target_twice_in_a_batch_is_no_negative() -> None:
    q = unit([1, 0], [1, 0.1])
    t = unit([1, 0.05], [1, 0.05])  # one item, twice
    assert info_nce(q, t, 0.1, target_ids=["a", "a"]).item() == pytest.approx(0.0, abs=1e-6)
    assert info_nce(q, t, 0.1, target_ids=["a", "b"], false_negative_margin=None).item() > 0.5


def test_the_false_negative_guard_drops_negatives_far_closer_than_the_positive() -> None:
    q = unit([1, 0])
    t = unit([0.2, 1])  # a weak positive
    hard = unit([1, 0.01]).unsqueeze(0)  # (1, 1, 2): nearly the query itself, likely an unlabelled positive
    guarded = info_nce(q, t, 0.1, hard_negatives=hard, false_negative_margin=0.1)
    unguarded = info_nce(q, t, 0.1, hard_negatives=hard, false_negative_margin=None)
    assert guarded.item() == pytest.approx(0.0, abs=1e-6) and unguarded.item() > 5
    masked = info_nce(q, t, 0.1, hard_negatives=hard, hard_mask=torch.tensor([[False]]), false_negative_margin=None)
    assert masked.item() == pytest.approx(0.0, abs=1e-6)


def test_matryoshka_loss_averages_the_loss_of_each_renormalised_prefix() -> None:
    g = torch.Generator().manual_seed(0)
    q, t = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    by_prefix = [info_nce(F.normalize(q[:, :d], dim=-1), F.normalize(t[:, :d], dim=-1), 0.2) for d in (2, 8)]
    assert matryoshka_info_nce(q, t, [2, 8], 0.2).item() == pytest.approx(sum(x.item() for x in by_prefix) / 2, rel=1e-6)
    assert matryoshka_info_nce(q, t, [2, 8], 0.2, weights=[3, 1]).item() == pytest.approx(
        (3 * by_prefix[0].item() + by_prefix[1].item()) / 4, rel=1e-6
    )
    with pytest.raises(ValueError):
        matryoshka_info_nce(q, t, [16], 0.2)


def test_the_temperature_learns_and_stays_in_its_bounds() -> None:
    tau = Temperature(initial=0.05, min_tau=0.01, max_tau=1.0)
    assert tau().item() == pytest.approx(0.05)
    q = unit([1, 0], [0, 1])
    loss = info_nce(q, unit([1, 0.5], [0.5, 1]), tau())  # each row's own target is masked out of its negatives (-inf)
    loss.backward()
    grad = tau.log_inverse.grad
    assert grad is not None and torch.isfinite(grad) and grad.item() != 0.0  # a masked logit must not make it NaN
    with torch.no_grad():
        tau.log_inverse.fill_(100.0)
    assert tau().item() == pytest.approx(0.01)


def test_mined_negatives_are_the_closest_non_positives_under_the_ceiling() -> None:
    corpus = unit([1, 0], [0.9, 0.1], [0.5, 0.5], [0, 1])
    q = unit([1, 0])
    indices, valid = mine_hard_negatives(q, corpus, [{0}], k=2)
    assert indices.tolist() == [[1, 2]] and valid.all()
    indices, valid = mine_hard_negatives(q, corpus, [{0}], k=2, max_similarity=0.95)  # row 1 (cos 0.994) is a near-duplicate
    assert indices.tolist() == [[2, 3]] and valid.all()
    indices, valid = mine_hard_negatives(q, corpus, [{0, 1, 2}], k=3)
    assert indices[0, 0].item() == 3 and valid.tolist() == [[True, False, False]]
    _, valid = mine_hard_negatives(q, corpus, [set()], k=6)  # more than the corpus
    assert valid.tolist() == [[True] * 4 + [False] * 2]
