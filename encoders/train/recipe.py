"""A training recipe: one TOML file per recipe (`encoders/train/recipes/<name>.toml`), read into one
frozen object. Every knob of a run is here, so a run is reproduced by its recipe and its seed.

    name = "sail-tiny-cre"            # the trained encoder's name: model_version = <name>-<12 hex>
    base = "sail-tiny"                # preset or saved folder to start from
    dataset = "movielens"             # which data builder reads the sources (deploy/datasets/training.py)
    steps = 600
    [trainable]                       # parameter-name prefix -> learning rate; the rest is frozen
    "fusion.model.encoder.layer.5" = 2e-5
    [[sources]]                       # stochastic specialization: one source per step, by weight
    name = "coengagement"
    weight = 1.0
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECIPES = Path(__file__).parent / "recipes"


class RecipeError(ValueError):
    """A recipe that cannot be run as written."""


@dataclass(frozen=True, slots=True)
class SourceSpec:
    name: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Recipe:
    name: str
    base: str
    dataset: str
    steps: int
    batch_size: int = 32
    seed: int = 20261127
    trainable: dict[str, float] = field(default_factory=dict)  # parameter-name prefix -> learning rate
    head_learning_rate: float = 1e-3  # distillation heads and the temperature (trained from scratch)
    weight_decay: float = 0.01
    warmup_steps: int = 20
    temperature: float = 0.05  # initial tau; learnable unless fixed
    learn_temperature: bool = True
    matryoshka_weights: tuple[float, ...] = ()  # one per prefix of the base's matryoshka_dims; empty = equal
    hard_negatives: int = 0  # mined per query from the source's targets (0 = in-batch negatives only)
    mine_every: int = 0  # re-embed the mining bank every N steps (0 = once, with the starting weights)
    hard_max_similarity: float = 0.95  # candidates above this are near-duplicates, not negatives
    false_negative_margin: float | None = 0.1
    gates: dict[str, float] = field(default_factory=dict)  # "vision"/"audio" -> gate value to open a closed modality with
    checkpoint_every: int = 100
    log_every: int = 10
    data: dict[str, Any] = field(default_factory=dict)  # options of the dataset's builder
    sources: tuple[SourceSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2:
            raise RecipeError(
                f"recipe {self.name!r}: steps >= 1 and batch_size >= 2 (in-batch negatives need two), got {self.steps}, "
                f"{self.batch_size}"
            )
        if not self.trainable:
            raise RecipeError(f"recipe {self.name!r}: [trainable] names no parameters: nothing would learn")
        if not self.sources or any(s.weight <= 0 for s in self.sources):
            raise RecipeError(f"recipe {self.name!r}: needs [[sources]], each with a weight > 0")
        unknown = set(self.gates) - {"vision", "audio"}
        if unknown:
            raise RecipeError(f"recipe {self.name!r}: gates are 'vision' and 'audio', not {sorted(unknown)}")

    def with_overrides(self, **changes: Any) -> Recipe:
        """The recipe with command-line overrides (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A hash of everything that shapes the run: a checkpoint resumes only the same recipe."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_recipe(name_or_path: str) -> Recipe:
    """A shipped recipe by name (`cre-movielens`, `vision-emoji`, ...) or a TOML file.

    Raises:
        RecipeError: no such recipe, or its contents are invalid.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPES / f"{name_or_path}.toml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in RECIPES.glob("*.toml")))
        raise RecipeError(f"no recipe {name_or_path!r}: use one of {shipped} or a .toml file")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: {exc}") from exc
    return recipe_from_dict(raw, str(path))


def recipe_from_dict(raw: dict[str, Any], where: str = "recipe") -> Recipe:
    raw = dict(raw)
    known = {f.name for f in dataclasses.fields(Recipe)}
    unknown = set(raw) - known
    if unknown:
        raise RecipeError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        raw["sources"] = tuple(SourceSpec(**s) for s in raw.get("sources", ()))
        raw["matryoshka_weights"] = tuple(raw.get("matryoshka_weights", ()))
        return Recipe(**raw)
    except TypeError as exc:
        raise RecipeError(f"{where}: {exc}") from exc
