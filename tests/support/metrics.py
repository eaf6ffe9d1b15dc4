"""Reading a Prometheus page (prometheus-client's own parser), for tests and benchmarks."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str, timeout_s: float = 5.0) -> str:
    """The text of a Prometheus page (a worker's or Triton's /metrics)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` (or `name`_total: the parser names counters so) whose
    labels include `labels`; 0.0 when there is none."""
    names = (name, f"{name}_total")
    return float(
        sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name in names and all(s.labels.get(k) == v for k, v in labels.items())
        )
    )
