"""Offline validation of the custom resources in deploy/k8s (Strimzi, KEDA, prometheus-operator).

The CRD schemas come compiled in the npm packages `@kubernetes-models/strimzi-kafka-operator`,
`@kubernetes-models/keda` and `@kubernetes-models/prometheus-operator`, pinned with their whole
dependency tree in crd-validators/package-lock.json. They are installed once with `npm ci` into the
cache folder (about 35 MB; nothing of them is committed) and run by crd-validators/validate.mjs, which
also rejects fields the schemas do not know (see there). Core Kubernetes kinds are not checked here:
the `kubernetes-validate` package bundles their schemas (tests/deploy/test_k8s_manifests.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

VALIDATORS: Final = Path(__file__).resolve().parent / "crd-validators"
SCRIPT: Final = VALIDATORS / "validate.mjs"
PINNED: Final = ("package.json", "package-lock.json")
GROUPS: Final = frozenset({"kafka.strimzi.io", "keda.sh", "monitoring.coreos.com"})  # the API groups validate.mjs has schemas for


class ValidatorsMissing(RuntimeError):
    """The CRD validators could not be installed or run (Node.js or npm missing, the registry unreachable)."""


@dataclass(frozen=True, slots=True)
class Checked:
    """One custom resource and what its schema found wrong with it (nothing: valid)."""

    kind: str
    name: str
    errors: tuple[str, ...]


def is_custom_resource(document: dict[str, Any]) -> bool:
    """True for the kinds whose schemas validate.mjs has."""
    return str(document.get("apiVersion", "")).split("/")[0] in GROUPS


def fetch_validators(cache_dir: Path, progress: Callable[[str], None] = lambda line: None) -> Path:
    """The node_modules folder of the pinned validators in `cache_dir`, installed with `npm ci` on
    first use; a new pin (another package-lock.json) installs into a folder of its own.

    Raises:
        ValidatorsMissing: npm is not installed or the install failed.
    """
    digest = hashlib.sha256(b"".join((VALIDATORS / name).read_bytes() for name in PINNED)).hexdigest()[:16]
    target = cache_dir / "k8s-schemas" / digest
    if (target / "node_modules" / ".package-lock.json").exists():
        return target / "node_modules"
    npm = shutil.which("npm")
    if npm is None:
        raise ValidatorsMissing(
            "npm is needed once to fetch the CRD schemas of Strimzi, KEDA and the prometheus-operator (apt-get install npm)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(f"installing the CRD validators ({VALIDATORS / 'package.json'}) into {target} (once, ~35 MB) ...")
    staging = Path(tempfile.mkdtemp(prefix=f"{digest}.", dir=target.parent))
    try:
        for name in PINNED:
            shutil.copyfile(VALIDATORS / name, staging / name)
        # --ignore-scripts: nothing of the packages runs at install. Their engines field asks for Node 22;
        # npm only warns, and the validators run on Node 20 (checked).
        command = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"]
        result = subprocess.run(command, cwd=staging, capture_output=True, text=True, check=False, timeout=600)
        if result.returncode != 0:
            raise ValidatorsMissing(f"npm ci of the CRD validators failed:\n{(result.stdout + result.stderr)[-2000:]}")
        staging.chmod(0o755)  # mkdtemp's 0700 would keep the cache from other users of the folder
        if target.exists() and not (target / "node_modules" / ".package-lock.json").exists():
            shutil.rmtree(target)  # left by an install that was killed
        try:
            staging.rename(target)  # atomic: a concurrent install that finished first wins, this one is dropped
        except OSError:
            if not (target / "node_modules" / ".package-lock.json").exists():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target / "node_modules"


def validate_custom_resources(
    documents: Sequence[dict[str, Any]], cache_dir: Path, progress: Callable[[str], None] = lambda line: None
) -> list[Checked]:
    """Each of `documents` checked against its CRD schema (types, enums, required and unknown fields),
    in order; a kind without a schema there comes back with an error saying so.

    Raises:
        ValidatorsMissing: Node.js or npm is missing, or the validators could not be installed or run.
    """
    modules = fetch_validators(cache_dir, progress)
    node = shutil.which("node")
    if node is None:
        raise ValidatorsMissing("Node.js is needed to run the CRD validators (apt-get install nodejs)")
    command = [node, str(SCRIPT), str(modules)]
    result = subprocess.run(command, input=json.dumps(list(documents)), capture_output=True, text=True, check=False, timeout=300)
    if result.returncode != 0:
        raise ValidatorsMissing(f"{SCRIPT.name} failed:\n{result.stderr[-2000:]}")
    return [Checked(r.get("kind") or "", r.get("name") or "", tuple(r["errors"])) for r in json.loads(result.stdout)]
