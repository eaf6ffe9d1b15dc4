"""The one settings object. Loaded once by the entry point from `SAIL_*` environment variables
and/or a dotenv-style file; every other module gets plain values passed down."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from topology.codec import Limits
from topology.collections import (
    Backend,
    CollectionSpec,
    collab_items_collection,
    collab_users_collection,
    items_collection,
    users_collection,
)
from topology.topics import COLLAB_TABLE, Topics, TopicSpec, build_topics, changelog_topic, replication
from topology.versions import Registry, default_registry, registry_collection

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """How clients authenticate to the brokers; secrets stay `SecretStr` until the adapter uses them."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A TLS client's files: the CA (or self-signed server certificate) to trust, and for mutual TLS
    the client's certificate and key; `server_name` overrides the name checked in the certificate."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    def milvus_kwargs(self) -> dict[str, object]:
        """pymilvus connection arguments (one-way TLS: `server_pem_path`; mutual: CA + client pair)."""
        kwargs: dict[str, object] = {"secure": True}
        if self.cert_file and self.key_file:
            kwargs.update(
                client_pem_path=str(self.cert_file), client_key_path=str(self.key_file), ca_pem_path=str(self.ca_file or "")
            )
        elif self.ca_file:
            kwargs["server_pem_path"] = str(self.ca_file)
        if self.server_name:
            kwargs["server_name"] = self.server_name
        return kwargs

    def triton_kwargs(self) -> dict[str, object]:
        """tritonclient gRPC arguments (it reads the files itself)."""
        return {
            "ssl": True,
            "root_certificates": str(self.ca_file) if self.ca_file else None,
            "private_key": str(self.key_file) if self.key_file else None,
            "certificate_chain": str(self.cert_file) if self.cert_file else None,
        }


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """Where media URIs may point. `file://` only under `roots` (none: no local reads at all), regular
    files only; `http(s)://` to public addresses, plus the `allow_hosts` (names, IP addresses or CIDR
    networks) a deployment names for its own private media servers."""

    roots: tuple[Path, ...] = ()
    allow_hosts: tuple[str, ...] = ()


def host_port(address: str) -> tuple[str, int]:
    """`grpc://h:p`, `http://h:p` or `h:p` -> (h, p).

    Raises:
        ValueError: no port in the address.
    """
    parts = urlsplit(address if "://" in address else f"//{address}")
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"address {address!r} has no host:port")
    return parts.hostname, parts.port


