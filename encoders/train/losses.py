"""Contrastive losses of the SAIL recipe: InfoNCE at every Matryoshka prefix with a learnable
temperature; in-batch negatives plus mined hard negatives; a false-negative guard.

Shapes: B queries, their B positive targets, D embedding dims, H hard negatives per query.
Every function takes raw (unnormalised) embeddings and normalises each Matryoshka prefix itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Temperature(nn.Module):
    """A learnable softmax temperature tau, held as log(1/tau) as in CLIP and kept in [min_tau, max_tau]."""

    def __init__(self, initial: float = 0.05, min_tau: float = 0.01, max_tau: float = 1.0) -> None:
        super().__init__()
        if not 0 < min_tau <= initial <= max_tau:
            raise ValueError(f"need 0 < min_tau <= initial <= max_tau, got {min_tau}, {initial}, {max_tau}")
        self.log_inverse = nn.Parameter(torch.tensor(math.log(1.0 / initial)))
        self.min_tau, self.max_tau = min_tau, max_tau

    def forward(self) -> torch.Tensor:
        return torch.exp(-self.log_inverse).clamp(self.min_tau, self.max_tau)


def info_nce(
    queries: torch.Tensor,
    targets: torch.Tensor,
    tau: torch.Tensor | float,
    target_ids: Sequence[object] | None = None,
    hard_negatives: torch.Tensor | None = None,
    hard_mask: torch.Tensor | None = None,
    false_negative_margin: float | None = 0.1,
) -> torch.Tensor:
    """Mean InfoNCE of B (query, target) pairs; all inputs unit-normalised.

    Row i's positive is target i. Its negatives: the other targets of the batch, except those with
    the same id as target i (the same item twice in a batch is no negative), and its `hard_negatives`
    (B, H, D) where `hard_mask` (B, H) is True. The false-negative guard drops any negative whose
    similarity to the query exceeds the positive's by more than `false_negative_margin`: such a
    "negative" is more likely an unlabelled positive than a mistake to push away (None: no guard).
    """
    b = queries.shape[0]
    positive = (queries * targets).sum(-1, keepdim=True)  # (B, 1)
    in_batch = queries @ targets.T  # (B, B)
    allowed = ~torch.eye(b, dtype=torch.bool, device=queries.device)
    if target_ids is not None:
        codes: dict[object, int] = {}
        index = torch.tensor([codes.setdefault(i, len(codes)) for i in target_ids], device=queries.device)
        allowed &= index[:, None] != index[None, :]
    negatives, masks = [in_batch], [allowed]
    if hard_negatives is not None:
        negatives.append(torch.einsum("bd,bhd->bh", queries, hard_negatives))
        masks.append(
            hard_mask if hard_mask is not None else torch.ones(hard_negatives.shape[:2], dtype=torch.bool, device=queries.device)
        )
    similarity, mask = torch.cat(negatives, dim=1), torch.cat(masks, dim=1)
    if false_negative_margin is not None:
        mask = mask & (similarity <= positive + false_negative_margin)
    # masked after the division: -inf / tau would give the temperature a NaN gradient
    keep = torch.cat([mask.new_ones(b, 1), mask], dim=1)
    logits = (torch.cat([positive, similarity], dim=1) / tau).masked_fill(~keep, float("-inf"))
    return F.cross_entropy(logits, torch.zeros(b, dtype=torch.long, device=queries.device))


def matryoshka_info_nce(
    queries: torch.Tensor,
    targets: torch.Tensor,
    dims: Sequence[int],
    tau: torch.Tensor | float,
    weights: Sequence[float] | None = None,
    hard_negatives: torch.Tensor | None = None,
    target_ids: Sequence[object] | None = None,
    hard_mask: torch.Tensor | None = None,
    false_negative_margin: float | None = 0.1,
) -> torch.Tensor:
    """`info_nce` at every Matryoshka prefix (each prefix L2-normalised), averaged with `weights`
    (equal by default), so every prefix is a usable embedding on its own."""
    weights = list(weights) if weights is not None else [1.0] * len(dims)
    if len(weights) != len(dims) or not dims:
        raise ValueError(f"one weight per Matryoshka dim: {list(dims)} vs {weights}")
    total = queries.new_zeros(())
    for dim, weight in zip(dims, weights):
        if not 0 < dim <= queries.shape[-1]:
            raise ValueError(f"Matryoshka dim {dim} outside 1..{queries.shape[-1]}")
        hard = _prefix(hard_negatives, dim) if hard_negatives is not None else None
        total = total + weight * info_nce(
            _prefix(queries, dim),
            _prefix(targets, dim),
            tau,
            target_ids=target_ids,
            hard_negatives=hard,
            hard_mask=hard_mask,
            false_negative_margin=false_negative_margin,
        )
    return total / sum(weights)


def _prefix(vectors: torch.Tensor, dim: int) -> torch.Tensor:
    return F.normalize(vectors[..., :dim], dim=-1)


def mine_hard_negatives(
    queries: torch.Tensor, corpus: torch.Tensor, positives: Sequence[set[int]], k: int, max_similarity: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query (B, D), the `k` corpus rows (N, D) most similar to it that are not among its
    `positives` (corpus indices) and, with `max_similarity`, not above it (near-duplicates of the
    query are likely unlabelled positives). Inputs unit-normalised.

    Returns (indices (B, k), valid (B, k)): `valid` is False where fewer than k candidates qualify.
    """
    similarity = queries @ corpus.T  # (B, N)
    blocked = torch.zeros_like(similarity, dtype=torch.bool)
    for row, known in enumerate(positives):
        if known:
            blocked[row, list(known)] = True
    if max_similarity is not None:
        blocked |= similarity > max_similarity
    scores = similarity.masked_fill(blocked, float("-inf"))
    top = scores.topk(min(k, corpus.shape[0]), dim=1)
    indices, valid = top.indices, torch.isfinite(top.values)
    if indices.shape[1] < k:  # a corpus smaller than k
        pad = k - indices.shape[1]
        indices = torch.cat([indices, indices.new_zeros(indices.shape[0], pad)], dim=1)
        valid = torch.cat([valid, valid.new_zeros(valid.shape[0], pad)], dim=1)
    return indices, valid
