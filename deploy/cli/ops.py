"""`sail-stream lag | topology | settings`: what an operator reads: consumer lag, the deployment's manifests, the settings."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from deploy.cli.common import SubParsers, quiet_probes, say
from topology.settings import Settings


def cmd_lag(settings: Settings, args: argparse.Namespace) -> int:
    from streams.ops.lag import format_json, format_table, read_lag
    from streams.sinks.kafka import BrokerUnavailable

    quiet_probes(args.verbose)
    topics = settings.topics()
    names = (
        args.topics.split(",")
        if args.topics
        else [topics.uploads.name, topics.interactions.name, topics.interactions_retry.name, topics.item_embeddings.name]
    )
    group = args.group or settings.app_id
    while True:
        try:
            rows = read_lag(settings.kafka_bootstrap, settings.kafka_security(), group, names, now_ms=int(time.time() * 1000))
        except BrokerUnavailable as exc:
            print(f"sail-stream lag: {exc}", file=sys.stderr)
            return 1
        say(format_json(rows) if args.json else format_table(rows))
        if not args.watch:
            return 0
        time.sleep(args.watch)
        say("")


def cmd_topology(settings: Settings, args: argparse.Namespace) -> int:
    import yaml

    from deploy.k8s.manifests import DeployOptions, render, write
    from deploy.k8s.topics import kafka_topics

    if args.format == "strimzi":
        print(yaml.safe_dump_all(kafka_topics(settings, args.cluster, args.namespace), sort_keys=False), end="")
        return 0
    if args.out is None:
        print(
            "sail-stream topology export: --format kubernetes writes a folder of manifests: give it with --out DIR",
            file=sys.stderr,
        )
        return 2
    chosen = {"namespace": args.namespace, "image": args.image}
    try:
        options = DeployOptions(cluster=args.cluster, **{k: v for k, v in chosen.items() if v})
        paths = write(render(settings, options), args.out)
    except ValueError as exc:
        print(f"sail-stream topology export: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        say(str(path))
    say(
        f"apply with: kubectl apply -k {args.out}   (install the operators and create the Secrets first: see "
        "deploy/k8s/README.md)"
    )
    return 0


def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    values = settings.model_dump(mode="json")  # SecretStr dumps as '**********'
    if args.json:
        say(json.dumps(values, indent=2))
    else:
        for key, value in values.items():
            say(f"SAIL_{key.upper()}={'' if value is None else value}")
    return 0


def register(sub: SubParsers) -> None:
    """Add this group's commands to `sail-stream`."""
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
        "rules and Grafana dashboard, and a kustomization.yaml; "
        "deploy/k8s/README.md says which operators and Secrets come first.",
    )
    topology.add_argument("action", choices=("export",))
    topology.add_argument(
        "--format",
        default="strimzi",
        choices=("strimzi", "kubernetes"),
        help="strimzi: the KafkaTopic resources on stdout; kubernetes: every manifest of a deployment, written to --out",
    )
    topology.add_argument(
        "--cluster", default="sail", help="the Strimzi Kafka cluster's name (label strimzi.io/cluster; default sail)"
    )
    topology.add_argument(
        "--namespace",
        help="metadata.namespace of every resource (strimzi default: none, kubectl's; kubernetes default: sail-stream)",
    )
    topology.add_argument("--out", type=Path, metavar="DIR", help="kubernetes: the folder the manifests are written to")
    topology.add_argument(
        "--image", help="kubernetes: the project's container image for the workers and Triton (default sail-stream:0.1.0)"
    )
    topology.set_defaults(func=cmd_topology)

    show = sub.add_parser(
        "settings", help="print the effective settings (secrets masked)", description="Print every setting as SAIL_* lines."
    )
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_settings)
