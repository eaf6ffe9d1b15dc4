"""`sail-stream train | reembed | sid | import`: the model's lifecycle: train an encoder, move to it, fit its semantic
IDs, and import a catalogue's vectors computed elsewhere."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy.cli.common import SubParsers, at_least, say
from topology.settings import Settings


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    import shutil

    from deploy.datasets.emoji import EmojiMissing
    from deploy.datasets.movielens import DatasetMissing
    from deploy.datasets.training import build
    from encoders.train.loop import CHECKPOINTS, train
    from encoders.train.recipe import RecipeError, load_recipe

    try:
        recipe = load_recipe(args.recipe).with_overrides(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
        out = args.out or Path("runs") / recipe.name
        if args.fresh:
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        data = build(recipe, settings.cache_dir, progress=say)
        result = train(recipe, data, out, device=args.device, progress=say)
    except (RecipeError, DatasetMissing, EmojiMissing) as exc:
        print(f"sail-stream train: {exc}", file=sys.stderr)
        return 2
    say(
        f"trained {result.model_version} ({result.steps} steps on {result.device}, {result.items_per_s:,.0f} items/s) -> "
        f"{result.encoder_dir}\nserve it: SAIL_ENCODER={result.encoder_dir} sail-stream stack up   (or python -m "
        f"encoders.serving --encoder {result.encoder_dir})"
    )
    return 0


def cmd_reembed(settings: Settings, args: argparse.Namespace) -> int:
    if args.rollback or args.retire:
        return _reembed_registry(settings, args)
    if args.to is None:
        return _reembed(settings, args, args.to_url, swap=not args.no_swap)
    from deploy.local.process import ServiceFailed
    from deploy.local.stack import Stack, free_ports

    grpc, http, metrics = free_ports(3)
    own = settings.model_copy(
        update={
            "encoder": args.to,
            "triton_url": f"grpc://127.0.0.1:{grpc}",
            "triton_http_port": http,
            "triton_metrics_port": metrics,
            "state_dir": settings.state_dir / "reembed",
        }
    )
    target = Stack(own, progress=say)
    try:
        target.up(["triton"])
    except ServiceFailed as exc:
        target.down(["triton"])
        print(f"sail-stream reembed: the Triton for {args.to} did not start: {exc}", file=sys.stderr)
        return 2
    target.lower_priority("triton")  # on cores it shares with the workers' encoder, the backfill takes only what they leave
    if not args.no_swap:
        say(
            "reembed: no swap with --to: its Triton serves only for this run, and the workers would lose their encoder; "
            "serve the new encoder where the workers reach it and run --to-url to swap"
        )
    try:
        return _reembed(settings, args, own.triton_url, swap=False)
    finally:
        target.down(["triton"])


def _reembed(settings: Settings, args: argparse.Namespace, url: str, swap: bool) -> int:
    import asyncio

    from encoders.client import EncoderClient
    from streams.lifecycle.reembed import Backfill, reembed

    async def run() -> Backfill:
        target = EncoderClient.for_settings(settings.model_copy(update={"triton_url": url}), max_batch=args.batch)
        live = EncoderClient.for_settings(settings)
        await target.start()
        await live.start()
        try:
            return await reembed(
                settings,
                target,
                max_rate=args.max_rate,
                batch=args.batch,
                progress=say,
                target_url=url,
                swap=swap,
                grace_s=args.grace_s,
                keep_s=args.keep_h * 3600,
                live_encoder=live,
            )
        finally:
            await target.close()
            await live.close()

    result = asyncio.run(run())
    items = result.items
    say(
        f"re-embedded {result.encoded:,} items into {result.items_collection} ({result.model_version}) in {items.seconds:.0f}s: "
        f"{items.processed:,} records this run, {items.already_done:,} done before"
    )
    if result.users is not None:
        say(
            f"wrote {result.users_written:,} user states into {result.users_collection} from {result.users.processed:,} "
            f"changelog records in {result.users.seconds:.0f}s ({result.users.already_done:,} done before); {result.followed:,} "
            "records followed after"
        )
    for key, why in list(result.refused.items())[:20]:
        say(f"  not re-embedded: {key}: {why}")
    if result.refused:
        say(f"{len(result.refused)} items or users were not re-embedded (above, the first 20)")
    if result.swap is not None:
        say(
            f"swapped {result.swap.from_version} -> {result.swap.to_version}: "
            f"registry write {1000 * result.swap.write_s:.0f} ms; {result.swap.grace_records:,} records followed in the "
            "grace period; roll back with: sail-stream reembed --rollback"
        )
    complete = not result.refused and result.counts is not None and result.counts.complete
    return 0 if complete and (result.swap is not None or not swap) else 1


def _reembed_registry(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from encoders.client import EncoderClient
    from streams.lifecycle.reembed import retire, rollback
    from topology.versions import Version

    def encoder(version: Version) -> EncoderClient:
        return EncoderClient.for_settings(
            settings.model_copy(update={"triton_url": version.triton_url}) if version.triton_url else settings
        )

    try:
        if args.retire:
            asyncio.run(retire(settings, progress=say, force=args.force))
            return 0
        swap = asyncio.run(rollback(settings, encoder, progress=say, grace_s=args.grace_s, batch=args.batch))
    except RuntimeError as exc:
        print(f"sail-stream reembed: {exc}", file=sys.stderr)
        return 2
    say(f"rolled back {swap.from_version} -> {swap.to_version}: registry write {1000 * swap.write_s:.0f} ms")
    return 0


def cmd_sid(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from streams.sid.codebooks import CodebookMissing
    from streams.sid.jobs import SidError, backfill_sids, fit_codebook
    from streams.sinks.milvus import MilvusUnavailable, SchemaMismatch

    try:
        if args.action == "fit":
            levels, codes = args.levels or settings.sid_levels, args.codes or settings.sid_codes
            seed = settings.sid_seed if args.seed is None else args.seed
            fitted = asyncio.run(fit_codebook(settings, levels, codes, seed, max_items=args.max_items, progress=say))
            h = fitted.codebook.health
            say(
                f"codebook {fitted.codebook.codebook_id} is live for {fitted.version.model_version or '(default)'}: fitted on "
                f"{fitted.fitted_on:,} of {fitted.items:,} items in {fitted.seconds:.1f}s; utilisation "
                f"{', '.join(f'L{i} {u:.0%}' for i, u in enumerate(h.utilisation))}; collision rate {h.collision_rate:.1%}; "
                f"quantisation error {h.quantisation_error:.4f}"
            )
            if not args.backfill:
                say(
                    "workers assign semantic IDs to new items from their next registry read; older items get theirs with: "
                    "sail-stream sid backfill"
                )
                return 0
        done = asyncio.run(backfill_sids(settings, batch=args.batch, progress=say))
    except (SidError, CodebookMissing, MilvusUnavailable, SchemaMismatch) as exc:
        print(f"sail-stream sid {args.action}: {exc}", file=sys.stderr)
        return 2
    say(
        f"sid backfill: {done.assigned:,} items assigned from {done.codebook_id} in {done.seconds:.1f}s ({done.collisions:,} "
        f"with a collision suffix, {done.skipped:,} left to the workers' own rows)"
    )
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from streams.lifecycle.catalogue import CatalogueError, import_items
    from streams.sinks.milvus import MilvusUnavailable, SchemaMismatch

    try:
        done = asyncio.run(
            import_items(
                settings,
                args.file,
                batch=args.batch,
                model_version=args.model_version,
                restart=args.restart,
                probe_encoder=not args.no_encoder_check,
                progress=say,
            )
        )
    except (CatalogueError, MilvusUnavailable, SchemaMismatch) as exc:
        print(f"sail-stream import items: {exc}", file=sys.stderr)
        return 2
    rate = done.upserted / done.seconds if done.seconds > 0 else 0.0
    say(
        f"imported {done.upserted:,} rows of {done.model_version} into {done.collection} in {done.seconds:.1f}s "
        f"({rate:,.0f} rows/s){f', resumed at row {done.resumed_at:,}' if done.resumed_at else ''}; {done.rejected:,} rejected"
    )
    return 1 if done.rejected else 0


def register(sub: SubParsers) -> None:
    """Add this group's commands to `sail-stream`."""
    trainer = sub.add_parser(
        "train",
        help="train the SAIL encoder at small scale on real data (a recipe) and export it as a servable folder",
        description="Run a training recipe (encoders/train/recipes/*.toml, or a .toml file): InfoNCE at every Matryoshka "
        "prefix with a learnable temperature, in-batch and mined hard negatives with a false-negative guard, one source "
        "per step drawn by weight (stochastic specialization). Recipes: cre-movielens (collaborative recommendation "
        "enhancement from MovieLens' interactions before a time cut: seq2item, co-engagement, ID2item distillation) and "
        "vision-emoji (the vision tower aligned to the frozen text model on real emoji images). Checkpoints go to "
        "OUT/checkpoints and a rerun resumes from the newest; the trained encoder is exported to OUT/encoder with its own "
        "model_version, ready for SAIL_ENCODER. Deterministic for a recipe and seed; uses the GPU when there is one.",
    )
    trainer.add_argument("--recipe", required=True, help="a shipped recipe name (cre-movielens, vision-emoji) or a .toml file")
    trainer.add_argument(
        "--out", type=Path, help="run folder for checkpoints and the exported encoder (default runs/<recipe name>)"
    )
    trainer.add_argument("--steps", type=int, help="override the recipe's steps")
    trainer.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    trainer.add_argument("--seed", type=int, help="override the recipe's seed")
    trainer.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:1 ...")
    trainer.add_argument("--fresh", action="store_true", help="delete OUT's checkpoints first instead of resuming from them")
    trainer.set_defaults(func=cmd_train)

    backfill = sub.add_parser(
        "reembed",
        help="move to a new encoder without downtime: backfill shadow collections, follow, swap (and roll back, retire)",
        description="Re-embed every item and user with a new encoder, then switch the workers and recall services to it "
        "in one step. (1) Registers the new model_version as the shadow in the model-version registry (a one-row Milvus "
        "collection <prefix>registry). (2) Backfill: reads the compacted item-content topic (the latest stored upload of "
        "every item) up to its end offsets at the start, encodes each item through the new encoder into "
        "<items>__<model_version>, then recomputes every user's interest vectors from their table state (the changelog) "
        "into <users>__<model_version>. (3) Follows both topics on, so uploads and interactions that arrive meanwhile "
        "reach the new version too (the workers keep serving the live one at full speed). (4) Counts rows; if the new "
        "version holds at least what the live one does, swaps: one registry write names it live, and every worker and "
        "recall API switches encoder and collections within SAIL_VERSION_REFRESH_S; the old version is kept for a "
        "rollback (--keep-h). Each phase commits per batch under the consumer group <app_id>.reembed.<model_version>"
        "[.users]: a killed run, rerun, resumes where it stopped. Encoding is capped at --max-rate items/s so the live "
        "workers keep the rest of a shared encoder. Progress with an ETA every 5 s. Exit code 0 when the new version "
        "is complete and swapped (or complete, with --no-swap or --to).",
    )
    target = backfill.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--to-url",
        metavar="grpc://HOST:PORT",
        help="a Triton serving the new encoder where the workers can reach it (they use it after the swap)",
    )
    target.add_argument(
        "--to",
        metavar="ENCODER",
        help="a preset (sail-tiny, sail-tiny-omni, ...) or a saved encoder folder (sail-stream train's "
        "OUT/encoder): served by a Triton started here on free loopback ports for this run only, at the lowest CPU "
        "priority (nice 19: it takes only the cores the workers leave), so it backfills and follows but never swaps "
        "(a rerun with --to-url resumes and swaps)",
    )
    target.add_argument(
        "--rollback", action="store_true", help="bring the previous version up to date from the swap and swap back to it"
    )
    target.add_argument(
        "--retire", action="store_true", help="drop the previous version's collections once its rollback window is over"
    )
    backfill.add_argument(
        "--max-rate",
        type=at_least(0.0, float),
        default=40.0,
        help="items/s at most (default 40, about half of sail-tiny on 2 CPU cores; 0: no cap)",
    )
    backfill.add_argument(
        "--batch", type=at_least(1, int), default=32, help="items per encode request and per commit (default 32)"
    )
    backfill.add_argument("--no-swap", action="store_true", help="backfill and follow, but leave the live version as it is")
    backfill.add_argument(
        "--grace-s",
        type=at_least(0.0, float),
        default=15.0,
        help="after a swap, follow the new version this long for batches the workers had in flight (default 15)",
    )
    backfill.add_argument(
        "--keep-h", type=at_least(0.0, float), default=24.0, help="hours the previous version is kept for a rollback (default 24)"
    )
    backfill.add_argument(
        "--force", action="store_true", help="with --retire: drop the previous version before its window is over"
    )
    backfill.set_defaults(func=cmd_reembed)

    sid = sub.add_parser(
        "sid",
        help="semantic IDs: fit the live version's codebook (fit), give older items theirs (backfill)",
        description="Semantic IDs (after the SAIL report): an item's vector quantised into L codes by residual k-means, plus a "
        "collision suffix when items share all L. fit: reads the live model version's stored item vectors, fits L levels "
        "x K codes (SAIL_SID_LEVELS x SAIL_SID_CODES, seeded: the same items give the same codebook), saves the codebook "
        "in Milvus (<items>_codebooks) and names it in the model-version registry; workers then assign every item they "
        "encode its semantic ID within SAIL_VERSION_REFRESH_S (Milvus fields sid_codes, sid_suffix, sid_codebook, and the "
        "item-embeddings topic). backfill: gives every stored item without an ID of the live codebook its ID (run it after "
        "a fit; a second run finds nothing). The recall API's channel=sid|mixed uses them. Exit code 2 with the reason "
        "when it cannot be done (no items, no codebook, Milvus down).",
    )
    sid.add_argument(
        "action", choices=("fit", "backfill"), help="fit: a new codebook for the live version; backfill: IDs for older items"
    )
    sid.add_argument("--levels", type=at_least(1, int), help="levels L (default SAIL_SID_LEVELS, 3)")
    sid.add_argument("--codes", type=at_least(2, int), help="codes K per level (default SAIL_SID_CODES, 256)")
    sid.add_argument("--seed", type=int, help="seed of the fit (default SAIL_SID_SEED, 0)")
    sid.add_argument(
        "--max-items",
        type=at_least(1, int),
        default=200_000,
        help="fit on a seeded sample of at most this many items (default 200,000)",
    )
    sid.add_argument("--backfill", action="store_true", help="with fit: run the backfill right after")
    sid.add_argument(
        "--batch", type=at_least(1, int), default=1000, help="backfill: items per page and per upsert (default 1,000)"
    )
    sid.set_defaults(func=cmd_sid)

    imports = sub.add_parser(
        "import",
        help="import a catalogue's item vectors computed elsewhere into the live items collection, at bulk rate",
        description="Load an existing catalogue into Milvus instead of streaming it one upload at a time. FILE is a NumPy "
        ".npz with item_id (n strings) and embedding (n x dim floats), and optionally creator_id (n strings), created_at_ms "
        "(n integers) and model_version (one string): vectors from the live version's encoder (checked against the "
        "model-version registry, or the workers' Triton where no registry row names one). Each row is checked as an "
        "upload's id would be, L2-normalised like the encoder's output and upserted in pages of --batch; rows that fail a "
        "check or that Milvus refuses go to <state>/import/<key>.rejects.jsonl with their reason and the rest go on. "
        "Progress with an ETA every 5 s. Resumable: the rows done are saved after every acknowledged page, and a rerun on "
        "the same file starts after them (--restart: from the top). Imported items have no semantic ID (sail-stream sid "
        "backfill) and no content for sail-stream reembed. Exit code 0: every row imported; 1: some rejected; 2: the "
        "import could not run (the reason is printed).",
    )
    imports.add_argument("what", choices=("items",), help="what to import (items)")
    imports.add_argument("file", type=Path, help="the catalogue (.npz)")
    imports.add_argument(
        "--batch", type=at_least(1, int), default=2000, help="rows per upsert and per checkpoint (default 2,000)"
    )
    imports.add_argument("--model-version", help="the vectors' model version, when the file does not name it")
    imports.add_argument(
        "--restart", action="store_true", help="start from the first row, forgetting an earlier run's checkpoint"
    )
    imports.add_argument(
        "--no-encoder-check",
        action="store_true",
        help="without a registry row, accept the model version given instead of asking the workers' Triton",
    )
    imports.set_defaults(func=cmd_import)
