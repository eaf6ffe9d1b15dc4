"""The training loop of the SAIL recipe at small scale: `train(recipe, data, out_dir)`.

Each step is one source (stochastic specialization: the source is drawn by its weight), one batch:
- `Pairs`: InfoNCE at every Matryoshka prefix with a learnable temperature, in-batch negatives plus
  `hard_negatives` per query mined from the source's targets (a bank embedded with the starting
  weights, re-embedded every `mine_every` steps), the false-negative guard on all of them;
- `Distill` (ID2item): the item embedding through a training-only linear head, InfoNCE against the
  collaborative vectors of the batch.
The encoder's own `embed()` is what is trained, so the exported folder serves exactly what was learned.

Deterministic for a recipe and seed: step k's source, batch and dropout come from (seed, k) alone,
which also makes a resumed run take the same steps as an uninterrupted one. Checkpoints
(`<out>/checkpoints/step-NNNNNN.pt`, the last two kept) hold the trainable weights, the heads, the
optimizer and the mining bank; `train()` resumes from the newest one of the same recipe.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encoders.model import SailEncoder, load_encoder
from encoders.preprocess import PreparedItem, prepare
from encoders.train.data import Distill, Pairs, TrainingData
from encoders.train.losses import Temperature, info_nce, matryoshka_info_nce, mine_hard_negatives
from encoders.train.recipe import Recipe, RecipeError

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
ENCODER = "encoder"
REPORT = "training.json"  # written into the exported folder beside the weights
KEEP_CHECKPOINTS = 2
BANK_BATCH = 128


@dataclass
class TrainResult:
    encoder_dir: Path
    model_version: str
    steps: int
    resumed_from: int  # 0 = a fresh run
    seconds: float  # this invocation's training time (mining and export included)
    items_per_s: float  # encoder forward+backward items per second over the trained steps
    device: str
    losses: dict[str, float] = field(default_factory=dict)  # mean loss per source over the last 10 % of steps

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (the folder as a string)."""
        return {**dataclasses.asdict(self), "encoder_dir": str(self.encoder_dir)}