class Settings(BaseSettings):
    """Every setting of sail-stream; `SAIL_<NAME>` in the environment overrides each default."""

    model_config = SettingsConfigDict(env_prefix="SAIL_", frozen=True, extra="forbid")

    # Kafka
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="comma-separated host:port list of brokers")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    topic_prefix: str = Field("sail.", description="every topic is named <prefix><base>")
    topic_partitions: int = Field(6, ge=1, description="partitions: the unit of parallelism across workers")
    topic_replication_factor: int = Field(
        1,
        ge=1,
        description="replicas of every topic; unset, 3 on a local stack of 3 or more brokers (min.insync.replicas is then 2)",
    )
    kafka_group_instance_id: str | None = Field(
        None,
        description="static group membership (KIP-345): a stable id per worker, e.g. its pod name; "
        "a worker restarted within the session timeout gets its partitions back without a rebalance. "
        "Unique per worker: two live workers with one id fence each other",
    )
    kafka_session_timeout_s: float = Field(
        20.0,
        ge=6,
        le=300,
        description="a worker that stops heartbeating (crash, kill) loses its partitions to the others after this long",
    )

    # Milvus
    milvus_uri: str = Field(
        "http://127.0.0.1:19530",
        description="http(s)://host:port of a Milvus server, or a path ending in .db for embedded Milvus Lite",
    )
    milvus_token: SecretStr | None = Field(None, description="user:password or API token")
    milvus_tls_ca_file: Path | None = Field(
        None, description="CA or server certificate to trust (TLS; also implied by an https:// URI)"
    )
    milvus_tls_cert_file: Path | None = Field(None, description="client certificate for mutual TLS (with _KEY_FILE and _CA_FILE)")
    milvus_tls_key_file: Path | None = None
    milvus_tls_server_name: str | None = Field(
        None, description="name to check in Milvus's certificate when it differs from the host"
    )
    milvus_backend: Backend = Field(
        "lite", description="lite: Milvus Lite (FLAT index); server: Milvus standalone/distributed (HNSW)"
    )
    milvus_collection_prefix: str = "sail_"
    embedding_dim: int = Field(384, ge=1, description="width of the vectors stored in Milvus")

    # Encoder and Triton
    encoder: str = Field(
        "sail-tiny",
        description="encoder preset (sail-tiny, sail-tiny-omni, sail-qwen2-tiny, sail-large), saved folder, "
        "or standin (a measurable stand-in that sleeps its service time, for benchmarks; encoders/bench_double.py)",
    )
    standin_fixed_ms: float = Field(
        20.0, ge=0, description="SAIL_ENCODER=standin: time per batch, spent off the CPU like a GPU's"
    )
    standin_per_item_ms: float = Field(2.0, ge=0, description="SAIL_ENCODER=standin: time per item of a batch")
    triton_url: str = Field("grpc://127.0.0.1:8001", description="Triton's gRPC endpoint; grpcs:// for TLS")
    triton_tls_ca_file: Path | None = Field(None, description="CA or server certificate to trust (TLS; implies grpcs)")
    triton_tls_cert_file: Path | None = Field(None, description="client certificate for mutual TLS (with _KEY_FILE)")
    triton_tls_key_file: Path | None = None
    triton_tls_server_cert_file: Path | None = Field(
        None, description="local stack only: serve Triton's gRPC over TLS with this certificate"
    )
    triton_tls_server_key_file: Path | None = Field(None, description="local stack only: the key of that certificate")
    triton_http_port: int = 8000
    triton_metrics_port: int = 8002
    triton_timeout_s: float = Field(
        5.0,
        gt=0,
        description="shortest deadline of an encode request; it grows with the batch and the measured service time, "
        "and doubles after a missed one (a slow encoder is waited for, never sent the same work twice)",
    )
    triton_max_batch_size: int = Field(64, ge=1)
    triton_queue_delay_us: int = Field(2000, ge=0, description="dynamic batcher: how long a request may wait for company")
    triton_max_queue_size: int = Field(
        64, ge=0, description="local Triton: requests a model may queue; beyond, refused at once and retried later (0: unbounded)"
    )
    triton_instances: int = Field(1, ge=1)

    # Streaming workers (Faust)
    app_id: str = Field("sail-stream", description="Faust app id = Kafka consumer group of the workers")
    worker_web_port: int = Field(6066, description="each worker's HTTP port (metrics, status); one per worker on a host")
    worker_web_bind: str = Field(
        "127.0.0.1",
        description="the address the worker's HTTP port listens on: loopback on a host, 0.0.0.0 in a pod (probes, Prometheus)",
    )
    content_batch_max: int = Field(
        64,
        ge=1,
        description="most uploads per micro-batch (also bounded by SAIL_TRITON_MAX_BATCH_SIZE); a batch holds what is waiting, "
        "so batches are small when idle and full under a backlog",
    )
    content_batch_wait_ms: float = Field(
        20.0, ge=1, description="how long a micro-batch of uploads waits for company when few arrive"
    )
    content_in_flight: int = Field(
        2,
        ge=1,
        description="micro-batches of uploads a worker has in flight (encode the next while the last is stored); effects and "
        "commits stay in order",
    )
    worker_monitor: Literal["quiet", "faust"] = Field(
        "quiet",
        description="quiet: Faust's per-event monitor counters left out (nothing reads them; an empty agent reads "
        "1.2-1.35x the records/s, bench.floor); faust: Faust's own Monitor",
    )
    worker_gc_young: int = Field(
        20_000,
        ge=0,
        description="a worker's Python collector: young-generation threshold (Python's default 700), the start-up "
        "heap frozen out of later collections; 0: Python's defaults",
    )
    interest_batch_max: int = Field(256, ge=1)
    interest_batch_wait_ms: float = Field(50.0, ge=1)
    interest_in_flight: int = Field(
        2,
        ge=1,
        description="micro-batches of interactions a worker has in flight (the next one's maths while the last is stored); "
        "states, effects and commits stay in order; 1: one batch at a time",
    )
    interest_window: int = Field(10, ge=1, description="last N positive items per user, as in the SAIL report")
    interest_half_life_s: float = Field(6 * 3600.0, gt=0, description="recency decay of an interaction's weight")
    interest_negative_weight: float = Field(0.3, ge=0, description="how hard skips and dislikes push away")
    interest_slots: int = Field(1, ge=1, description="K interest vectors per user (online clustering)")
    interest_dedup_per_kind: int = Field(
        64,
        ge=1,
        description="newest applied positive (and negative) events each user's state remembers to drop replays; "
        "at least the window",
    )
    collab_pairs: int = Field(
        20,
        ge=0,
        le=1024,
        description="each new positive is paired with the user's previous N positives (collaborative vectors; 0: off)",
    )
    collab_user_items: int = Field(20, ge=1, description="a user's collaborative vector: their last N positives")
    collab_user_decay: float = Field(
        0.8, gt=0, le=1, description="a user's collaborative vector: each older positive weighs this much of the next newer one"
    )
    collab_item_norm: float = Field(
        0.3, ge=0, le=1, description="an item's collaborative vector is divided by its positives to this power (0.5: cosine)"
    )
    collab_max_pairs: int = Field(
        1024,
        ge=1,
        le=1500,
        description="largest collaborative vector of an item (its heaviest pairs are kept; bounds state and rows)",
    )
    collab_dedup: int = Field(
        256, ge=1, description="newest applied events each item's collaborative state remembers to drop replays"
    )
    collab_prior_items: int = Field(10, ge=0, description="an upload starts from its N nearest items by content (0: no prior)")
    collab_prior_weight: float = Field(
        1.0, ge=0, description="the content-mapped start of an upload, in positives (what one like adds to a pair)"
    )
    collab_batch_max: int = Field(2048, ge=1, description="most co-engagements per micro-batch of the collaborative stage")
    collab_flush_ms: float = Field(
        1000.0,
        ge=1,
        description="how long the collaborative stage gathers co-engagements: an item liked many times in that window is "
        "written once (bounds Milvus rows per interaction; costs up to this much freshness)",
    )
    interaction_batch_max_events: int = Field(
        500, ge=1, description="most events in one batch record of interactions (a record with more is dead-lettered whole)"
    )
    item_wait_s: float = Field(
        30.0, gt=0, description="how long an interaction waits for its item's embedding before the dead-letter topic"
    )
    item_hold_poll_ms: float = Field(
        500.0,
        gt=0,
        description="how often a worker looks up the items of the parked interactions it holds: how soon one follows its item",
    )
    item_hold_s: float = Field(
        10.0,
        gt=0,
        description="a parked interaction held longer than this is parked again (a new record), so the retry topic's "
        "commits move during a long outage; it is read about once per this many seconds of waiting",
    )
    item_hold_max: int = Field(
        50_000, ge=1, description="parked interactions one worker holds in memory; beyond, the retry topic waits in Kafka"
    )
    item_cache_size: int = Field(100_000, ge=0, description="item vectors kept in each worker's memory")
    media_fetch_timeout_s: float = Field(5.0, gt=0, description="time limit to fetch one http(s) media URI")
    media_roots: str = Field(
        "", description="comma-separated folders that file:// media URIs may name (empty: file:// refused); regular files only"
    )
    media_allow_hosts: str = Field(
        "",
        description="comma-separated host names, IP addresses or CIDR networks that http(s):// media may come from "
        "besides public addresses (loopback, private and link-local addresses are refused unless named here)",
    )
    event_max_future_s: float = Field(
        300.0,
        ge=0,
        description="how far an event time (timestamp_ms, created_at_ms) may run ahead of its record's arrival; "
        "beyond: dead letter",
    )
    event_max_age_s: float = Field(
        0.0, ge=0, description="how far an event time may lag behind its record's arrival; 0: any age (replays, backfills)"
    )
    retry_backoff_max_s: float = Field(5.0, gt=0, description="longest pause between retries of a down dependency")

    recall_port: int = Field(8090, description="port of `sail-stream recall serve` (loopback unless --host)")
    recall_consistency: Literal["Strong", "Session", "Bounded", "Eventually"] = Field(
        "Bounded", description="the consistency recall services read at; the freshness probe measures at this level"
    )
    recall_channel: Literal["dense", "sid", "mixed", "collab", "fused"] = Field(
        "fused",
        description="the recall API's channel when a request names none: fused (collaborative + content; dense where the "
        "collaborative vectors are off), collab, dense (content), sid, mixed (dense + sid)",
    )
    recall_content_weight: float = Field(
        0.5, ge=0, description="fused channel: weight of the content similarity beside the collaborative score (max 1)"
    )
    status_interval_s: float = Field(5.0, gt=0, description="how often a worker samples lag and probes freshness")
    freshness_slo_s: float = Field(5.0, gt=0, description="item freshness p99 objective (status verdict, alerts)")
    online_hit_sample: float = Field(
        0.02,
        ge=0,
        le=1,
        description="share of positive interactions checked for the online hit rate (was the item in the user's top-K "
        "just before?); one Milvus search per batch's sample, beside the stream; 0: off",
    )
    online_hit_max_per_s: float = Field(
        5.0,
        ge=0,
        description="most online hit-rate probes a worker takes per second (a second's worth at once): the checks cost a "
        "bounded share of the worker at any traffic (uncapped, 2 percent of 1,600 interactions/s took 4 percent of it); "
        "0: no cap",
    )
    online_hit_k: int = Field(50, ge=1, le=1000, description="K of the online hit rate")
    lag_seconds_degraded: float = Field(30.0, gt=0, description="seconds behind that make the verdict degraded")
    version_refresh_s: float = Field(
        1.0,
        gt=0,
        description="how often workers and the recall API re-read the model-version registry (a swap reaches them within this)",
    )
    stall_window_s: float = Field(
        30.0,
        gt=0,
        description="committed offset still this long with lag > 0 = stalled partition "
        "(status page; the worker logs where it waits)",
    )

    # Semantic IDs (issue 18; `sail-stream sid fit` fits the codebook, workers assign with the live one)
    sid_levels: int = Field(
        3, ge=1, le=8, description="levels L of a new codebook (residual k-means): an item's semantic ID is L codes"
    )
    sid_codes: int = Field(256, ge=2, le=4096, description="codes K per level of a new codebook")
    sid_seed: int = Field(0, description="seed of the codebook fit: the same items and seed give the same codebook")
    sid_drift_ratio: float = Field(
        1.25,
        gt=1,
        description="fresh items' quantisation error over the codebook's fitted one "
        "above which the worker warns that the codebook needs refitting",
    )
    sid_recall_positives: int = Field(
        10, ge=1, le=100, description="recent items of a user whose semantic IDs the sid recall channel matches"
    )

    # Message limits (see topology.codec.Limits)
    max_message_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_image_bytes: int = Field(4 * 1024 * 1024, ge=1)
    max_frames: int = Field(16, ge=0)
    max_text_chars: int = Field(8192, ge=1)

    # Local stack (deploy/local)
    state_dir: Path = Field(Path(".sail-state"), description="logs, data and pid files of the local stack")
    cache_dir: Path = Field(Path("~/.cache/sail-stream"), description="downloaded Kafka jars, shared by every state dir")
    kafka_version: str = Field("4.4.0", description="Apache Kafka release resolved from Maven Central")
    kafka_controller_port: int = 9093
    kafka_brokers: int = Field(
        1,
        ge=1,
        le=9,
        description="brokers of the local stack, each also a KRaft controller; with one bootstrap address, node i listens on its "
        "port + 100*i (controller: kafka_controller_port + 100*i). 3 or more: replication factor 3, min.insync.replicas 2",
    )
    kafka_heap_mb: int = Field(512, ge=128)
    start_timeout_s: float = Field(180.0, gt=0, description="how long `stack up` waits for each service")

    @field_validator("state_dir", "cache_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_"):
            if not (self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password):
                raise ValueError("SASL protocols need SAIL_KAFKA_SASL_MECHANISM, _USERNAME and _PASSWORD")
        addresses = [host_port(address.strip()) for address in self.kafka_bootstrap.split(",")]
        if self.kafka_brokers > 1:
            if len(addresses) == 1 and addresses[0][0] in LOOPBACK_HOSTS:  # the local stack's nodes, one address each
                host, port = addresses[0]
                object.__setattr__(
                    self, "kafka_bootstrap", ",".join(f"{host}:{port + 100 * i}" for i in range(self.kafka_brokers))
                )
            elif len(addresses) != self.kafka_brokers:
                raise ValueError(
                    f"SAIL_KAFKA_BROKERS is {self.kafka_brokers} but SAIL_KAFKA_BOOTSTRAP lists {len(addresses)} addresses"
                )
            if "topic_replication_factor" not in self.model_fields_set:
                object.__setattr__(self, "topic_replication_factor", replication(self.kafka_brokers)[0])
        if self.kafka_group_instance_id is not None and not self.kafka_group_instance_id.strip():
            raise ValueError("SAIL_KAFKA_GROUP_INSTANCE_ID must not be blank")
        host_port(self.triton_url)
        for name in ("milvus_tls", "triton_tls", "triton_tls_server"):
            cert, key = getattr(self, f"{name}_cert_file"), getattr(self, f"{name}_key_file")
            if (cert is None) != (key is None):
                raise ValueError(f"SAIL_{name.upper()}_CERT_FILE and SAIL_{name.upper()}_KEY_FILE go together")
        if not self.milvus_uri.endswith(".db"):
            host_port(self.milvus_uri)
        for host in self.media_policy().allow_hosts:
            if "/" in host:
                try:
                    ipaddress.ip_network(host, strict=False)
                except ValueError as exc:
                    raise ValueError(f"SAIL_MEDIA_ALLOW_HOSTS: {host!r} is not a CIDR network") from exc
        return self

    # ------------------------------------------------------------------ derived contracts

    def topics(self) -> Topics:
        return build_topics(self.topic_prefix, self.topic_partitions, self.max_message_bytes, self.topic_replication_factor)

    def changelog_topic(self) -> TopicSpec:
        """The interest table's changelog topic of this deployment's workers (`app_id`)."""
        return changelog_topic(self.app_id, self.topic_partitions, self.max_message_bytes, self.topic_replication_factor)

    def changelog_topics(self) -> tuple[TopicSpec, ...]:
        """Every table's changelog topic: the interest table's, and the collaborative one's when enabled."""
        collab = changelog_topic(
            self.app_id, self.topic_partitions, self.max_message_bytes, self.topic_replication_factor, table=COLLAB_TABLE
        )
        return (self.changelog_topic(), *((collab,) if self.collab_enabled else ()))

    def limits(self) -> Limits:
        return Limits(
            max_message_bytes=self.max_message_bytes,
            max_image_bytes=self.max_image_bytes,
            max_frames=self.max_frames,
            max_text_chars=self.max_text_chars,
            max_future_skew_ms=int(self.event_max_future_s * 1000),
            max_age_ms=int(self.event_max_age_s * 1000),
            max_batch_events=self.interaction_batch_max_events,
        )

    def media_policy(self) -> MediaPolicy:
        """Where the content agent may fetch media from (`SAIL_MEDIA_ROOTS`, `SAIL_MEDIA_ALLOW_HOSTS`)."""
        roots = tuple(Path(p.strip()).expanduser() for p in self.media_roots.split(",") if p.strip())
        return MediaPolicy(
            roots=roots, allow_hosts=tuple(h.strip().lower() for h in self.media_allow_hosts.split(",") if h.strip())
        )

    def collections(self) -> tuple[CollectionSpec, CollectionSpec]:
        """(items, users)"""
        return (
            items_collection(self.milvus_collection_prefix, self.embedding_dim),
            users_collection(self.milvus_collection_prefix, self.embedding_dim),
        )

    @property
    def collab_enabled(self) -> bool:
        """Whether the workers keep collaborative vectors: on unless `collab_pairs` is 0, on Milvus Lite
        (2.5); the `milvus` package's 2.3 server has no sparse vectors (they came in Milvus 2.4)."""
        return self.collab_pairs > 0 and self.milvus_backend == "lite"

    def stored_collections(self) -> tuple[CollectionSpec, ...]:
        """Every collection the workers write: items and users, and the collaborative pair when enabled."""
        return (*self.collections(), *(self.collab_collections() if self.collab_enabled else ()))

    def collab_collections(self) -> tuple[CollectionSpec, CollectionSpec]:
        """(collab items, collab users): one pair for every model version (interactions make them)."""
        return collab_items_collection(self.milvus_collection_prefix), collab_users_collection(self.milvus_collection_prefix)

    def registry(self) -> tuple[CollectionSpec, Registry]:
        """The model-version registry's collection, and what runs while it has no row."""
        return registry_collection(self.milvus_collection_prefix), default_registry(*self.collections())

    def kafka_security(self) -> KafkaSecurity:
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
        )

    def namespaced(self, tag: str) -> Settings:
        """These settings with topics, Milvus collections and a consumer group of their own, named
        after `tag` (letters, digits, '_'), so one run on a shared stack sees nothing of another's."""
        if not tag or not all(c.isascii() and (c.isalnum() or c == "_") for c in tag):
            raise ValueError(f"a namespace tag is letters, digits and '_', got {tag!r}")
        return self.model_copy(update={"app_id": tag, "topic_prefix": f"{tag}.", "milvus_collection_prefix": f"{tag}_"})

    def as_env(self) -> dict[str, str]:
        """These settings as SAIL_* variables, to hand to a child process (secrets included: keep the
        result out of logs)."""
        env = {}
        for name, value in self:
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"SAIL_{name.upper()}"] = str(value)
        return env

    def secret_values(self) -> list[str]:
        """Every secret in clear (and the password part of a `user:password` token), to redact."""
        values = [v.get_secret_value() for _, v in self if isinstance(v, SecretStr)]
        return values + [v.split(":", 1)[1] for v in values if ":" in v]

    @property
    def milvus_token_value(self) -> str | None:
        """The Milvus token in clear, for the Milvus client only (never log it)."""
        return self.milvus_token.get_secret_value() if self.milvus_token else None

    def milvus_tls(self) -> TlsFiles | None:
        """TLS for the Milvus client: an https:// URI or any TLS file turns it on."""
        files = (self.milvus_tls_ca_file, self.milvus_tls_cert_file, self.milvus_tls_key_file)
        if not (self.milvus_uri.startswith("https://") or any(files)):
            return None
        return TlsFiles(*files, server_name=self.milvus_tls_server_name)

    def triton_tls(self) -> TlsFiles | None:
        """TLS for the Triton client: a grpcs:// URL or any TLS file turns it on."""
        files = (self.triton_tls_ca_file, self.triton_tls_cert_file, self.triton_tls_key_file)
        if not (self.triton_url.startswith("grpcs://") or any(files)):
            return None
        return TlsFiles(*files)

    @property
    def milvus_embedded(self) -> bool:
        """True when the URI names a Milvus Lite file opened in-process (one process only)."""
        return self.milvus_uri.endswith(".db")

    @property
    def triton_grpc_address(self) -> str:
        host, port = host_port(self.triton_url)
        return f"{host}:{port}"


def load_settings(env_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings with precedence `overrides` > `SAIL_*` environment > `env_file` (dotenv) > defaults.

    Raises:
        FileNotFoundError: `env_file` is given but missing.
        pydantic.ValidationError: a value is invalid; the message names the setting.
    """
    if env_file is not None and not env_file.is_file():
        raise FileNotFoundError(f"settings file {env_file} does not exist")
    # `_env_file` is pydantic-settings' own init argument, which the class signature does not declare
    return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
