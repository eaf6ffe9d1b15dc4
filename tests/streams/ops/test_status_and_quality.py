"""The status page's charts and quality line, and the online hit rate's sampling and hit rule (pure)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from streams.collab.maths import CollabParams, fused_scores
from streams.interest.maths import InterestParams, apply_interaction
from streams.ops.quality import Probe, hits, in_top, probe, sampled
from streams.ops.status import chart, render_status
from streams.sinks.milvus import Hit
from topology.messages import Action, Interaction, InterestState


def _status(trend: dict[str, list[float | None]], online: dict[str, object]) -> dict[str, object]:
    return {
        "verdict": "healthy",
        "reasons": [],
        "lag": [],
        "freshness_s": {},
        "events_per_s": {},
        "dead_letters": {},
        "dependencies": {},
        "online_hit_rate": online,
        "trend": trend,
    }


def test_the_page_draws_a_chart_per_trend_and_says_the_hit_rate() -> None:
    at = [1000.0 + 5 * i for i in range(13)]
    trend = {
        "at_s": at,
        "lag_messages": [0, 5, 50, 120, 80, 10, 0, 0, 0, 0, 0, 0, 0],
        "freshness_p50_s": [None] * 3 + [0.4] * 10,
        "freshness_p99_s": [None] * 3 + [1.5] * 10,
        "events_per_s": [100.0] * 13,
        "online_hit_rate": [None] * 12 + [0.25],
    }
    page = render_status(_status(trend, {"k": 50, "rate": 0.25, "checks": 40}), "w", refresh_s=5)
    for chart_id in ("chart-lag", "chart-freshness", "chart-throughput", "chart-hit-rate"):
        assert f"id={chart_id}>" in page
    lag = re.search(r'id="svg-chart-lag".*?points="([^"]+)"', page)
    assert lag is not None and len(lag.group(1).split()) == 13  # one point per sample
    ys = [float(p.split(",")[1]) for p in lag.group(1).split()]
    assert min(ys) == ys[3]  # the peak (120) is the highest point drawn (SVG y grows downwards)
    assert "Consumer lag, messages (last 1 min): lag 0" in page and "120" in page
    assert "online hit rate @50: 25.0% of the last 40 sampled" in page
    assert "<script" not in page and "http" not in page.split("<body>")[1].split("JSON at")[0]  # self-contained


def test_unknown_values_leave_a_gap_and_an_empty_trend_says_so() -> None:
    svg = chart("c", "x", [0.0, 1.0, 2.0, 3.0], [("v", "#000", [1.0, None, 2.0, 3.0])], "")
    assert svg.count("<polyline") == 2  # [1.0] and [2.0, 3.0]: not joined across the gap
    assert "no data yet" in chart("c", "x", [0.0, 1.0], [("v", "#000", [None, None])], "")
    page = render_status(_status({}, {"k": 50, "rate": None, "checks": 0}), "w", refresh_s=5)
    assert "no samples yet" in page and "no sampled interaction checked yet" in page


def test_the_page_names_the_live_version_and_the_one_kept_for_a_rollback() -> None:
    status = _status({}, {"k": 50, "rate": None, "checks": 0})
    status["model_versions"] = {
        "live": {"model_version": "m-2", "items": "items__m_2", "users": "users__m_2"},
        "shadow": None,
        "previous": {"model_version": "m-1", "items": "items", "users": "users"},
    }
    page = render_status(status, "w", refresh_s=5)
    assert (
        "live (written and searched): m-2 in items__m_2, users__m_2" in page
        and "previous (kept for a rollback): m-1 in items, users" in page
    )
    assert "shadow" not in page.split("id=versions>")[1].split("</ul>")[0]
    assert "not known yet" in render_status(_status({}, {"k": 50, "rate": None, "checks": 0}), "w", refresh_s=5)


def test_the_page_shows_the_codebook_its_health_and_a_drift_warning() -> None:
    status = _status({}, {"k": 50, "rate": None, "checks": 0})
    assert "no codebook in use" in render_status(status, "w", refresh_s=5)
    status["semantic_ids"] = {
        "codebook": "m_sid3x256_1",
        "levels": 3,
        "codes": 256,
        "fitted_items": 9000,
        "utilisation": [1.0, 0.98, 0.5],
        "collision_rate": 0.012,
        "quantisation_error": 0.31,
        "fresh_quantisation_error": 0.42,
        "drift_ratio": 1.35,
        "drifting": True,
        "fresh_items": 500,
    }
    section = render_status(status, "w", refresh_s=5).split("id=semantic-ids>")[1].split("</ul>")[0]
    assert "codebook m_sid3x256_1: 3 levels x 256 codes, fitted on 9000 items" in section
    assert "L0: 100%, L1: 98%, L2: 50%" in section and "collision rate 1.2%" in section
    assert (
        "<li class=down>fresh items' quantisation error 0.4200 (1.35x the fitted) over the last 500: the codebook needs refitting"
        in section
    )


def test_sampling_is_a_stable_share_of_event_ids() -> None:
    ids = [f"event-{n}" for n in range(20_000)]
    picked = [i for i in ids if sampled(i, 0.05)]
    assert 0.04 < len(picked) / len(ids) < 0.06
    assert picked == [i for i in ids if sampled(i, 0.05)]  # the same events every time (replays, other workers)
    assert not any(sampled(i, 0.0) for i in ids[:1000]) and all(sampled(i, 1.0) for i in ids[:1000])


def test_a_probe_needs_a_positive_sampled_event_and_a_user_with_vectors() -> None:
    params = InterestParams()
    vectors = {"a": np.array([1.0, 0.0], dtype=np.float32), "b": np.array([0.0, 1.0], dtype=np.float32)}
    like = Interaction("e1", "u", "b", Action.LIKE, 1000)
    assert probe(like, InterestState(), vectors, params, share=1.0) is None  # no vector before the event
    state = apply_interaction(InterestState(), Interaction("e0", "u", "a", Action.LIKE, 500), params)
    got = probe(like, state, vectors, params, share=1.0)
    assert got is not None and got.item_id == "b" and got.exclude == frozenset({"a"}) and got.vectors.shape == (1, 2)
    assert probe(Interaction("e2", "u", "b", Action.DISLIKE, 1000), state, vectors, params, share=1.0) is None
    assert probe(like, state, vectors, params, share=0.0) is None


def test_a_hit_is_the_item_in_the_top_k_over_slots_without_the_users_window() -> None:
    two_slots = Probe("target", np.zeros((2, 2), dtype=np.float32), frozenset({"seen"}))
    one_slot = Probe("target", np.zeros((1, 2), dtype=np.float32), frozenset())
    results = [
        [Hit("seen", 0.99, {}), Hit("x", 0.9, {}), Hit("target", 0.5, {})],  # slot 0 of the first probe
        [Hit("target", 0.95, {}), Hit("y", 0.1, {})],  # slot 1: target's best score 0.95 -> first
        [Hit("x", 0.9, {}), Hit("y", 0.8, {}), Hit("target", 0.7, {})],  # the second probe: third
    ]
    assert hits([two_slots, one_slot], results, k=1) == [True, False]
    assert hits([two_slots, one_slot], results, k=3) == [True, True]


def test_the_page_says_when_kafka_partitions_are_under_replicated_or_offline() -> None:
    from dataclasses import asdict

    from streams.sinks.kafka import PartitionReplicas

    status = _status({}, {"k": 50, "rate": None, "checks": 0})
    assert "id=replicas" not in render_status(status, "w", refresh_s=5)  # no sample yet: nothing claimed
    status["replicas"] = {"partitions": 12, "under_replicated": []}
    assert "<li class=up id=replicas>Kafka replicas: all 12 partitions fully in sync</li>" in render_status(
        status, "w", refresh_s=5
    )
    short = [PartitionReplicas("a.uploads", 0, 1, (1, 2, 3), (1, 2)), PartitionReplicas("a.uploads", 1, -1, (2, 3, 1), ())]
    status["replicas"] = {"partitions": 12, "under_replicated": [asdict(p) for p in short]}
    line = render_status(status, "w", refresh_s=5).split("id=replicas>")[1].split("</li>")[0]
    assert line == (
        "Kafka replicas: 2 of 12 partitions under-replicated, 1 without a leader "
        "(in sync/assigned: a.uploads[0] 2/3, a.uploads[1] 0/3)"
    )


def test_a_probe_carries_the_users_collaborative_positives_and_excludes_them() -> None:
    params = InterestParams()
    vectors = {"a": np.array([1.0, 0.0], dtype=np.float32), "b": np.array([0.0, 1.0], dtype=np.float32)}
    state = apply_interaction(InterestState(), Interaction("e0", "u", "a", Action.LIKE, 500), params)
    got = probe(Interaction("e1", "u", "b", Action.LIKE, 1000), state, vectors, params, share=1.0, collab=CollabParams())
    assert got is not None and got.collab == (("a", 1.0),) and "a" in got.exclude


def test_the_fused_score_is_collab_over_its_best_plus_the_weighted_content_score() -> None:
    fused = fused_scores({"x": 4.0, "y": 2.0}, {"y": 0.5, "z": 0.9}, content_weight=0.1)
    assert fused == pytest.approx({"x": 1.0, "y": 0.55, "z": 0.09})
    assert fused_scores({}, {"z": 0.9}, 0.1) == pytest.approx({"z": 0.09})  # no collaborative vector: content alone
    assert in_top("y", fused, k=2) and not in_top("z", fused, k=2)


def test_the_page_lists_every_channels_hit_rate_and_names_the_served_one() -> None:
    online = {
        "k": 50,
        "rate": 0.3,
        "checks": 40,
        "channel": "fused",
        "channels": {
            "dense": {"rate": 0.1, "checks": 40},
            "collab": {"rate": None, "checks": 0},
            "fused": {"rate": 0.3, "checks": 40},
        },
    }
    page = render_status(_status({}, online), "w", refresh_s=5)
    assert "(channel fused); per recall channel:" in page
    assert "<li>dense: 10.0% of 40</li>" in page and "<li>collab: none checked yet</li>" in page
    assert "<li>fused (served): 30.0% of 40</li>" in page
