"""What a worker knows about the pipeline's health: a lag window per partition (sampled from Kafka),
the verdict, a trend of the last minutes, and the status page that shows them (self-contained HTML
with inline SVG charts, no external assets)."""

from __future__ import annotations

import asyncio
import html
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from streams.ops.health import LagSample, Thresholds, Verdict, evaluate
from streams.ops.lag import PartitionLag, read_lag
from streams.ops.metrics import Metrics
from streams.sinks.kafka import PartitionReplicas, partition_replicas
from topology.settings import KafkaSecurity
from topology.versions import Registry


class LagWatch:
    """Samples the group's lag every few seconds and keeps a window per partition."""

    def __init__(self, bootstrap: str, security: KafkaSecurity, group_id: str, topics: Sequence[str], window: int = 60) -> None:
        self._args = (bootstrap, security, group_id, list(topics))
        self.history: dict[tuple[str, int], deque[LagSample]] = {}
        self.rows: list[PartitionLag] = []
        self.replicas: list[PartitionReplicas] = []
        self._window = window

    async def sample_replicas(self, metrics: Metrics) -> None:
        """Read the topics' replica state (under-replicated and offline partitions): one metadata
        request, apart from the lag sample, which can hang for seconds on a broker that just died
        (13.5 s seen in the broker-kill test) and would hide the very partitions that broker left short."""
        bootstrap, security, _, topics = self._args
        self.replicas = await asyncio.to_thread(partition_replicas, bootstrap, security, topics)
        for topic in topics:
            mine = [p for p in self.replicas if p.topic == topic]
            metrics.under_replicated.labels(topic).set(sum(p.under_replicated for p in mine))
            metrics.offline_partitions.labels(topic).set(sum(p.offline for p in mine))

    async def sample(self, metrics: Metrics) -> None:
        bootstrap, security, group_id, topics = self._args
        now = time.time()
        rows = await asyncio.to_thread(read_lag, bootstrap, security, group_id, topics, int(now * 1000))
        self.rows = rows
        for r in rows:
            metrics.lag_messages.labels(r.topic, str(r.partition)).set(r.messages_behind)
            metrics.lag_seconds.labels(r.topic, str(r.partition)).set(r.seconds_behind)
            self.history.setdefault((r.topic, r.partition), deque(maxlen=self._window)).append(
                LagSample(now, r.committed, r.end, r.seconds_behind)
            )

    def verdict(
        self,
        dependencies_up: Mapping[str, bool],
        freshness_p99_s: float | None,
        thresholds: Thresholds,
        saturation: float | None = None,
    ) -> Verdict:
        return evaluate(
            {k: list(v) for k, v in self.history.items()}, dependencies_up, freshness_p99_s, thresholds, saturation, self.replicas
        )


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One status sample: what the charts draw."""

    at_s: float
    lag_messages: int
    freshness_p50_s: float | None
    freshness_p99_s: float | None
    events_per_s: float
    online_hit_rate: float | None


class Trend:
    """The status samples of the last `window_s` (one every `interval_s`)."""

    def __init__(self, window_s: float = 900.0, interval_s: float = 5.0) -> None:
        self.points: deque[TrendPoint] = deque(maxlen=max(2, int(window_s / interval_s) + 1))

    def record(self, watch: LagWatch, metrics: Metrics, hit_rate: float | None) -> None:
        fresh = metrics.freshness_percentiles()
        self.points.append(
            TrendPoint(
                time.time(),
                sum(r.messages_behind for r in watch.rows),
                fresh.get("p50"),
                fresh.get("p99"),
                round(sum(metrics.rates().values()), 3),
                hit_rate,
            )
        )

    def series(self) -> dict[str, list[float | None]]:
        return {f.name: [getattr(p, f.name) for p in self.points] for f in fields(TrendPoint)}


def dependency_states(metrics: Metrics) -> dict[str, bool]:
    return {s.labels["dependency"]: s.value == 1 for family in metrics.dependency_up.collect() for s in family.samples}


def dead_letter_counts(metrics: Metrics) -> dict[str, int]:
    counts: dict[str, int] = {}
    for family in metrics.dead_letters.collect():
        for s in family.samples:
            if s.name.endswith("_total"):
                counts[s.labels["reason"]] = counts.get(s.labels["reason"], 0) + int(s.value)
    return counts


def status_json(
    watch: LagWatch,
    metrics: Metrics,
    verdict: Verdict,
    trend: Trend | None = None,
    online: tuple[int, float | None, int] | None = None,
    versions: Registry | None = None,
    sids: Mapping[str, object] | None = None,
    channels: Mapping[str, tuple[float | None, int]] | None = None,
    channel: str = "dense",
) -> dict[str, object]:
    """Everything the status page shows; `online` is (K, hit rate, checks) of the online hit rate of
    the served `channel`, `channels` each recall channel's (hit rate, checks);
    `versions` the model-version registry as the worker last read it; `sids` the semantic-ID codebook
    in use and its health (`streams.sid.stage.SemanticIds.status`)."""
    k, rate, checks = online if online is not None else (0, None, 0)
    return {
        "verdict": verdict.status,
        "reasons": list(verdict.reasons),
        "lag": [asdict(r) for r in watch.rows],
        "replicas": {
            "partitions": len(watch.replicas),
            "under_replicated": [asdict(p) for p in watch.replicas if p.under_replicated or p.offline],
        },
        "freshness_s": metrics.freshness_percentiles(),
        "events_per_s": metrics.rates(),
        "dead_letters": dead_letter_counts(metrics),
        "dependencies": dependency_states(metrics),
        "encoder_saturation": metrics.saturation(),
        "online_hit_rate": {
            "k": k,
            "rate": rate,
            "checks": checks,
            "channel": channel,
            "channels": {c: {"rate": r, "checks": n} for c, (r, n) in (channels or {}).items()},
        },
        "trend": trend.series() if trend is not None else {},
        "model_versions": {
            role: asdict(v) if v is not None else None
            for role, v in (("live", versions.live), ("shadow", versions.shadow), ("previous", versions.previous))
        }
        if versions is not None
        else {},
        "semantic_ids": dict(sids) if sids is not None else {"codebook": None},
    }


def _sid_lines(sids: Mapping[str, Any]) -> str:
    """The status page's semantic-ID lines: the codebook, its health at fit, fresh items' drift."""
    e = html.escape
    if not sids.get("codebook"):
        return (
            "<li>no codebook in use (none live, or no item stored since it went live): items are stored without semantic "
            "IDs; sail-stream sid fit makes one</li>"
        )
    utilisation = ", ".join(f"L{i}: {u:.0%}" for i, u in enumerate(sids.get("utilisation") or []))
    lines = [
        f"<li>codebook {e(str(sids['codebook']))}: {sids['levels']} levels x {sids['codes']} codes, fitted on "
        f"{sids['fitted_items']} items</li>",
        f"<li>code utilisation {utilisation}; collision rate {float(sids['collision_rate']):.1%}; quantisation error "
        f"{float(sids['quantisation_error']):.4f}</li>",
    ]
    fresh, ratio = sids.get("fresh_quantisation_error"), sids.get("drift_ratio")
    if isinstance(fresh, float):
        cls = " class=down" if sids.get("drifting") else ""
        advice = ": the codebook needs refitting (sail-stream sid fit, then sid backfill)" if sids.get("drifting") else ""
        ratio_text = f" ({float(ratio):.2f}x the fitted)" if isinstance(ratio, float) else ""
        lines.append(
            f"<li{cls}>fresh items' quantisation error {fresh:.4f}{ratio_text} over the last {sids['fresh_items']}{advice}</li>"
        )
    else:
        lines.append("<li>fresh items' quantisation error: too few items assigned yet</li>")
    return "".join(lines)


def _replica_line(replicas: Mapping[str, Any]) -> str:
    """The Kafka replicas line under the dependencies: red while partitions are under-replicated or offline."""
    total, short = replicas.get("partitions", 0), list(replicas.get("under_replicated") or [])
    if not total:
        return ""
    if not short:
        return f"<li class=up id=replicas>Kafka replicas: all {total} partitions fully in sync</li>"
    offline = [p for p in short if p["leader"] < 0]
    where = ", ".join(f"{html.escape(p['topic'])}[{p['partition']}] {len(p['isr'])}/{len(p['replicas'])}" for p in short[:6])
    return (
        f"<li class=down id=replicas>Kafka replicas: {len(short)} of {total} partitions under-replicated"
        f"{f', {len(offline)} without a leader' if offline else ''} (in sync/assigned: "
        f"{where}{', ...' if len(short) > 6 else ''})</li>"
    )


_COLOURS = {"healthy": "#1a7f37", "degraded": "#bf8700", "failing": "#cf222e"}
_W, _H = 320, 64


def _segments(at: Sequence[float], values: Sequence[float | None], low: float, high: float, t0: float, t1: float) -> list[str]:
    """SVG polyline point lists, one per run of known values (a gap where a value is None)."""
    runs: list[list[str]] = [[]]
    for t, v in zip(at, values):
        if v is None:
            runs.append([])
            continue
        x = (t - t0) / (t1 - t0) * _W if t1 > t0 else _W
        y = _H - (v - low) / (high - low) * (_H - 4) - 2 if high > low else _H / 2
        runs[-1].append(f"{x:.1f},{y:.1f}")
    return [" ".join(r) for r in runs if r]


def chart(
    chart_id: str,
    title: str,
    at: Sequence[float],
    lines: Sequence[tuple[str, str, Sequence[float | None]]],
    unit: str,
    floor: float = 0.0,
) -> str:
    """A small line chart as inline SVG: `lines` are (label, colour, values at `at`); the title
    carries each line's latest value, the axis its maximum."""
    known = [v for _, _, values in lines for v in values if v is not None]
    e = html.escape
    if len(at) < 2 or not known:
        return f"<figure id={chart_id}><figcaption>{e(title)}: no data yet</figcaption></figure>"
    low, high = min(floor, min(known)), max(known)
    high = high if high > low else low + 1.0
    latest = ", ".join(
        f"{e(label)} {next((v for v in reversed(values) if v is not None), float('nan')):.3g}{unit}" for label, _, values in lines
    )
    polylines = "".join(
        f'<polyline fill=none stroke="{colour}" stroke-width=1.5 points="{points}"><title>{e(label)}</title></polyline>'
        for label, colour, values in lines
        for points in _segments(at, values, low, high, at[0], at[-1])
    )
    minutes = (at[-1] - at[0]) / 60
    return (
        f"<figure id={chart_id}><figcaption>{e(title)} (last {minutes:.0f} min): {latest}</figcaption>"
        f'<svg id="svg-{chart_id}" width={_W} height={_H} viewBox="0 0 {_W} {_H}" role=img aria-label="{e(title)}">'
        f'<rect width={_W} height={_H} fill="#f6f8fa"/>{polylines}'
        f'<text x=2 y=10 font-size=9 fill="#57606a">{high:.3g}{unit}</text><text x=2 y={_H - 2} font-size=9 '
        f'fill="#57606a">{low:.3g}{unit}</text></svg></figure>'
    )


