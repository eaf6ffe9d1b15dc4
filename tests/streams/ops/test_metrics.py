"""The encoder saturation the status page reads: the share of recent time spent waiting for a slot."""

from __future__ import annotations

import pytest

from streams.ops import metrics as metrics_module
from streams.ops.metrics import Metrics


def test_saturation_is_the_share_of_the_window_spent_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(metrics_module.time, "monotonic", lambda: clock[0])
    m = Metrics()
    waited = 0.0
    m.note_pipeline_full(waited)
    assert m.saturation() is None  # one sample says nothing yet
    for _ in range(12):
        clock[0] += 5.0
        waited += 4.5  # waited 4.5 s of every 5 s
        m.note_pipeline_full(waited)
    assert m.saturation() == pytest.approx(0.9)
    for _ in range(12):
        clock[0] += 5.0
        m.note_pipeline_full(waited)  # the overload ended
    assert m.saturation() == pytest.approx(0.0)
    assert b"sail_content_pipeline_full_seconds_total 54.0" in m.exposition()
