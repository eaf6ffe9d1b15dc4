"""What a worker knows about the pipeline's health: a lag window per partition (sampled from Kafka),
the verdict, and the status page that shows them (self-contained HTML, no external assets)."""

from __future__ import annotations

import asyncio
import html
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from streams.ops.health import LagSample, Thresholds, Verdict, evaluate
from streams.ops.lag import PartitionLag, read_lag
from streams.ops.metrics import Metrics
from topology.settings import KafkaSecurity


class LagWatch:
    """Samples the group's lag every few seconds and keeps a window per partition."""

    def __init__(self, bootstrap: str, security: KafkaSecurity, group_id: str, topics: Sequence[str], window: int = 60) -> None:
        self._args = (bootstrap, security, group_id, list(topics))
        self.history: dict[tuple[str, int], deque[LagSample]] = {}
        self.rows: list[PartitionLag] = []
        self._window = window

    async def sample(self, metrics: Metrics) -> None:
        bootstrap, security, group_id, topics = self._args
        now = time.time()
        rows = await asyncio.to_thread(read_lag, bootstrap, security, group_id, topics, int(now * 1000))
        self.rows = rows
        for r in rows:
            metrics.lag_messages.labels(r.topic, str(r.partition)).set(r.messages_behind)
            metrics.lag_seconds.labels(r.topic, str(r.partition)).set(r.seconds_behind)
            self.history.setdefault((r.topic, r.partition), deque(maxlen=self._window)).append(LagSample(now, r.committed, r.end, r.seconds_behind))

    def verdict(self, dependencies_up: Mapping[str, bool], freshness_p99_s: float | None, thresholds: Thresholds, saturation: float | None = None) -> Verdict:
        return evaluate({k: list(v) for k, v in self.history.items()}, dependencies_up, freshness_p99_s, thresholds, saturation)


def dependency_states(metrics: Metrics) -> dict[str, bool]:
    return {s.labels["dependency"]: s.value == 1 for family in metrics.dependency_up.collect() for s in family.samples}


def dead_letter_counts(metrics: Metrics) -> dict[str, int]:
    counts: dict[str, int] = {}
    for family in metrics.dead_letters.collect():
        for s in family.samples:
            if s.name.endswith("_total"):
                counts[s.labels["reason"]] = counts.get(s.labels["reason"], 0) + int(s.value)
    return counts


def status_json(watch: LagWatch, metrics: Metrics, verdict: Verdict) -> dict[str, object]:
    return {
        "verdict": verdict.status,
        "reasons": list(verdict.reasons),
        "lag": [asdict(r) for r in watch.rows],
        "freshness_s": metrics.freshness_percentiles(),
        "events_per_s": metrics.rates(),
        "dead_letters": dead_letter_counts(metrics),
        "dependencies": dependency_states(metrics),
        "encoder_saturation": metrics.saturation(),
    }


_COLOURS = {"healthy": "#1a7f37", "degraded": "#bf8700", "failing": "#cf222e"}


def render_status(status: Mapping[str, object], title: str, refresh_s: int) -> str:
    """The status page: verdict with reasons, per-partition lag, freshness, throughput, dead letters,
    dependencies. Refreshes itself every `refresh_s` seconds."""
    e = html.escape
    verdict = str(status["verdict"])
    reasons = "".join(f"<li>{e(str(r))}</li>" for r in status["reasons"])  # type: ignore[attr-defined]
    lag_rows = "".join(
        f"<tr><td>{e(r['topic'])}</td><td>{r['partition']}</td><td>{r['committed']}</td><td>{r['end']}</td>"
        f"<td class=num>{r['messages_behind']}</td><td class=num>{r['seconds_behind']:.1f}</td></tr>"
        for r in status["lag"]  # type: ignore[attr-defined]
    )
    fresh = status["freshness_s"] or {}
    fresh_cells = "".join(f"<td>{e(k)}: {v:.2f} s</td>" for k, v in fresh.items()) or "<td>no items in the last 5 minutes</td>"  # type: ignore[union-attr]
    rates = "".join(f"<li>{e(k)}: {v:.1f} events/s</li>" for k, v in status["events_per_s"].items()) or "<li>idle</li>"  # type: ignore[attr-defined]
    saturation = status.get("encoder_saturation")
    rates += f"<li>encoder saturation: {saturation:.0%} of the last minute waiting for it</li>" if isinstance(saturation, float) else ""
    dead = "".join(f"<li>{e(k)}: {v}</li>" for k, v in status["dead_letters"].items()) or "<li>none</li>"  # type: ignore[attr-defined]
    deps = "".join(f"<li class={'up' if up else 'down'}>{e(k)}: {'up' if up else 'DOWN'}</li>" for k, up in status["dependencies"].items())  # type: ignore[attr-defined]
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content="{refresh_s}">
<title>{e(title)}: {e(verdict)}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:2em;color:#1f2328}} h1{{font-size:20px}}
#verdict{{display:inline-block;padding:.3em .8em;border-radius:6px;color:#fff;background:{_COLOURS.get(verdict, "#57606a")}}}
table{{border-collapse:collapse}} td,th{{border:1px solid #d0d7de;padding:.25em .6em;text-align:left}} .num{{text-align:right}}
.up{{color:#1a7f37}} .down{{color:#cf222e;font-weight:bold}} section{{margin-top:1.2em}}
</style></head><body>
<h1>{e(title)} <span id=verdict>{e(verdict)}</span></h1>
<ul id=reasons>{reasons}</ul>
<section><h2>Dependencies</h2><ul id=dependencies>{deps}</ul></section>
<section><h2>Item freshness (upload to Milvus, last 5 min)</h2><table id=freshness><tr>{fresh_cells}</tr></table></section>
<section><h2>Throughput (last minute)</h2><ul id=throughput>{rates}</ul></section>
<section><h2>Dead letters by reason</h2><ul id=dead-letters>{dead}</ul></section>
<section><h2>Consumer lag</h2><table id=lag><tr><th>topic</th><th>partition</th><th>committed</th><th>end</th><th>messages behind</th><th>seconds behind</th></tr>{lag_rows}</table></section>
<p><small>generated {time.strftime('%Y-%m-%d %H:%M:%S')}; refreshes every {refresh_s} s; JSON at <a href="/status.json">/status.json</a>, Prometheus at <a href="/metrics">/metrics</a></small></p>
</body></html>"""
