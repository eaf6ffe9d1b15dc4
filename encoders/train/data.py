"""What a training run reads: a catalogue of requests and the sources that pair them.

A dataset builder (`deploy/datasets/training.py`: MovieLens, emoji) turns real data into `TrainingData`;
the loop (`encoders.train.loop`) only sees these shapes, so a new dataset is a new builder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from topology.messages import EncodeRequest


@dataclass(frozen=True, slots=True)
class Pairs:
    """Contrastive pairs. Query i is the mean of the unit embeddings of the catalogue entries
    `queries[i]` (one entry: a text query or an item; several: a user's recent positives, the way the
    worker's interest vector is a mean of item vectors); its positive is catalogue entry `targets[i]`.
    Hard negatives, when the recipe mines them, come from this source's distinct targets."""

    name: str
    queries: list[tuple[str, ...]]
    targets: list[str]

    def __post_init__(self) -> None:
        if len(self.queries) != len(self.targets) or not self.targets:
            raise ValueError(
                f"source {self.name!r}: {len(self.queries)} queries for {len(self.targets)} targets (need equal, > 0)"
            )


@dataclass(frozen=True, slots=True)
class Distill:
    """ID2item distillation: the embedding of catalogue entry `items[i]`, through a linear head that
    exists only while training, is pulled towards `vectors[i]` (a collaborative item vector) against
    the other vectors of the batch."""

    name: str
    items: list[str]
    vectors: np.ndarray  # (N, d) unit rows

    def __post_init__(self) -> None:
        if len(self.items) != self.vectors.shape[0] or not self.items:
            raise ValueError(
                f"source {self.name!r}: {len(self.items)} items for {self.vectors.shape[0]} vectors (need equal, > 0)"
            )


Source = Pairs | Distill


@dataclass(frozen=True, slots=True)
class TrainingData:
    catalogue: dict[str, EncodeRequest]  # every entry a source names: items, text queries, images
    sources: dict[str, Source]

    def __post_init__(self) -> None:
        for source in self.sources.values():
            names = [e for q in source.queries for e in q] + source.targets if isinstance(source, Pairs) else source.items
            missing = [e for e in names if e not in self.catalogue]
            if missing:
                raise ValueError(
                    f"source {source.name!r} names {len(missing)} entries missing from the catalogue, e.g. {missing[:3]}"
                )
