"""`sail-stream stack | worker | recall`: the local services, a streaming worker, the recall API."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

from deploy.cli.common import SubParsers, create_registry, quiet_probes, say
from topology.settings import Settings

if TYPE_CHECKING:  # the commands import what they run when they run (a fast --help)
    from deploy.local.stack import Service, ServiceStatus
    from streams.recall.query import Recalled


def _stack_services(only: str | None) -> tuple[Service, ...]:
    from deploy.local.stack import SERVICES

    if not only:
        return SERVICES
    chosen = [s.strip() for s in only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SERVICES))
    if unknown:
        raise SystemExit(f"sail-stream: unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    return tuple(s for s in SERVICES if s in chosen)


def _format_status(rows: Sequence[ServiceStatus]) -> str:
    table = [("SERVICE", "STATE", "ADDRESS", "PID", "STARTED IN", "UPTIME", "DETAIL")]
    for r in rows:
        d = asdict(r)
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


def cmd_stack(settings: Settings, args: argparse.Namespace) -> int:
    from deploy.local.kafka import ToolMissing
    from deploy.local.process import ServiceFailed
    from deploy.local.stack import PortBusy, Stack

    quiet_probes(args.verbose)
    stack = Stack(settings, progress=say)
    services = _stack_services(args.only)
    try:
        if args.action == "up":
            began = time.monotonic()
            rows = stack.up(services)
            say(f"stack up in {time.monotonic() - began:.1f}s (state in {stack.state_dir})")
            if args.kafka_brokers and "kafka" in services:
                say(
                    f"workers and tools reach all {settings.kafka_brokers} brokers with "
                    f"SAIL_KAFKA_BROKERS={settings.kafka_brokers} ({settings.kafka_bootstrap})"
                )
        elif args.action == "down":
            stack.down(services)
            return 0
        else:
            rows = stack.status(services)
    except (ToolMissing, PortBusy, ServiceFailed) as exc:
        print(f"sail-stream stack {args.action}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        say(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        say(_format_status(rows))
    if args.action == "status":
        return 0 if all(r.state in ("running", "external", "embedded") for r in rows) else 3
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.worker.app import run_worker
    from streams.worker.commits import ConsumerVersionMismatch, check_consumer_versions

    try:
        check_consumer_versions()  # before Faust starts: its private consumer methods are patched
    except ConsumerVersionMismatch as exc:
        print(f"sail-stream worker: {exc}", file=sys.stderr)
        return 2
    if args.web_port is not None:
        settings = settings.model_copy(update={"worker_web_port": args.web_port})
    _create_missing_topics(settings)
    if not create_registry(settings, "worker"):
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
            say(f"created topic {name}, which the cluster lacked")
    except BrokerUnavailable as exc:
        print(
            f"sail-stream worker: could not check the topics ({exc}); starting anyway, "
            "a missing topic stalls the agents that write it",
            file=sys.stderr,
        )


def cmd_recall(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from aiohttp import web

    from streams.recall.api import recall_app
    from streams.recall.query import Recall, RecallError
    from streams.sinks.milvus import MilvusSink

    if not create_registry(settings, "recall"):
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

        say(
            f"recall API on http://{args.host}:{args.port} (GET /v1/users/<user_id>/items, /v1/items/<item_id>/similar, /healthz)"
        )
        web.run_app(app_factory(), host=args.host, port=args.port, print=None)
        return 0

    async def query() -> list[Recalled]:
        sink, recall = await make()
        try:
            common = {
                "k": args.k,
                "created_after_ms": args.created_after_ms,
                "exclude_creator": args.exclude_creator,
                "consistency": args.consistency,
                "channel": args.channel,
            }
            if args.action == "user":
                return await recall.user_to_item(args.id, **common)
            return await recall.item_to_item(args.id, **common)
        finally:
            await sink.close()

    try:
        results = asyncio.run(query())
    except RecallError as exc:
        print(f"sail-stream recall: {exc}", file=sys.stderr)
        return 1
    if args.json:
        say(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            say(f"{r.score:8.4f}  {r.item_id}  creator={r.creator_id}  created_at_ms={r.created_at_ms}")
    return 0


def register(sub: SubParsers) -> None:
    """Add this group's commands to `sail-stream`."""
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
        "--kafka-brokers",
        type=int,
        metavar="N",
        help="run N Kafka nodes (each broker and KRaft controller; node i on the bootstrap port + 100*i); "
        "3 gives topics 3 replicas and min.insync.replicas 2, so one broker can die without losing a write. "
        "Same as SAIL_KAFKA_BROKERS=N, which the workers and tools then need too (it lists every node in their bootstrap)",
    )
    stack.set_defaults(func=cmd_stack)

    worker = sub.add_parser(
        "worker",
        help="run one streaming worker (Faust): uploads -> Triton -> Milvus items, interactions -> Milvus users",
        description="Run a Faust worker of the consumer group SAIL_APP_ID. Start several (each with its own "
        "--web-port) to share the topics' partitions. Stops cleanly on SIGINT/SIGTERM.",
    )
    worker.add_argument("--web-port", type=int, help="this worker's HTTP port (default SAIL_WORKER_WEB_PORT, 6066)")
    worker.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    worker.set_defaults(func=cmd_worker)

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
    recall.add_argument(
        "--channel",
        default=None,
        choices=("dense", "sid", "mixed", "collab", "fused"),
        help="fused (collaborative + content; the default, SAIL_RECALL_CHANNEL), collab (engaged with together), "
        "dense (content vectors), sid (semantic IDs) or mixed (dense + sid, rank-fused)",
    )
    recall.add_argument("--json", action="store_true")
    recall.add_argument("--host", default="127.0.0.1", help="serve: address to listen on (default loopback)")
    recall.add_argument("--port", type=int, help="serve: port (default SAIL_RECALL_PORT, 8090)")
    recall.set_defaults(func=cmd_recall)
