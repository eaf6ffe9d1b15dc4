"""`sail-stream import items` on the real stack (Milvus Lite, and Triton for the live model version):
a catalogue's vectors imported in pages, an interrupted import resumed where it stopped, bad rows
rejected with their reason while the rows around them go in, and a file of another encoder refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from deploy.local.stack import Stack
from encoders.client import EncoderClient
from streams.lifecycle.catalogue import CatalogueError, Checkpoint, file_key, import_items
from streams.lifecycle.reembed import PROBE
from streams.sinks.milvus import MilvusSink
from tests.support.streaming import milvus_rows
from topology.collections import VECTOR_FIELD
from topology.settings import Settings

pytestmark = pytest.mark.integration


class Interrupted(Exception):
    pass


def _live_model_version(s: Settings) -> str:
    async def go() -> str:
        encoder = EncoderClient.for_settings(s)
        await encoder.start()
        try:
            (probe,) = await encoder.encode([PROBE])
            return probe.model_version
        finally:
            await encoder.close()

    return asyncio.run(go())


def _cli(s: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", "import", "items", *args],
        env={**os.environ, **s.as_env()},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_catalogue_is_imported_resumed_after_an_interruption_and_its_bad_rows_rejected(
    stack: Stack, settings: Settings, tmp_path: Path
) -> None:
    tag = f"imp{uuid.uuid4().hex[:6]}"
    s = settings.namespaced(tag).model_copy(update={"state_dir": tmp_path / "state"})
    items, _ = s.collections()
    version = _live_model_version(s)
    rng = np.random.default_rng(7)
    n, bad = 600, {5: "it's-5", 350: "zero", 599: "nan"}
    ids = np.array([bad.get(i, f"{tag}-item-{i}") for i in range(n)])
    vectors = rng.normal(size=(n, items.dim)).astype(np.float32) * 3.0  # not unit length: the import normalises
    vectors[350] = 0.0
    vectors[599, 0] = np.nan
    path = tmp_path / "catalogue.npz"
    np.savez(path, item_id=ids, embedding=vectors, model_version=version)

    # An import stopped after its third page (a crash after the checkpoint of rows 0..299 was saved)...
    said: list[str] = []

    def stop_after_three(line: str) -> None:
        said.append(line)
        if len(said) == 3:
            raise Interrupted(line)

    with pytest.raises(Interrupted):
        asyncio.run(import_items(s, path, batch=100, progress=stop_after_three, every_s=0.0))
    assert Checkpoint(s.state_dir / "import", file_key(path, items.name)).done() == 300
    # ...is resumed by the command where it stopped: the rest imported, the two bad rows left rejected
    done = _cli(s, str(path), "--batch", "100")
    assert done.returncode == 1, done.stdout + done.stderr  # 1: some rows rejected
    assert "resuming catalogue.npz at row 300 of 600" in done.stdout
    assert "imported 298 rows" in done.stdout and "resumed at row 300" in done.stdout, done.stdout

    good = [str(i) for k, i in enumerate(ids) if k not in bad]
    rows = milvus_rows(s, items.name, good, ["model_version", VECTOR_FIELD])
    assert len(rows) == len(good) == 597  # every good row, of both runs
    for k in (0, 299, 300, 598):
        row = rows[str(ids[k])]
        assert row["model_version"] == version
        assert np.allclose(row[VECTOR_FIELD], vectors[k] / np.linalg.norm(vectors[k]), atol=1e-6)
    rejects = Checkpoint(s.state_dir / "import", file_key(path, items.name)).rejects.read_text().splitlines()
    assert len(rejects) == 3 and all(name in "".join(rejects) for name in ("it's-5", "zero", "nan"))
    assert "may not contain '" in rejects[0] and "not finite or all zero" in rejects[1]

    # The imported items are searchable as any stored item: each is its own nearest neighbour
    async def nearest() -> list[str]:
        sink = MilvusSink.for_settings(s)
        await sink.start()
        try:
            queries = np.stack([vectors[k] / np.linalg.norm(vectors[k]) for k in (1, 400)]).astype(np.float32)
            hits = await sink.search(items.name, queries, limit=1, vector_field=VECTOR_FIELD, consistency="Strong")
            return [h[0].id for h in hits]
        finally:
            await sink.close()

    assert asyncio.run(nearest()) == [str(ids[1]), str(ids[400])]

    # A rerun finds nothing left; vectors of another encoder are refused before anything is written
    again = _cli(s, str(path))
    assert again.returncode == 0 and "imported 0 rows" in again.stdout, again.stdout + again.stderr
    other = tmp_path / "other.npz"
    np.savez(other, item_id=np.array([f"{tag}-x"]), embedding=np.ones((1, items.dim)), model_version="another-encoder")
    refused = _cli(s, str(other))
    assert refused.returncode == 2 and f"the vectors are from another-encoder but the live version is {version}" in refused.stderr
    with pytest.raises(CatalogueError, match="wide"):
        narrow = tmp_path / "narrow.npz"
        np.savez(narrow, item_id=np.array([f"{tag}-y"]), embedding=np.ones((1, 3)), model_version=version)
        asyncio.run(import_items(s, narrow))
    assert not milvus_rows(s, items.name, [f"{tag}-x", f"{tag}-y"], ["model_version"])
