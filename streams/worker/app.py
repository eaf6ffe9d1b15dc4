"""The Faust app: content agent, interest agent, retry agent, item-embedding cache feed.

    content-uploads --> encode_uploads    (content.py): decode -> resolve media -> Triton -> Milvus
                                          `items` -> item-embeddings topic -> ack
    interactions ----> update_interests  (interest.py): decode -> item vectors (items.py) -> pure
                                          interest maths -> Milvus `users` -> Faust table -> ack
                       (item unknown yet) -> interactions-retry --> retry_interactions (waiting.py):
                                          held by item until stored, then back to interactions,
                                          or dead letter `item.not_found`
                       (each applied positive, with the user's previous ones) -> Milvus `collab_users`
                                          -> co-engagements topic (key item_id)
    co-engagements --> update_collab     (collab.py): items' collaborative states (Faust table) ->
                                          Milvus `collab_items` (one row per item per batch) -> ack
                       (an upload's content neighbours, from encode_uploads: its prior)
    item-embeddings -> cache_item_vectors (items.py): the worker's in-memory item vector cache

This module is the wiring only: the Faust app, its agents, timers and pages, each calling into the
stage that does the work. What the stages share (clients, metrics, retries, outbox) is `context.py`.

Delivery: at-least-once, exactly-once effect. Each agent acknowledges a micro-batch itself, after
Milvus acknowledged the upserts and Kafka the produced records (`noack_take`; Faust's own take_events
acknowledges even a batch that failed), and Faust commits only contiguous acknowledged offsets
(`streams/worker/commits.py`); Milvus rows are keyed, and interest states remember applied event ids, so a
replay overwrites with the same values.
Up to `content_in_flight` upload batches are in flight (`streams/worker/inflight.py`): the next is encoded
while the last is stored, and stores, publishes and acknowledgements keep arrival order.
Bad input goes to the dead-letter topic; a down Triton/Milvus/Kafka is retried with jittered backoff
while the agent holds its batch, so no new events are pulled (backpressure) and nothing is dropped;
this retry loop (`retry.py`) is the only one (the clients try once; a slow Triton is waited for, not resent to). A record
Triton or Milvus refuses (a poison pill) is isolated from its batch (`streams.sinks.isolation`) and
dead-lettered with the dependency's message; the rest of the batch is stored. On shutdown every retry
loop stops at once and its batch stays unacknowledged, so it is redone after the restart.
"""

from __future__ import annotations

import gc
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, cast

import faust

from streams.ops.health import Thresholds
from streams.ops.status import LagWatch, Trend, dependency_states, render_status, status_json
from streams.ops.waits import own_waits
from streams.retry import ShuttingDown
from streams.sinks.kafka import tail_chunks
from streams.worker.canary import FreshnessCanary
from streams.worker.collab import CollabStage
from streams.worker.commits import CommitRepair, install_strict_commits
from streams.worker.content import ContentStage
from streams.worker.context import Context
from streams.worker.events import acknowledge
from streams.worker.inflight import Abandoned
from streams.worker.interest import InterestStage
from streams.worker.quiet import QuietMonitor
from streams.worker.waiting import ItemWait
from topology.settings import Settings
from topology.topics import COLLAB_TABLE, INTEREST_TABLE

logger = logging.getLogger(__name__)


def _batches(stream: faust.StreamT, max_records: int, within_ms: float) -> AsyncIterator[Sequence[Any]]:
    """Batches of up to `max_records` events, or what arrived within `within_ms`, never acknowledged by
    the stream itself (the agents acknowledge after Milvus has the effect). `noack_take` is on Faust's
    `Stream`, which every agent receives, not on the `StreamT` protocol the decorator declares."""
    return cast(faust.Stream, stream).noack_take(max_records, within=within_ms / 1000)