class Trainer:
    def __init__(
        self,
        recipe: Recipe,
        data: TrainingData,
        out_dir: Path,
        device: str = "auto",
        progress: Callable[[str], None] = logger.info,
    ) -> None:
        missing = [s.name for s in recipe.sources if s.name not in data.sources]
        if missing:
            raise RecipeError(
                f"recipe {recipe.name!r} names sources the data does not have: {missing} (has {sorted(data.sources)})"
            )
        self.recipe, self.data, self.out_dir, self.progress = recipe, data, out_dir, progress
        self.device = torch.device(
            "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        )
        torch.manual_seed(recipe.seed)
        self.encoder = load_encoder(recipe.base, str(self.device))
        self.config = self.encoder.config
        dims = self.config.matryoshka_dims
        if recipe.matryoshka_weights and len(recipe.matryoshka_weights) != len(dims):
            raise RecipeError(f"matryoshka_weights {list(recipe.matryoshka_weights)}: one per prefix of {list(dims)}")
        for modality, value in recipe.gates.items():
            gate = self.encoder.vision_gate if modality == "vision" else self.encoder.audio_gate
            if float(gate.detach()) == 0.0:
                gate.data.fill_(value)  # opens the modality; its gate trains when [trainable] names it
        groups = self._freeze()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            self.heads = nn.ModuleDict(
                {
                    s.name: nn.Linear(self.config.output_dim, s.vectors.shape[1], bias=False)
                    for s in data.sources.values()
                    if isinstance(s, Distill)
                }
            ).to(self.device)
        self.temperature = Temperature(recipe.temperature).to(self.device)
        self.temperature.log_inverse.requires_grad_(recipe.learn_temperature)
        extra = list(self.heads.parameters()) + ([self.temperature.log_inverse] if recipe.learn_temperature else [])
        groups.append({"params": extra, "lr": recipe.head_learning_rate, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=recipe.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(recipe.warmup_steps, recipe.steps))
        self.weights = np.array([s.weight for s in recipe.sources], dtype=np.float64)
        self.weights /= self.weights.sum()
        self.prepared: dict[str, PreparedItem] = {}
        self.text_frozen = not any(p.requires_grad for p in self.encoder.fusion.parameters())
        self.constant: dict[str, torch.Tensor] = {}  # text-only entries' embeddings while the text model is frozen
        self.banks: dict[str, torch.Tensor] = {}  # source -> (N, D) unit embeddings of its distinct targets
        # source -> its distinct targets (the bank's rows) and each one's row: fixed by the data
        self.bank_ids = {
            s.name: list(dict.fromkeys(source.targets))
            for s in recipe.sources
            if isinstance(source := data.sources[s.name], Pairs)
        }
        self.bank_rows = {name: {i: n for n, i in enumerate(ids)} for name, ids in self.bank_ids.items()}
        self.history: list[tuple[int, str, float]] = []  # (step, source, loss)

    # ------------------------------------------------------------------ setup

    def _freeze(self) -> list[dict[str, object]]:
        """Only parameters under a `[trainable]` prefix learn, each group at its prefix's rate."""
        by_prefix: dict[str, list[nn.Parameter]] = {p: [] for p in self.recipe.trainable}
        for name, parameter in self.encoder.named_parameters():
            prefix = max((p for p in self.recipe.trainable if name == p or name.startswith(p + ".")), key=len, default=None)
            parameter.requires_grad_(prefix is not None)
            if prefix is not None:
                by_prefix[prefix].append(parameter)
        empty = [p for p, params in by_prefix.items() if not params]
        if empty:
            raise RecipeError(f"[trainable] prefixes match no parameter of {self.recipe.base}: {empty}")
        return [{"params": params, "lr": self.recipe.trainable[p]} for p, params in by_prefix.items()]

    def trainable_count(self) -> tuple[int, int]:
        total = sum(p.numel() for p in self.encoder.parameters())
        return sum(p.numel() for p in self.encoder.parameters() if p.requires_grad), total

    # ------------------------------------------------------------------ embedding

    def _items(self, ids: list[str]) -> list[PreparedItem]:
        out = []
        for i in ids:
            item = self.prepared.get(i)
            if item is None:
                item = self.prepared[i] = prepare(self.data.catalogue[i], self.config)
            out.append(item)
        return out

    def _embed(self, ids: list[str]) -> dict[str, torch.Tensor]:
        """One forward over the distinct ids -> id: (D,) raw embedding, with gradients. With the text
        model frozen, a text-only entry's embedding is a constant: computed once, then cached."""
        unique = list(dict.fromkeys(ids))
        out = {i: self.constant[i] for i in unique if i in self.constant}
        todo = [i for i in unique if i not in out]
        if todo:
            rows = self.encoder.embed(self._items(todo))
            for n, i in enumerate(todo):
                out[i] = rows[n]
                if self.text_frozen and self._text_only(i):
                    self.constant[i] = rows[n].detach()
        return out

    def _text_only(self, entry: str) -> bool:
        request = self.data.catalogue[entry]
        return request.cover is None and not request.frames and request.audio is None

    def _train_mode(self) -> None:
        """Training mode (dropout) for the parts that learn; a frozen text model stays in eval mode,
        so it is deterministic and its text-only embeddings can be cached."""
        self.encoder.train()
        if self.text_frozen:
            self.encoder.fusion.eval()

    @torch.no_grad()
    def _refresh_banks(self, step: int) -> None:
        if self.recipe.hard_negatives <= 0:
            return
        started = time.monotonic()
        self.encoder.eval()
        for name, ids in self.bank_ids.items():
            chunks = [self.encoder.embed(self._items(ids[k : k + BANK_BATCH])) for k in range(0, len(ids), BANK_BATCH)]
            self.banks[name] = F.normalize(torch.cat(chunks), dim=-1)
        self._train_mode()
        self.progress(
            f"train: mining bank embedded at step {step} ({sum(len(b) for b in self.banks.values()):,} targets, "
            f"{time.monotonic() - started:.0f} s)"
        )

    # ------------------------------------------------------------------ one step

    def _step_loss(self, step: int) -> tuple[str, torch.Tensor, int]:
        """(source name, loss, items embedded) of step `step`, drawn from (seed, step) alone."""
        rng = np.random.default_rng([self.recipe.seed, step])
        spec = self.recipe.sources[int(rng.choice(len(self.recipe.sources), p=self.weights))]
        source = self.data.sources[spec.name]
        size = len(source.targets) if isinstance(source, Pairs) else len(source.items)
        batch = rng.choice(size, size=min(self.recipe.batch_size, size), replace=False)
        torch.manual_seed(self.recipe.seed * 1_000_003 + step)  # dropout of this step
        tau = self.temperature()
        if isinstance(source, Distill):
            ids = [source.items[i] for i in batch]
            embedded = self._embed(ids)
            projected = F.normalize(self.heads[spec.name](torch.stack([embedded[i] for i in ids])), dim=-1)
            goals = F.normalize(torch.from_numpy(source.vectors[batch]).float().to(self.device), dim=-1)
            return (
                spec.name,
                info_nce(projected, goals, tau, target_ids=ids, false_negative_margin=self.recipe.false_negative_margin),
                len(embedded),
            )
        queries = [source.queries[i] for i in batch]
        targets = [source.targets[i] for i in batch]
        embedded = self._embed([e for q in queries for e in q] + targets)
        q = torch.stack([torch.stack([F.normalize(embedded[e], dim=-1) for e in query]).mean(0) for query in queries])
        t = torch.stack([embedded[i] for i in targets])
        count = len(embedded)
        hard = hard_mask = None
        if self.recipe.hard_negatives > 0:
            bank, bank_ids, position = self.banks[spec.name], self.bank_ids[spec.name], self.bank_rows[spec.name]
            known = [{position[e] for e in (*query, target) if e in position} for query, target in zip(queries, targets)]
            picks, hard_mask = mine_hard_negatives(
                F.normalize(q.detach(), dim=-1), bank, known, self.recipe.hard_negatives, self.recipe.hard_max_similarity
            )
            negative_ids = [bank_ids[int(k)] for k in picks.reshape(-1)]
            negatives = self._embed(negative_ids)
            count += len(negatives)
            hard = torch.stack([negatives[i] for i in negative_ids]).reshape(len(batch), self.recipe.hard_negatives, -1)
        loss = matryoshka_info_nce(
            q,
            t,
            self.config.matryoshka_dims,
            tau,
            self.recipe.matryoshka_weights or None,
            hard_negatives=hard,
            hard_mask=hard_mask,
            target_ids=targets,
            false_negative_margin=self.recipe.false_negative_margin,
        )
        return spec.name, loss, count

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint_dir(self) -> Path:
        return self.out_dir / CHECKPOINTS

    def save_checkpoint(self, step: int) -> Path:
        directory = self._checkpoint_dir()
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "step": step,
            "fingerprint": self.recipe.fingerprint(),
            "encoder": {n: p.detach().cpu() for n, p in self.encoder.named_parameters() if p.requires_grad},
            "heads": self.heads.state_dict(),
            "temperature": self.temperature.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "banks": {k: v.cpu() for k, v in self.banks.items()},
            "history": self.history,
        }
        path = directory / f"step-{step:06d}.pt"
        partial = path.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(path)  # a crash mid-write leaves no half checkpoint under the real name
        for old in sorted(directory.glob("step-*.pt"))[:-KEEP_CHECKPOINTS]:
            old.unlink()
        return path

    def load_checkpoint(self) -> int:
        """The newest checkpoint of this recipe, loaded: its step (0 when there is none).

        Raises:
            RecipeError: the newest checkpoint belongs to another recipe (or other settings).
        """
        found = sorted(self._checkpoint_dir().glob("step-*.pt"))
        if not found:
            return 0
        state = torch.load(found[-1], map_location=self.device, weights_only=False)
        if state["fingerprint"] != self.recipe.fingerprint():
            raise RecipeError(
                f"{found[-1]} was written by another recipe or settings: use a new --out folder, or --fresh to start over"
            )
        named = dict(self.encoder.named_parameters())
        with torch.no_grad():
            for name, value in state["encoder"].items():
                named[name].copy_(value)
        self.heads.load_state_dict(state["heads"])
        self.temperature.load_state_dict(state["temperature"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.banks = {k: v.to(self.device) for k, v in state["banks"].items()}
        self.history = [(int(step), str(source), float(loss)) for step, source, loss in state["history"]]
        return int(state["step"])

    # ------------------------------------------------------------------ the run

    def run(self, resume: bool = True) -> TrainResult:
        started = time.monotonic()
        recipe = self.recipe
        first = self.load_checkpoint() if resume else 0
        trainable, total = self.trainable_count()
        self.progress(
            f"train: recipe {recipe.name} on {self.device}, {trainable:,} of {total:,} parameters trainable, "
            + (f"resuming after step {first} of {recipe.steps}" if first else f"{recipe.steps} steps of {recipe.batch_size}")
        )
        if first == 0:
            self._refresh_banks(0)
        self._train_mode()
        items = 0
        step_seconds = 0.0
        for step in range(first + 1, recipe.steps + 1):
            if recipe.mine_every and step > 1 and (step - 1) % recipe.mine_every == 0:
                self._refresh_banks(step)
            began = time.monotonic()
            source, loss, count = self._step_loss(step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"step {step} ({source}): loss is {float(loss)}; lower the learning rates in the recipe")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            step_seconds += time.monotonic() - began
            items += count
            self.history.append((step, source, float(loss.detach())))
            if step % recipe.log_every == 0 or step == recipe.steps:
                recent = [h[2] for h in self.history[-recipe.log_every :]]
                rate = items / step_seconds if step_seconds else 0.0
                eta = (recipe.steps - step) * step_seconds / max(step - first, 1)
                self.progress(
                    f"train: step {step}/{recipe.steps} loss {np.mean(recent):.3f} ({source}) tau "
                    f"{float(self.temperature().detach()):.3f} {rate:.0f} items/s, eta {_duration(eta)}"
                )
            if step % recipe.checkpoint_every == 0 and step < recipe.steps:
                self.save_checkpoint(step)
        if first < recipe.steps:
            self.save_checkpoint(recipe.steps)
        directory, version = self.export()
        seconds = time.monotonic() - started
        tail = self.history[-max(1, recipe.steps // 10) :]
        losses = {name: round(float(np.mean([h[2] for h in tail if h[1] == name])), 4) for name in {h[1] for h in tail}}
        result = TrainResult(
            directory,
            version,
            recipe.steps,
            first,
            round(seconds, 1),
            round(items / step_seconds, 1) if step_seconds else 0.0,
            str(self.device),
            losses,
        )
        report = {**result.to_dict(), "recipe": recipe.to_dict(), "fingerprint": recipe.fingerprint()}
        (directory / REPORT).write_text(json.dumps(report, indent=2, default=str))
        self.progress(f"train: exported {version} to {directory} in {_duration(seconds)}")
        return result

    def export(self) -> tuple[Path, str]:
        """The trained encoder as a saved folder (`<out>/encoder`), reloaded to check it embeds the
        same as in memory: (folder, model_version)."""
        self.encoder.eval()
        self.encoder.config = dataclasses.replace(
            self.config,
            name=self.recipe.name,
            vision_gate_init=round(float(self.encoder.vision_gate.detach()), 6),
            audio_gate_init=round(float(self.encoder.audio_gate.detach()), 6),
        )
        directory = self.out_dir / ENCODER
        self.encoder.save_pretrained(directory)
        reloaded = SailEncoder.from_pretrained(directory).to(self.device)
        probe = list(self.data.catalogue)[:8]
        with torch.no_grad():
            here = self.encoder.forward_prepared(self._items(probe))
            there = reloaded.forward_prepared(self._items(probe))
        drift = float(np.abs(here - there).max())
        if drift > 1e-5:
            raise RuntimeError(f"the exported encoder embeds differently from the trained one (max |diff| {drift:.2e})")
        return directory, reloaded.model_version


def train(
    recipe: Recipe,
    data: TrainingData,
    out_dir: Path,
    device: str = "auto",
    resume: bool = True,
    progress: Callable[[str], None] = logger.info,
) -> TrainResult:
    """Train `recipe` on `data` into `out_dir` (checkpoints and the exported `encoder/` folder)."""
    return Trainer(recipe, data, out_dir, device, progress).run(resume)


def _schedule(warmup: int, steps: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to a tenth of the rate."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
