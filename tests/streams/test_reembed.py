"""The re-embed backfill's pure parts: naming after the model version, the rate cap, the ETA."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.reembed import TokenBucket, eta, shadow_items, version_slug
from topology.settings import Settings


def test_versions_name_collections_and_groups_with_milvus_safe_characters() -> None:
    assert version_slug("sail-tiny-cre-8927e6b833d2") == "sail_tiny_cre_8927e6b833d2"
    assert version_slug("a.b/c:1") == "a_b_c_1"
    with pytest.raises(ValueError, match="no letter or digit"):
        version_slug("-./")
    spec = shadow_items(Settings(milvus_collection_prefix="p_", state_dir=Path("/tmp")), "m-1", dim=256)
    assert spec.name == "p_items__m_1" and spec.dim == 256  # the new model's width, whatever the live one's
    assert [f.name for f in spec.fields] == [f.name for f in Settings(milvus_collection_prefix="p_").collections()[0].fields]


def test_the_token_bucket_holds_the_average_rate_after_one_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10.0, burst=8, clock=lambda: now[0])
    assert bucket.wait_s(8) == 0.0  # the first batch goes at once
    assert bucket.wait_s(8) == pytest.approx(0.8)  # the next waits for 8 tokens at 10/s
    now[0] = 0.8
    assert bucket.wait_s(4) == pytest.approx(0.4)
    assert TokenBucket(rate=0, burst=8).wait_s(10_000) == 0.0  # no cap


def test_eta_reads_like_a_progress_line() -> None:
    assert eta(100, 1000, 10.0) == "1m30s"
    assert eta(990, 1000, 10.0) == "1s"
    assert eta(0, 1000, 0.0) == "?"