def _charts(trend: Mapping[str, Sequence[float | None]], k: int) -> str:
    at = [float(t) for t in trend.get("at_s", []) if t is not None]
    if not at:
        return "<p>no samples yet</p>"
    hit = [None if v is None else 100.0 * v for v in trend["online_hit_rate"]]
    return "".join(
        [
            chart("chart-lag", "Consumer lag, messages", at, [("lag", "#0969da", trend["lag_messages"])], ""),
            chart(
                "chart-freshness",
                "Item freshness, s",
                at,
                [("p50", "#1a7f37", trend["freshness_p50_s"]), ("p99", "#cf222e", trend["freshness_p99_s"])],
                " s",
            ),
            chart("chart-throughput", "Throughput, events/s", at, [("events/s", "#8250df", trend["events_per_s"])], ""),
            chart("chart-hit-rate", f"Online hit rate @{k}, %", at, [("hit rate", "#bf8700", hit)], " %"),
        ]
    )


def render_status(status: Mapping[str, Any], title: str, refresh_s: int) -> str:
    """The status page: verdict with reasons, per-partition lag, freshness, throughput, dead letters,
    dependencies. Refreshes itself every `refresh_s` seconds."""
    e = html.escape
    verdict = str(status["verdict"])
    reasons = "".join(f"<li>{e(str(r))}</li>" for r in status["reasons"])
    lag_rows = "".join(
        f"<tr><td>{e(r['topic'])}</td><td>{r['partition']}</td><td>{r['committed']}</td><td>{r['end']}</td>"
        f"<td class=num>{r['messages_behind']}</td><td class=num>{r['seconds_behind']:.1f}</td></tr>"
        for r in status["lag"]
    )
    fresh = status["freshness_s"] or {}
    fresh_cells = "".join(f"<td>{e(k)}: {v:.2f} s</td>" for k, v in fresh.items()) or "<td>no items in the last 5 minutes</td>"
    rates = "".join(f"<li>{e(k)}: {v:.1f} events/s</li>" for k, v in status["events_per_s"].items()) or "<li>idle</li>"
    saturation = status.get("encoder_saturation")
    rates += (
        f"<li>encoder saturation: {saturation:.0%} of the last minute waiting for it</li>"
        if isinstance(saturation, float)
        else ""
    )
    online = status.get("online_hit_rate") or {}
    k, hit_rate, checks = online.get("k", 0), online.get("rate"), online.get("checks", 0)
    served = e(str(online.get("channel", "dense")))
    per_channel = "".join(
        f"<li>{e(c)}{' (served)' if c == online.get('channel') else ''}: "
        + (f"{v['rate']:.1%} of {v['checks']}" if isinstance(v.get("rate"), float) else "none checked yet")
        + "</li>"
        for c, v in (online.get("channels") or {}).items()
    )
    quality = (
        f"<li>online hit rate @{k}: {hit_rate:.1%} of the last {checks} sampled positive interactions were in the user's top "
        f"{k} just before (channel {served})"
        if isinstance(hit_rate, float)
        else f"<li>online hit rate @{k}: no sampled interaction checked yet"
    ) + (f"; per recall channel:<ul>{per_channel}</ul></li>" if per_channel else "</li>")
    trend = status.get("trend") or {}
    charts = _charts(trend, int(k)) if trend else "<p>no samples yet</p>"
    dead = "".join(f"<li>{e(k)}: {v}</li>" for k, v in status["dead_letters"].items()) or "<li>none</li>"
    roles = {
        "live": "live (written and searched)",
        "shadow": "shadow (being re-embedded)",
        "previous": "previous (kept for a rollback)",
    }
    versions = (
        "".join(
            f"<li>{roles[role]}: {e(v['model_version'] or '(the settings encoder)')} in {e(v['items'])}, {e(v['users'])}</li>"
            for role, v in (status.get("model_versions") or {}).items()
            if v
        )
        or "<li>not known yet</li>"
    )
    sids = _sid_lines(status.get("semantic_ids") or {})
    deps = "".join(
        f"<li class={'up' if up else 'down'}>{e(k)}: {'up' if up else 'DOWN'}</li>" for k, up in status["dependencies"].items()
    )
    deps += _replica_line(status.get("replicas") or {})
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
<section><h2>Trends</h2><div id=charts style="display:flex;flex-wrap:wrap;gap:1em">{charts}</div></section>
<section><h2>Model versions</h2><ul id=versions>{versions}</ul></section>
<section><h2>Semantic IDs</h2><ul id=semantic-ids>{sids}</ul></section>
<section><h2>Recommendation quality</h2><ul id=quality>{quality}</ul></section>
<section><h2>Dead letters by reason</h2><ul id=dead-letters>{dead}</ul></section>
<section><h2>Consumer lag</h2><table id=lag><tr><th>topic</th><th>partition</th><th>committed</th><th>end</th>
<th>messages behind</th><th>seconds behind</th></tr>{lag_rows}</table></section>
<p><small>generated {time.strftime("%Y-%m-%d %H:%M:%S")}; refreshes every {refresh_s} s;
JSON at <a href="/status.json">/status.json</a>, Prometheus at <a href="/metrics">/metrics</a></small></p>
</body></html>"""
