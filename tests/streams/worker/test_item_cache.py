"""The worker's item-vector LRU: per collection, bounded, a lookup keeps an item in it."""

import numpy as np

from streams.worker.items import ItemCache


def test_get_many_finds_per_collection_and_keeps_what_it_found() -> None:
    cache = ItemCache(3)
    for item in ("a", "b", "c"):
        cache.put("items_v1", item, np.full(2, ord(item), dtype=np.float32))
    found, missing = cache.get_many("items_v1", ["a", "x", "b"])
    assert sorted(found) == ["a", "b"] and missing == ["x"]
    assert found["a"][0] == ord("a")
    assert cache.get_many("items_v2", ["a"]) == ({}, ["a"])  # another version's collection: not cached
    cache.put("items_v1", "d", np.zeros(2, dtype=np.float32))  # evicts the least recently used: c
    assert cache.get_many("items_v1", ["a", "b", "c"])[1] == ["c"]
