"""Model versions and the registry that names the live one (issue 17).

Every `model_version` has its own pair of collections, so a search can never meet vectors of two
versions. The registry is one row of a small Milvus collection: which version is *live* (the one
workers write and recall services search), which one a re-embed is building (*shadow*), and which one
a swap replaced (*previous*, kept for a rollback until `keep_until_ms`). A swap is one upsert of that
row: a reader sees the old registry or the new one, never half of each.

Each version also names the Triton that encodes for it (`triton_url`; "" = the workers' own
SAIL_TRITON_URL), so workers switch encoder and collections together when the live version changes.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from typing import Final

from topology.collections import CollectionSpec, FieldSpec, codebook_collection

REGISTRY: Final = "registry"
REGISTRY_KEY: Final = "model-versions"  # the one row
_STATE_CHARS: Final = 16384


@dataclass(frozen=True, slots=True)
class Version:
    """One model version: its collections, their vector width, and the Triton that encodes for it."""

    model_version: str  # "" = not known (a deployment from before the registry: whatever its encoder is)
    items: str
    users: str
    dim: int
    triton_url: str = ""  # "" = the workers' own SAIL_TRITON_URL
    codebook: str = ""  # the semantic-ID codebook workers assign with (`sail-stream sid fit`); "" = none

    def specs(self, items: CollectionSpec, users: CollectionSpec) -> tuple[CollectionSpec, CollectionSpec]:
        """`items` and `users` (the settings' specs) renamed and re-widened to this version's."""
        return named(items, self.items, self.dim), named(users, self.users, self.dim)

    def codebooks(self) -> CollectionSpec:
        """This version's semantic-ID codebooks collection."""
        return codebook_collection(self.items, self.dim)


@dataclass(frozen=True, slots=True)
class Registry:
    live: Version
    shadow: Version | None = None  # being built by `sail-stream reembed`
    previous: Version | None = None  # what the last swap replaced, kept for a rollback
    swapped_at_ms: int = 0
    keep_until_ms: int = 0  # the previous version's collections may be dropped after this
    generation: int = 0  # +1 per write: readers can tell a change at a glance

    def encode(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        if len(text.encode()) > _STATE_CHARS:
            raise ValueError(f"the model-version registry is {len(text.encode())} bytes, over {_STATE_CHARS}")
        return text

    @classmethod
    def decode(cls, text: str) -> Registry:
        """Raises: ValueError (not a registry this release can read)."""
        try:
            data = json.loads(text)
            versions = {name: Version(**data[name]) if data.get(name) else None for name in ("live", "shadow", "previous")}
            live = versions.pop("live")
            if live is None:
                raise ValueError("no live version")
            return cls(
                live=live,
                **versions,
                swapped_at_ms=int(data["swapped_at_ms"]),
                keep_until_ms=int(data["keep_until_ms"]),
                generation=int(data["generation"]),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"unreadable model-version registry: {exc}") from exc

    def with_shadow(self, shadow: Version) -> Registry:
        return replace(self, shadow=shadow, generation=self.generation + 1)

    def swapped_to(self, version: Version, now_ms: int, keep_ms: int) -> Registry:
        """`version` live; the live one kept as the previous until `now_ms + keep_ms`; no shadow."""
        return Registry(
            live=version,
            shadow=None,
            previous=self.live,
            swapped_at_ms=now_ms,
            keep_until_ms=now_ms + keep_ms,
            generation=self.generation + 1,
        )

    def with_codebook(self, codebook_id: str) -> Registry:
        """The live version assigning semantic IDs with `codebook_id` from now on."""
        return replace(self, live=replace(self.live, codebook=codebook_id), generation=self.generation + 1)

    def retired(self) -> Registry:
        return replace(self, previous=None, keep_until_ms=0, generation=self.generation + 1)


def version_slug(model_version: str) -> str:
    """`model_version` as a Milvus name part and a consumer group suffix (letters, digits, '_')."""
    slug = re.sub(r"[^A-Za-z0-9_]", "_", model_version).strip("_")
    if not slug:
        raise ValueError(f"model version {model_version!r} has no letter or digit to name a collection after")
    return slug[:120]


def named(spec: CollectionSpec, name: str, dim: int) -> CollectionSpec:
    """`spec` under another name, its vector field `dim` wide."""
    return replace(spec, name=name, fields=tuple(replace(f, dim=dim) if f.name == spec.vector_field else f for f in spec.fields))


def shadow(spec: CollectionSpec, model_version: str, dim: int) -> CollectionSpec:
    """`spec`'s collection for `model_version`, beside the live one: `<name>__<version>`, `dim` wide."""
    return named(spec, f"{spec.name}__{version_slug(model_version)}", dim)


def default_registry(items: CollectionSpec, users: CollectionSpec) -> Registry:
    """What a deployment without a registry row runs: the settings' collections, the workers' encoder."""
    return Registry(live=Version("", items.name, users.name, items.dim))


def registry_collection(prefix: str) -> CollectionSpec:
    """The registry's collection: a key, the registry as JSON, and the 2-wide vector Milvus requires."""
    return CollectionSpec(
        name=f"{prefix}{REGISTRY}",
        fields=(
            FieldSpec("key", "varchar", max_length=64, is_primary=True),
            FieldSpec("state", "varchar", max_length=_STATE_CHARS),
            FieldSpec("embedding", "float_vector", dim=2),
        ),
        vector_field="embedding",
        description="sail-stream model-version registry (one row)",
    )


def registry_row(registry: Registry) -> dict[str, object]:
    return {"key": REGISTRY_KEY, "state": registry.encode(), "embedding": [1.0, 0.0]}