def create_app(settings: Settings) -> tuple[faust.App, Context]:
    """The Faust app with every agent wired to its stage; nothing connects until the worker starts."""
    s = settings
    app = SailApp(
        s.app_id,
        broker=[f"kafka://{address.strip()}" for address in s.kafka_bootstrap.split(",")],
        broker_credentials=kafka_credentials(s),
        store="memory://",  # state is rebuilt from the table's changelog topic on start
        topic_partitions=s.topic_partitions,
        topic_replication_factor=s.topic_replication_factor,
        datadir=str(worker_dir(s)),
        web_enabled=True,
        web_bind=s.worker_web_bind,
        web_host="127.0.0.1",
        web_port=s.worker_web_port,
        producer_max_request_size=s.max_message_bytes + 128 * 1024,
        consumer_max_fetch_size=s.max_message_bytes + 128 * 1024,
        broker_commit_interval=1.0,
        broker_session_timeout=s.kafka_session_timeout_s,
        # static membership: a restart within the session timeout is no rebalance
        consumer_group_instance_id=s.kafka_group_instance_id,
        broker_heartbeat_interval=min(3.0, s.kafka_session_timeout_s / 3),
        stream_buffer_maxsize=1024,
        Monitor=QuietMonitor if s.worker_monitor == "quiet" else "faust.sensors:Monitor",
    )
    install_idempotent_producer()
    install_topic_creation_retry()
    ctx = Context(s, app)
    app.before_stop = ctx.retry.begin_shutdown
    content = ContentStage(ctx)
    waiting = ItemWait(ctx)
    interest = InterestStage(ctx, waiting)
    canary = FreshnessCanary(ctx)
    topics = s.topics()
    sources = [
        topics.uploads.name,
        topics.interactions.name,
        topics.interactions_retry.name,
        *([topics.co_engagements.name] if s.collab_enabled else []),
    ]  # effects must be durable before a commit
    install_strict_commits(sources)
    # Keyed by user_id like the interactions topic; the producer's partitioner places each user's
    # changelog records in the partition of that user's interactions, as co-partitioning requires.
    interests = app.Table(
        INTEREST_TABLE, default=None, partitions=s.topic_partitions, key_type=bytes, value_type=bytes, use_partitioner=True
    )

    # Every source agent acknowledges an event itself, after its effect is durable: Faust's take_events
    # and events() acknowledge in a `finally`, i.e. also when the body raised or was cancelled
    # (a shutdown or a rebalance mid-batch), which commits events whose effect never happened.
    # Uploads: up to `content_in_flight` batches at once, stored and acknowledged in order. A batch
    # holds what is waiting, up to the model's max batch: one or two uploads when idle, full batches
    # once the in-flight slots are taken and a backlog builds.
    @app.agent(ctx.topic(topics.uploads.name))
    async def encode_uploads(stream: faust.StreamT) -> None:
        pipeline = content.pipeline
        try:
            async for events in _batches(stream, content.batch_max, s.content_batch_wait_ms):
                batch = list(events)
                await pipeline.submit(partial(content.prepare, batch), content.store, partial(acknowledge, stream, batch))
            await pipeline.drain()
        except (ShuttingDown, Abandoned):
            return  # unacknowledged: redone after the restart
        finally:
            await pipeline.cancel()  # what is still in flight is never acknowledged

    # Interactions: up to `interest_in_flight` batches at once, the next one's maths while the last is
    # stored; a batch builds on the states of those still in flight (`InterestStage`).
    @app.agent(ctx.topic(topics.interactions.name))
    async def update_interests(stream: faust.StreamT) -> None:
        pipeline = interest.pipeline
        try:
            async for events in _batches(stream, s.interest_batch_max, s.interest_batch_wait_ms):
                batch = list(events)
                await pipeline.submit(
                    partial(interest.prepare, batch, interests), interest.store, partial(acknowledge, stream, batch)
                )
            await pipeline.drain()
        except (ShuttingDown, Abandoned):
            return  # unacknowledged: redone after the restart
        finally:
            await pipeline.cancel()  # what is still in flight is never acknowledged
            interest.forget()

    # Parked interactions are held, unacknowledged, until their item is stored (waiting.py): the agent
    # only takes them in; the task below sends them back, re-parks or dead-letters them and acknowledges.
    @app.agent(ctx.topic(topics.interactions_retry.name))
    async def retry_interactions(stream: faust.StreamT) -> None:
        async for events in _batches(stream, s.interest_batch_max, s.interest_batch_wait_ms):
            try:
                await waiting.hold(stream, events)
            except ShuttingDown:
                return

    @app.task
    async def warm_up() -> None:
        # The clients (Triton, Milvus, the registry's live version) open as the worker starts, not in
        # the first upload's batch, whose freshness would count their connection set-up.
        try:
            await ctx.live()
        except ShuttingDown:
            return
        except Exception as exc:  # a dependency down at start: the first batch opens them, retrying
            logger.info(
                "clients not opened at start (the first batch will): %s",
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            )
            return
        # The item cache from the item-embeddings topic's newest records, beside the first batches
        # (what they miss meanwhile they read from Milvus, as they would without this).
        began = time.monotonic()
        topic = topics.item_embeddings.name
        try:
            read = await ctx.vectors.warm(
                tail_chunks(s.kafka_bootstrap, s.kafka_security(), topic, s.item_cache_size, s.max_message_bytes)
            )
            logger.info("item cache warmed: %d records of %s in %.1fs", read, topic, time.monotonic() - began)
        except Exception as exc:  # the agents work without it: misses are read from Milvus
            logger.warning("item cache not warmed from %s (misses are read from Milvus): %s", topic, exc)

    @app.task
    async def settle_waiting() -> None:
        try:
            await waiting.run()
        except ShuttingDown:
            return

    if s.collab_enabled:
        collab = CollabStage(ctx)
        # Keyed by item_id like the co-engagements topic (the same co-partitioning as the interest table).
        collab_states = app.Table(
            COLLAB_TABLE, default=None, partitions=s.topic_partitions, key_type=bytes, value_type=bytes, use_partitioner=True
        )

        @app.agent(ctx.topic(topics.co_engagements.name))
        async def update_collab(stream: faust.StreamT) -> None:
            async for events in _batches(stream, s.collab_batch_max, s.collab_flush_ms):
                try:
                    await collab.handle(events, collab_states)
                except ShuttingDown:
                    return
                await acknowledge(stream, events)

    @app.agent(ctx.topic(topics.item_embeddings.name))
    async def cache_item_vectors(stream: faust.StreamT) -> None:
        async for event in stream.events():
            ctx.vectors.cache_embedding(event.value)

    # ------------------------------------------------------------------ operations: lag, health, status pages, commit repair
    watch = LagWatch(
        s.kafka_bootstrap,
        s.kafka_security(),
        s.app_id,
        [*sources, topics.item_embeddings.name],
        window=max(3, int(120 / s.status_interval_s)),
    )
    thresholds = Thresholds(
        lag_seconds_degraded=s.lag_seconds_degraded, freshness_p99_slo_s=s.freshness_slo_s, stall_window_s=s.stall_window_s
    )

    trend = Trend(window_s=900.0, interval_s=s.status_interval_s)

    def current_status() -> dict[str, object]:
        metrics = ctx.metrics
        verdict = watch.verdict(
            dependency_states(metrics), metrics.freshness_percentiles().get("p99"), thresholds, metrics.saturation()
        )
        return status_json(
            watch,
            metrics,
            verdict,
            trend,
            (ctx.online.k, *ctx.online.rate()),
            ctx.versions.known,
            ctx.sids.status(),
            ctx.online.rates(),
            ctx.online.channel,
        )

    @app.timer(s.status_interval_s)
    async def sample_lag() -> None:
        content.sample()
        try:
            await watch.sample(ctx.metrics)
            ctx.metrics.dependency_up.labels("kafka").set(1)
            trend.record(watch, ctx.metrics, ctx.online.rate()[0])
        except Exception as exc:
            ctx.metrics.dependency_up.labels("kafka").set(0)
            logger.warning("lag sample failed: %s", str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)

    @app.timer(s.status_interval_s)
    async def sample_replicas() -> None:
        try:
            await watch.sample_replicas(ctx.metrics)
        except Exception as exc:
            logger.warning("replica sample failed: %s", str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)

    @app.timer(s.version_refresh_s)
    async def refresh_versions() -> None:  # a swap reaches this worker's next batches within about this
        if ctx.started:
            await ctx.versions.current()

    @app.timer(max(s.status_interval_s, 5.0) * 3)
    async def probe_freshness() -> None:
        await canary.probe()

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(ctx.metrics.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/status")
    async def status_page(web: Any, request: Any) -> Any:
        return web.html(
            render_status(
                current_status(), f"sail-stream worker :{s.worker_web_port}", refresh_s=int(max(s.status_interval_s, 2))
            )
        )

    @app.page("/status.json")
    async def status_data(web: Any, request: Any) -> Any:
        return web.json(current_status())

    repair = CommitRepair(
        lambda: app.consumer,
        [*sources, topics.item_embeddings.name],
        contiguous=sources,
        # Faust's conductor: the streams a partition feeds (a private index, under the exact faust pin)
        queues=lambda tp: [channel.queue for channel in app.topics._tp_index.get(tp, ())],  # type: ignore[attr-defined]
    )

    @app.timer(1.0)
    async def commit_bases() -> None:
        try:
            await repair.ensure_base()
        except Exception as exc:
            logger.warning(
                "cannot read the first offsets of new partitions: %s",
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            )

    # a gap is sought back on its second sighting: 5-10 s after it formed (a restarted worker's head gap
    # held its commits 20 s at 10 s)
    @app.timer(5.0)
    async def repair_commits() -> None:
        for fix in await repair.check():
            ctx.metrics.commit_repairs.labels(fix.kind, fix.topic).inc()
            logger.warning(
                "repaired a Faust offset-commit fault kind=%s tp=%s[%d]: %s", fix.kind, fix.topic, fix.partition, fix.detail
            )
        stalls = repair.stalls(after_s=s.stall_window_s)
        for stall in stalls:
            logger.warning("partition not committing tp=%s[%d]: %s", stall.topic, stall.partition, stall.detail)
        if stalls:  # where the agents and their batches wait, once for all of them
            agents = {
                f"agent {agent.name}[{i}]": actor.it
                for agent in app.agents.values()
                for i, actor in enumerate(list(agent._actors))
            }
            logger.warning("the worker's tasks wait in:\n  %s", "\n  ".join(own_waits(coroutines=agents)) or "(none)")

    @app.timer(30.0)
    async def log_progress() -> None:
        logger.info("progress events_per_s=%s freshness=%s", ctx.metrics.rates(), ctx.metrics.freshness_percentiles())

    return app, ctx


class SailApp(faust.App):
    """The Faust app, stopping the agents' retry loops before Faust waits for their batches.

    faust-streaming's stop first waits for every event handed to an agent to be acknowledged
    (`stream_wait_empty`); an agent retrying a down dependency never acknowledges, so a worker
    ignored SIGTERM for as long as the outage lasted. Here the retry loops end at once and their
    batches stay unacknowledged (uncommitted), to be redone by whoever owns the partition next.
    """

    before_stop: Callable[[], None] | None = None

    async def on_stop(self) -> None:
        if self.before_stop is not None:
            self.before_stop()
        self.conf.stream_wait_empty = False  # the unacknowledged batches are abandoned, not awaited
        await super().on_stop()


def install_idempotent_producer() -> None:
    """Make the worker's Kafka producer idempotent with `acks=all`. faust-streaming 0.15.3 (pinned exactly)
    turns idempotence on only inside transactions. This producer writes the dead letters, the item
    embeddings, the retry topic and the interest changelog. A send retried after a broker failover is
    then written once, in order: never lost (acks=all with min.insync.replicas), never doubled."""
    from faust.transport.drivers import aiokafka as driver

    base = driver.Producer._settings_extra
    if getattr(base, "sail_idempotent", False):
        return

    def settings_extra(self: Any) -> Mapping[str, Any]:
        return {**base(self), "acks": "all", "enable_idempotence": True}

    # a monkeypatch of Faust's producer under the exact pin: a marker attribute on a function, and a
    # method replaced on the class, neither of which a type checker lets pass unsaid
    settings_extra.sail_idempotent = True  # type: ignore[attr-defined]
    driver.Producer._settings_extra = settings_extra  # type: ignore[method-assign]


TOPIC_CREATION_RETRY_S = 120.0  # past a broker's session timeout and its partitions' new leaders, with room


def install_topic_creation_retry(deadline_s: float = TOPIC_CREATION_RETRY_S) -> None:
    """Retry Faust's topic declarations (its leader topic and table changelogs, at every start) while
    Kafka answers with a retriable error. faust-streaming 0.15.3 (pinned exactly) sends the request to
    the node its metadata names as controller, once: a worker (re)started while that broker was down
    exited at start-up with NodeNotReadyError (the soak's CI failure, 2026-12-03). The metadata is
    refreshed between tries (the dead node drops out of it) and a last failure is raised as before."""
    import asyncio
    import time

    from aiokafka.errors import KafkaError
    from faust.transport.drivers import aiokafka as driver

    base = driver.Transport._create_topic
    if getattr(base, "sail_retrying", False):
        return

    async def create_topic(self: Any, owner: Any, client: Any, topic: str, *args: Any, **kwargs: Any) -> None:
        deadline, pause_s = time.monotonic() + deadline_s, 0.5
        while True:
            try:
                return await base(self, owner, client, topic, *args, **kwargs)
            except (KafkaError, RuntimeError) as exc:  # RuntimeError: Faust's "Invalid controller"
                retriable = getattr(exc, "retriable", False) or "Invalid controller" in str(exc)
                if not retriable or time.monotonic() + pause_s > deadline:
                    raise
                logger.warning("declaring topic %s: %r; retrying in %.1fs", topic, exc, pause_s)
            await asyncio.sleep(pause_s)
            try:  # the next try asks the controller the fresh metadata names
                await asyncio.wait_for(client.force_metadata_update(), timeout=5.0)
            except (TimeoutError, KafkaError) as exc:
                logger.warning("refreshing Kafka's metadata before declaring %s again: %r", topic, exc)
            pause_s = min(pause_s * 2, 5.0)

    # a monkeypatch of Faust's transport under the exact pin, as above: a marker on a function and a method
    # replaced on the class
    create_topic.sail_retrying = True  # type: ignore[attr-defined]
    driver.Transport._create_topic = create_topic  # type: ignore[method-assign]


def worker_dir(settings: Settings) -> Path:
    """Faust's data folder for one worker (one per web port, so workers on a host do not collide)."""
    return (settings.state_dir / "faust" / f"{settings.app_id}-{settings.worker_web_port}").resolve()


def kafka_credentials(settings: Settings) -> Any:
    security = settings.kafka_security()
    context = None
    if security.protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=str(security.ssl_cafile) if security.ssl_cafile else None)
        if security.ssl_certfile:
            context.load_cert_chain(str(security.ssl_certfile), str(security.ssl_keyfile) if security.ssl_keyfile else None)
    if security.protocol.startswith("SASL_"):
        password = security.sasl_password.get_secret_value() if security.sasl_password else None
        return faust.SASLCredentials(
            username=security.sasl_username, password=password, mechanism=security.sasl_mechanism, ssl_context=context
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run one worker until SIGINT/SIGTERM; several share the partitions of one consumer group."""
    worker_dir(settings).mkdir(parents=True, exist_ok=True)
    app, ctx = create_app(settings)

    # mode's signal types want a positional sender the decorator passes; its stubs do not say so
    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_clients(app: faust.App, **kwargs: Any) -> None:
        await ctx.stop()

    worker = faust.Worker(app, loglevel=loglevel)
    # Faust's terminal spinner, kept at warning level and above, sets the root logger to DEBUG so that it
    # spins on every record: every debug call of aiokafka, grpc and Faust then built a LogRecord (~5 %
    # of a busy worker's CPU). A worker's output is a log, not a terminal.
    worker.spinner = None
    # kafka-python (the lag sampler's admin client) logs every connection at INFO: keep its warnings only
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    logging.getLogger("kafka.net.sasl.plain").setLevel(
        logging.ERROR
    )  # "password in the clear" on every lag sample under SASL_PLAINTEXT
    tune_collector(settings.worker_gc_young)
    worker.execute_from_commandline()


def tune_collector(young: int) -> None:
    """Python's cyclic collector for a busy worker (`SAIL_WORKER_GC_YOUNG`; 0: leave Python's defaults).

    By default it ran every 700 container allocations and every 100th run went over the whole heap
    (Faust, aiokafka, grpc, pymilvus: ~0.5M objects): 7 % of a busy worker's samples (py-spy, bench.interest
    live). The start-up heap is left out of every later collection (`gc.freeze`) and the young generation is
    collected every `young` allocations (bench.interest, drain and live, alternating runs: +15 % drain)."""
    if young:
        gc.collect()
        gc.freeze()
        gc.set_threshold(young, 20, 20)
