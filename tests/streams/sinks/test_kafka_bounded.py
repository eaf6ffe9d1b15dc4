"""kafka-python calls a running worker repeats are bounded in time (`streams.sinks.kafka._bounded`)."""

from __future__ import annotations

import threading

import pytest

from streams.sinks.kafka import BrokerUnavailable, _bounded


def test_a_call_that_never_returns_becomes_broker_unavailable() -> None:
    release = threading.Event()
    try:
        with pytest.raises(BrokerUnavailable, match="group offsets: no answer within 0s"):
            _bounded(release.wait, 0.2, "group offsets")
    finally:
        release.set()


def test_a_result_or_an_error_of_the_call_comes_back_as_it_is() -> None:
    assert _bounded(lambda: {"t": {0: (1, 2)}}, 5.0, "group offsets") == {"t": {0: (1, 2)}}
    with pytest.raises(KeyError):
        _bounded(lambda: {}["missing"], 5.0, "group offsets")
