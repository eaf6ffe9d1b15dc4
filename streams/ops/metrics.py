"""Prometheus metrics of a worker. Metric names are public API: they are named here once, in base
units, and the dashboards and alert rules in deploy/ use exactly these names."""

from __future__ import annotations

import time
from collections import deque
from typing import Final

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONSUMER_LAG_MESSAGES: Final = "sail_consumer_lag_messages"
CONSUMER_LAG_SECONDS: Final = "sail_consumer_lag_seconds"
ITEM_FRESHNESS_SECONDS: Final = "sail_item_freshness_seconds"
USER_FRESHNESS_SECONDS: Final = "sail_user_freshness_seconds"
TRITON_REQUEST_SECONDS: Final = "sail_triton_request_seconds"
TRITON_BATCH_ITEMS: Final = "sail_triton_batch_items"
MILVUS_UPSERT_SECONDS: Final = "sail_milvus_upsert_seconds"
DEPENDENCY_ERRORS: Final = "sail_dependency_errors"  # exported as sail_dependency_errors_total
DEPENDENCY_UP: Final = "sail_dependency_up"
DEAD_LETTERS: Final = "sail_dead_letters"  # exported as sail_dead_letters_total
EVENTS: Final = "sail_events"  # exported as sail_events_total
COMMIT_REPAIRS: Final = "sail_commit_repairs"  # exported as sail_commit_repairs_total
TRITON_REQUESTS: Final = "sail_triton_requests"  # exported as sail_triton_requests_total{outcome}
TRITON_DEADLINE_SECONDS: Final = "sail_triton_deadline_seconds"
CONTENT_BATCH_ITEMS: Final = "sail_content_batch_items"
CONTENT_IN_FLIGHT: Final = "sail_content_batches_in_flight"
CONTENT_PIPELINE_FULL: Final = "sail_content_pipeline_full_seconds"  # exported as ..._seconds_total
INTEREST_APPLIED: Final = "sail_interest_applied"  # exported as sail_interest_applied_total
INTEREST_CHANGELOG_BYTES: Final = "sail_interest_changelog_bytes"  # exported as ..._bytes_total
INTEREST_STATE_BYTES: Final = "sail_interest_state_bytes"
COLLAB_FRESHNESS_SECONDS: Final = "sail_collab_freshness_seconds"
COLLAB_APPLIED: Final = "sail_collab_applied"  # exported as sail_collab_applied_total
PARKED: Final = "sail_parked"  # exported as sail_parked_total
WAITING: Final = "sail_waiting_interactions"
WAITED_SECONDS: Final = "sail_waited_seconds"
COLLAB_ROWS: Final = "sail_collab_rows"  # exported as sail_collab_rows_total{kind}
COLLAB_SECONDS: Final = "sail_collab_seconds"  # exported as sail_collab_seconds_total
INTEREST_SECONDS: Final = "sail_interest_seconds"  # exported as sail_interest_seconds_total{phase}
ITEM_VECTORS: Final = "sail_item_vectors"  # exported as sail_item_vectors_total{source}
ONLINE_HIT_CHECKS: Final = "sail_online_hit_checks"  # exported as sail_online_hit_checks_total
ONLINE_HITS: Final = "sail_online_hits"  # exported as sail_online_hits_total
ONLINE_HIT_SKIPPED: Final = "sail_online_hit_skipped"  # exported as sail_online_hit_skipped_total
SID_ASSIGNED: Final = "sail_sid_assigned"  # exported as sail_sid_assigned_total{outcome}
SID_SECONDS: Final = "sail_sid_seconds"  # exported as sail_sid_seconds_total{phase}
SID_QUANTISATION_ERROR: Final = "sail_sid_quantisation_error"
SID_DRIFT_RATIO: Final = "sail_sid_drift_ratio"
SID_UTILISATION: Final = "sail_sid_code_utilisation"
SID_COLLISION_RATE: Final = "sail_sid_collision_rate"
KAFKA_UNDER_REPLICATED: Final = "sail_kafka_under_replicated_partitions"
KAFKA_OFFLINE: Final = "sail_kafka_offline_partitions"

