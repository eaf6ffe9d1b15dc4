"""What every command group of `sail-stream` shares: output, argument types, quiet probes, and the
collections a long-running command makes sure exist before it starts."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any, Protocol

from topology.settings import Settings


class SubParsers(Protocol):
    """What a command group's `register` gets: argparse's sub-parser action."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def at_least(low: float, kind: type) -> Callable[[str], Any]:
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


def say(line: str) -> None:
    print(line, flush=True)


def quiet_probes(verbose: bool) -> None:
    """Health probes fail on purpose while services boot; keep the client libraries' retry noise out."""
    if not verbose:
        for noisy in ("kafka", "pymilvus"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)


def create_registry(settings: Settings, who: str) -> bool:
    """Create the model-version registry's collection if Milvus lacks it (one row, written by
    `sail-stream reembed` and `sid fit`), so that reading it every SAIL_VERSION_REFRESH_S finds an empty
    collection rather than an error, and the settings' collections likewise; Milvus down: reported, and
    the default version (the settings') runs. False (reported): a collection made by an older release
    lacks fields this one writes (every write would be refused)."""
    from streams.sinks.milvus import MilvusUnavailable, SchemaMismatch, ensure_collections

    try:
        ensure_collections(
            settings.milvus_uri,
            settings.milvus_token_value,
            [settings.registry()[0], *settings.stored_collections()],
            settings.milvus_backend,
            timeout_s=5.0,
            tls=settings.milvus_tls(),
        )
    except MilvusUnavailable as exc:
        print(
            f"sail-stream {who}: could not check the model-version registry ({str(exc).splitlines()[0][:200]}); starting with "
            "the settings' collections",
            file=sys.stderr,
        )
    except SchemaMismatch as exc:
        print(f"sail-stream {who}: {exc}", file=sys.stderr)
        return False
    return True
