"""What training buys (issue 16): the trained encoders against the untrained default, on held-out data.

    python -m bench.train                          # both recipes: train (resuming runs/), then evaluate
    python -m bench.train --only cre --steps 100   # a shorter CRE run
    python -m bench.train --json out.json

CRE (`cre-movielens`): MovieLens split in time (80 % of the log before the cut, the recipe's
`train_fraction`); the recipe reads the earlier part only. Every movie is embedded in-process by
the default encoder (`sail-tiny`, MiniLM as a text embedder) and by the trained one, then:
- i2i Recall@50: for every item co-engaged in the test period (a user liked both within 5 likes),
  its 50 nearest movies against those co-engaged items (recall capped at 50); split by the query
  item being cold (first seen after the cut: never in training, like a fresh upload) or warm;
- the time-ordered protocol of `bench.quality` over the test period only (each like after the cut
  ranked before it is applied; users' vectors from every earlier event): HitRate@10/@50 of the
  mean of the last 10 likes and of the worker's own interest maths (K=1), split by the liked item
  being cold or warm.
Vision (`vision-emoji`): text->image Recall@10 on the held-out fifth of the emoji: each emoji's text
as a query against every held-out image alone, for the trained tower, the untrained one (the same
architecture, random weights, gate open: `sail-tiny-omni`) and chance.
Also: training time and items/s, and encoder throughput of the trained model vs the default.
A benchmark, never a test: each recipe's figures go to bench/results/train-cre.json and
train-vision.json with the machine and date (`bench.results`), from which `python -m bench.report`
renders BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from bench.quality import evaluate
from bench.results import write_result
from deploy.datasets.emoji import load_emoji
from deploy.datasets.training import build, emoji_image, emoji_query, movie_requests, movielens_split
from encoders.model import SailEncoder, load_encoder
from encoders.train.collab import coengagement_pairs, cold_items
from encoders.train.loop import TrainResult, train
from encoders.train.recipe import Recipe, load_recipe
from topology.messages import EncodeRequest
from topology.settings import load_settings

BATCH = 64


def embed(encoder: SailEncoder, requests: dict[str, EncodeRequest]) -> tuple[dict[str, np.ndarray], float]:
    """Every request's unit vector, and the encoder's throughput (items/s, in-process, batches of 64)."""
    ids = list(requests)
    vectors: dict[str, np.ndarray] = {}
    began = time.perf_counter()
    for k in range(0, len(ids), BATCH):
        chunk = ids[k : k + BATCH]
        for i, result in zip(chunk, encoder.encode([requests[i] for i in chunk])):
            if result.vector is None:
                raise RuntimeError(f"{i}: {result.error}")
            vectors[i] = result.vector
    return vectors, len(ids) / (time.perf_counter() - began)


def i2i_recall(vectors: dict[str, np.ndarray], truth: dict[str, set[str]], k: int = 50) -> float:
    """Mean over queries of |top-k neighbours (query excluded) & truth| / min(|truth|, k)."""
    ids = list(vectors)
    index = {i: n for n, i in enumerate(ids)}
    matrix = np.stack([vectors[i] for i in ids])
    queries = [q for q in truth if q in index]
    if not queries:
        return float("nan")
    total = 0.0
    for start in range(0, len(queries), 512):
        chunk = queries[start : start + 512]
        scores = matrix[[index[q] for q in chunk]] @ matrix.T
        scores[np.arange(len(chunk)), [index[q] for q in chunk]] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        for row, q in enumerate(chunk):
            found = {ids[j] for j in top[row]}
            total += len(found & truth[q]) / min(len(truth[q]), k)
    return total / len(queries)


def _train(name: str, steps: int | None, args: argparse.Namespace, cache_dir: Path) -> tuple[Recipe, TrainResult]:
    """Run (or resume, or reuse) a shipped recipe in `args.runs`."""
    recipe = load_recipe(name).with_overrides(steps=steps)
    out = args.runs / recipe.name
    print(f"{name}: training {recipe.name} ({recipe.steps} steps) into {out}", flush=True)
    return recipe, train(
        recipe, build(recipe, cache_dir, print), out, device=args.device, progress=lambda line: print(line, flush=True)
    )


def cre(args: argparse.Namespace, cache_dir: Path) -> dict[str, object]:
    recipe, result = _train("cre-movielens", args.steps, args, cache_dir)
    split = movielens_split(float(recipe.data.get("train_fraction", 0.8)))
    requests = movie_requests(split.data)
    cold = cold_items(split.train, split.test)
    truth: dict[str, set[str]] = {}
    for a, b in coengagement_pairs(split.test, window=5):
        truth.setdefault(a, set()).add(b)
        truth.setdefault(b, set()).add(a)
    cold_truth = {q: t for q, t in truth.items() if q in cold}
    warm_truth = {q: t for q, t in truth.items() if q not in cold}
    test_items = {e.item for e in split.test}
    groups = {"cold": cold, "warm": test_items - cold}
    rows = []
    for label, source in (("default (sail-tiny)", "sail-tiny"), (f"trained ({result.model_version})", str(result.encoder_dir))):
        encoder = load_encoder(source)
        vectors, rate = embed(encoder, requests)
        print(
            f"cre: {label}: {len(vectors):,} movies embedded at {rate:.0f} items/s; protocol over the test period ...", flush=True
        )
        protocol = evaluate(
            split.data, vectors, score_from_s=split.cut_s, item_groups=groups, only=("realtime-mean10", "realtime-weighted-K1")
        )
        rows.append(
            {
                "encoder": label,
                "encode_items_per_s": round(rate, 1),
                "i2i_recall50_cold": _figure(i2i_recall(vectors, cold_truth)),
                "i2i_recall50_warm": _figure(i2i_recall(vectors, warm_truth)),
                "protocol": {g: protocol["groups"][g] for g in groups},
                "protocol_all": protocol["methods"],  # type: ignore[index]
            }
        )
    return {
        "recipe": recipe.to_dict(),
        "train": result.to_dict(),
        "cut_s": split.cut_s,
        "cold_items": len(cold),
        "test_items": len(test_items),
        "i2i_queries": {"cold": len(cold_truth), "warm": len(warm_truth)},
        "i2i_chance": round(50 / max(len(requests) - 1, 1), 4),
        "rows": rows,
    }


def _figure(value: float) -> float | None:
    """`value` to 4 decimals, None for NaN: `i2i_recall` of a group with no query (JSON has no NaN)."""
    return None if math.isnan(value) else round(value, 4)


def plain(section: dict[str, object]) -> dict[str, object]:
    """`section` as plain JSON values (the recipe's tuples, folders as strings), as the printed report has it."""
    data: dict[str, object] = json.loads(json.dumps(section, default=str))
    return data


def text_to_image_recall(encoder: SailEncoder, held: list, k: int = 10) -> float:  # type: ignore[type-arg]
    texts, _ = embed(encoder, {e.image: emoji_query(e) for e in held})
    images, _ = embed(encoder, {e.image: emoji_image(e) for e in held})
    ids = [e.image for e in held]
    scores = np.stack([texts[i] for i in ids]) @ np.stack([images[i] for i in ids]).T
    top = np.argsort(-scores, axis=1)[:, :k]
    return float(np.mean([n in top[n] for n in range(len(ids))]))


def vision(args: argparse.Namespace, cache_dir: Path) -> dict[str, object]:
    recipe, result = _train("vision-emoji", args.vision_steps, args, cache_dir)
    held = [e for e in load_emoji(cache_dir) if e.held_out]
    rows = []
    for label, source in (
        ("untrained path (sail-tiny-omni)", "sail-tiny-omni"),
        (f"trained ({result.model_version})", str(result.encoder_dir)),
    ):
        rows.append({"encoder": label, "text_to_image_recall10": round(text_to_image_recall(load_encoder(source), held), 4)})
    rows.append({"encoder": "chance", "text_to_image_recall10": round(10 / len(held), 4)})
    return {"recipe": recipe.to_dict(), "train": result.to_dict(), "held_out": len(held), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=("cre", "vision"), help="one recipe (default both)")
    parser.add_argument("--steps", type=int, help="CRE steps (default: the recipe's)")
    parser.add_argument("--vision-steps", type=int, help="vision steps (default: the recipe's)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="run folders (a finished run is reused; default runs/)")
    parser.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, ...")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    cache_dir = load_settings(None).cache_dir
    report: dict[str, object] = {
        "machine": f"{platform.node()} {os.cpu_count()} cpu",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    sections: dict[str, dict[str, object]] = {}
    if args.only in (None, "cre"):
        sections["cre"] = cre(args, cache_dir)
    if args.only in (None, "vision"):
        sections["vision"] = vision(args, cache_dir)
    report.update(sections)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)
    for recipe, section in sections.items():  # one results file per recipe: `--only` reruns one, the other's stays
        print(f"summary: {write_result(f'train-{recipe}', plain(section))}")


if __name__ == "__main__":
    main()