_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_FRESHNESS_BUCKETS: Final = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300)
_BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_STATE_BUCKETS: Final = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class Metrics:
    """One worker's metrics in its own registry (any number of workers, no module globals)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.lag_messages = Gauge(
            CONSUMER_LAG_MESSAGES, "Messages behind: log-end minus committed offset", ["topic", "partition"], registry=r
        )
        self.lag_seconds = Gauge(CONSUMER_LAG_SECONDS, "Age of the oldest unprocessed record", ["topic", "partition"], registry=r)
        self.item_freshness = Histogram(
            ITEM_FRESHNESS_SECONDS,
            "Upload event time to the item being upserted (stage=upserted) or searchable by recall (stage=searchable)",
            ["stage"],
            buckets=_FRESHNESS_BUCKETS,
            registry=r,
        )
        self.user_freshness = Histogram(
            USER_FRESHNESS_SECONDS,
            "Interaction event time to the user's vector being upserted",
            buckets=_FRESHNESS_BUCKETS,
            registry=r,
        )
        self.triton_seconds = Histogram(
            TRITON_REQUEST_SECONDS, "Latency of one encode request to Triton", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.triton_batch = Histogram(
            TRITON_BATCH_ITEMS, "Items per encode request (micro-batch size achieved)", buckets=_BATCH_BUCKETS, registry=r
        )
        self.milvus_seconds = Histogram(
            MILVUS_UPSERT_SECONDS,
            "Latency of one acknowledged Milvus upsert",
            ["collection"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.dependency_errors = Counter(
            DEPENDENCY_ERRORS, "Failed calls to a dependency (each retried)", ["dependency"], registry=r
        )
        self.under_replicated = Gauge(
            KAFKA_UNDER_REPLICATED,
            "Partitions of the worker's topics with fewer replicas in sync than assigned (a broker down or behind)",
            ["topic"],
            registry=r,
        )
        self.offline_partitions = Gauge(
            KAFKA_OFFLINE,
            "Partitions of the worker's topics without a leader: nothing is read or written there",
            ["topic"],
            registry=r,
        )
        self.dependency_up = Gauge(DEPENDENCY_UP, "1 when the dependency's last call succeeded", ["dependency"], registry=r)
        self.dead_letters = Counter(DEAD_LETTERS, "Messages sent to the dead-letter topic", ["reason", "topic"], registry=r)
        self.events = Counter(EVENTS, "Events consumed per agent", ["agent"], registry=r)
        self.commit_repairs = Counter(
            COMMIT_REPAIRS, "Faust offset-commit faults repaired (streams/worker/commits.py)", ["kind", "topic"], registry=r
        )
        self.triton_requests = Counter(
            TRITON_REQUESTS,
            "Encode requests by outcome: ok; abandoned (past the client deadline, Triton may have computed it anyway); "
            "rejected (Triton refused it as over its queue bound, never computed); failed",
            ["outcome"],
            registry=r,
        )
        self.triton_deadline = Gauge(
            TRITON_DEADLINE_SECONDS, "Client deadline of a full micro-batch now (follows the measured service time)", registry=r
        )
        self.content_batch = Gauge(
            CONTENT_BATCH_ITEMS, "Uploads in the content agent's latest micro-batch (adaptive: what was waiting)", registry=r
        )
        self.content_in_flight = Gauge(CONTENT_IN_FLIGHT, "Content micro-batches in flight in this worker", registry=r)
        self.content_full = Counter(
            CONTENT_PIPELINE_FULL,
            "Time the content agent waited for a free in-flight slot (the encoder or the sinks at capacity)",
            registry=r,
        )
        self.interest_applied = Counter(
            INTEREST_APPLIED, "Interactions applied to a user's interest state (replays and duplicates not counted)", registry=r
        )
        self.interest_changelog_bytes = Counter(
            INTEREST_CHANGELOG_BYTES,
            "Bytes of interest state written to the table's changelog "
            "(divide by sail_interest_applied_total: bytes per interaction)",
            registry=r,
        )
        self.interest_state_bytes = Histogram(
            INTEREST_STATE_BYTES, "Size of each user's interest state as written", buckets=_STATE_BUCKETS, registry=r
        )
        self.interest_seconds = Counter(
            INTEREST_SECONDS,
            "Time the interest agent spent in each phase of its micro-batches (decode, state, vectors, maths, park, upsert, "
            "changelog): where a busy interest path's time goes",
            ["phase"],
            registry=r,
        )
        self.item_vectors = Counter(
            ITEM_VECTORS,
            "Item vectors the interest agent looked up, by where they came from: cache (this worker's memory), milvus "
            "(a get for what the cache missed), missing (no vector yet: the interaction waits for its item)",
            ["source"],
            registry=r,
        )
        self.collab_freshness = Histogram(
            COLLAB_FRESHNESS_SECONDS,
            "Interaction event time to the liked item's collaborative vector being upserted (the coalescing window included)",
            buckets=_FRESHNESS_BUCKETS,
            registry=r,
        )
        self.parked = Counter(
            PARKED, "Interactions parked on the retry topic because their item had no embedding yet", registry=r
        )
        self.waiting = Gauge(WAITING, "Parked interactions this worker holds in memory until their item is stored", registry=r)
        self.waited_seconds = Histogram(
            WAITED_SECONDS,
            "How long a parked interaction waited (parked to sent back) before its item was found",
            buckets=_FRESHNESS_BUCKETS,
            registry=r,
        )
        self.collab_applied = Counter(
            COLLAB_APPLIED, "Co-engagements applied to an item's collaborative state (replays not counted)", registry=r
        )
        self.collab_rows = Counter(
            COLLAB_ROWS,
            "Collaborative rows upserted (kind=item: by the collaborative stage, one per item per micro-batch; kind=user: by "
            "the interest stage); divide by sail_collab_applied_total: rows per interaction",
            ["kind"],
            registry=r,
        )
        self.collab_seconds = Counter(
            COLLAB_SECONDS,
            "Worker CPU time spent on collaborative vectors: the collaborative stage's batches and the interest stage's share "
            "(co-engagements, user rows); divide by sail_collab_applied_total: seconds per interaction",
            registry=r,
        )
        self.online_hit_checks = Counter(
            ONLINE_HIT_CHECKS,
            "Sampled positive interactions checked per recall channel (dense, collab, fused): was the item in the user's "
            "top-K just before?",
            ["channel"],
            registry=r,
        )
        self.online_hits = Counter(
            ONLINE_HITS,
            "Checked interactions whose item was in the user's top-K of the channel (divide by sail_online_hit_checks_total "
            "of the same channel)",
            ["channel"],
            registry=r,
        )
        self.online_hit_skipped = Counter(
            ONLINE_HIT_SKIPPED, "Sampled interactions not checked (a search still running, or it failed)", registry=r
        )
        self.sid_assigned = Counter(
            SID_ASSIGNED,
            "Fresh items given a semantic ID: unique (suffix 0), collision (suffix > 0), "
            "none (no codebook live, or its rows missing)",
            ["outcome"],
            registry=r,
        )
        self.sid_seconds = Counter(
            SID_SECONDS,
            "Time spent assigning semantic IDs: codes (the quantiser, CPU) and lookup (who holds the buckets, Milvus)",
            ["phase"],
            registry=r,
        )
        self.sid_error = Gauge(
            SID_QUANTISATION_ERROR,
            "Mean relative quantisation error |x - x_hat|^2 / |x|^2: "
            "fitted (the codebook's items) and fresh (the last 500 assigned)",
            ["which"],
            registry=r,
        )
        self.sid_drift = Gauge(
            SID_DRIFT_RATIO,
            "Fresh quantisation error / fitted: above SAIL_SID_DRIFT_RATIO the codebook needs refitting",
            registry=r,
        )
        self.sid_utilisation = Gauge(
            SID_UTILISATION,
            "Share of the K codes in use per level, on the items the live codebook was fitted on",
            ["level"],
            registry=r,
        )
        self.sid_collision_rate = Gauge(
            SID_COLLISION_RATE,
            "Share of items sharing all L codes with another, on the items the live codebook was fitted on",
            registry=r,
        )
        for outcome in ("unique", "collision", "none"):
            self.sid_assigned.labels(outcome)
        for outcome in ("ok", "abandoned", "rejected", "failed"):
            self.triton_requests.labels(outcome)
        for dependency in ("triton", "milvus", "kafka"):
            self.dependency_up.labels(dependency).set(1)
        self._recent_freshness: deque[tuple[float, float]] = deque(maxlen=5000)  # (observed at, seconds)
        self._recent_events: deque[tuple[float, str, int]] = deque(maxlen=5000)
        self._full_samples: deque[tuple[float, float]] = deque(maxlen=1000)  # (at, seconds waited so far)
        self._full_total = 0.0  # what content_full has counted

    def observe_item_freshness(self, seconds: float, stage: str = "upserted") -> None:
        self.item_freshness.labels(stage).observe(seconds)
        if stage == "upserted":
            self._recent_freshness.append((time.time(), seconds))

    def count_events(self, agent: str, count: int) -> None:
        self.events.labels(agent).inc(count)
        self._recent_events.append((time.time(), agent, count))

    def freshness_percentiles(self, window_s: float = 300.0) -> dict[str, float]:
        """p50/p95/p99 of item freshness (upserted) over the last `window_s`, for the status page."""
        cutoff = time.time() - window_s
        values = [s for t, s in self._recent_freshness if t >= cutoff]
        if not values:
            return {}
        return {f"p{q}": float(np.percentile(values, q)) for q in (50, 95, 99)}

    def rates(self, window_s: float = 60.0) -> dict[str, float]:
        """Events per second per agent over the last `window_s`."""
        cutoff = time.time() - window_s
        totals: dict[str, int] = {}
        for t, agent, count in self._recent_events:
            if t >= cutoff:
                totals[agent] = totals.get(agent, 0) + count
        return {agent: total / window_s for agent, total in totals.items()}

    def note_pipeline_full(self, total_s: float) -> None:
        """The content pipeline has waited `total_s` in all for a free in-flight slot (its running
        total, read at every status sample)."""
        if total_s > self._full_total:
            self.content_full.inc(total_s - self._full_total)
            self._full_total = total_s
        self._full_samples.append((time.monotonic(), self._full_total))

    def saturation(self, window_s: float = 60.0) -> float | None:
        """Share of the last `window_s` the content agent waited for a free slot: near 1, uploads
        arrive faster than the encoder takes them. None until the window has two samples."""
        now = time.monotonic()
        inside = [(t, total) for t, total in self._full_samples if t >= now - window_s]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < window_s / 4:
            return None
        (t0, f0), (t1, f1) = inside[0], inside[-1]
        return min(max((f1 - f0) / (t1 - t0), 0.0), 1.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
