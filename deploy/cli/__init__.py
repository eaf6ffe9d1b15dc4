"""The `sail-stream` command line, the composition root above `deploy/` and `streams/`: it loads the
settings once and passes values down. One module per command group: `services` (stack, worker,
recall), `traffic` (demo, produce, replay), `models` (train, reembed, sid), `ops` (lag, topology,
settings); `common` holds what they share."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from deploy.cli import models, ops, services, traffic
from streams.ops import redact
from topology.settings import load_settings

DESCRIPTION = """\
sail-stream keeps a recommender's embeddings fresh: Faust agents read new content and user
interactions from Kafka, encode items with a Triton-served SAIL encoder, refresh user-interest
vectors, and upsert both into Milvus.

Settings come from SAIL_* environment variables (e.g. SAIL_KAFKA_BOOTSTRAP) or a dotenv file given
with --settings; `sail-stream settings` prints the effective values."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sail-stream", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--settings", type=Path, metavar="FILE", help="dotenv file with SAIL_* settings (environment variables win)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (services, traffic, models, ops):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        settings = load_settings(
            args.settings, **({"kafka_brokers": args.kafka_brokers} if getattr(args, "kafka_brokers", None) else {})
        )
    except ValidationError as exc:  # explained without the input values, which may hold secrets
        problems = "\n".join(
            f"  {'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        print(f"sail-stream: invalid settings:\n{problems}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"sail-stream: invalid settings: {exc}", file=sys.stderr)
        return 2
    redact.install(settings.secret_values())
    return int(args.func(settings, args))


if __name__ == "__main__":
    sys.exit(main())
