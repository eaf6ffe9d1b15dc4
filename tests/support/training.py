"""A tiny training set and recipe: a few steps of the real loop in seconds (tests only)."""

from __future__ import annotations

import numpy as np

from encoders.train.data import Distill, Pairs, TrainingData
from encoders.train.recipe import Recipe, recipe_from_dict
from topology.messages import EncodeRequest

TOPICS = ["cats", "football", "cooking", "guitar", "travel", "chess"]


def tiny_data() -> TrainingData:
    catalogue = {f"{t}-{n}": EncodeRequest(title=f"{t} video number {n}", tags=(t,)) for t in TOPICS for n in range(2)}
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(catalogue), 8)).astype(np.float32)
    return TrainingData(
        catalogue,
        {
            "pairs": Pairs(
                "pairs", [(f"{t}-0",) for t in TOPICS] + [(f"{t}-0", f"{t}-1") for t in TOPICS], [f"{t}-1" for t in TOPICS] * 2
            ),
            "distill": Distill("distill", list(catalogue), vectors / np.linalg.norm(vectors, axis=1, keepdims=True)),
        },
    )


def tiny_recipe(**changes: object) -> Recipe:
    raw = {
        "name": "sail-tiny-test",
        "base": "sail-tiny",
        "dataset": "movielens",
        "steps": 4,
        "batch_size": 4,
        "seed": 7,
        "trainable": {"fusion.model.encoder.layer.5": 1e-4},
        "hard_negatives": 1,
        "checkpoint_every": 2,
        "log_every": 2,
        "sources": [{"name": "pairs"}, {"name": "distill"}],
    }
    return recipe_from_dict({**raw, **changes})
