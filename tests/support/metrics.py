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


def histogram_quantile(text: str, name: str, q: float) -> float | None:
    """The upper bound of the first bucket of histogram `name` holding at least `q` of its count (the
    bucket estimate Prometheus's own histogram_quantile interpolates within); None with no samples."""
    buckets = sorted(
        (float(s.labels["le"]), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == f"{name}_bucket"
    )
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    return next(le for le, count in buckets if count >= q * total)
