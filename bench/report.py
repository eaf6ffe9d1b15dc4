"""BENCHMARKS.md's and RELIABILITY.md's tables and charts, rendered from the benchmarks' JSON under bench/results/.

    python -m bench.report --write   # re-render every generated block of both pages in place, and the charts
    python -m bench.report --check   # exit 1, listing every block that differs from its JSON, and every
                                     # table of figures written by hand

Every benchmark ends with `bench.results.write_result(NAME, summary)`: bench/results/NAME.json holds
its figures (the measured method and the baseline of the same run, the ratios, the run's parameters)
with the machine, the date and the command line, and is committed. BENCHMARKS.md shows a file's
figures only through generated blocks between two marker comments:

    <!-- results: NAME/TABLE -->
    (generated: a markdown table, then a line with the machine and the date)
    <!-- /results -->

    <!-- chart: NAME/CHART -->
    (generated: a link to bench/results/charts/NAME-CHART.png, then the machine line)
    <!-- /chart -->

NAME is the results file (bench/results/NAME.json). Its benchmark is NAME up to the first "-"
(`encoder-sail-tiny` and `encoder-sail-tiny-omni` are bench.encoder runs). TABLE or CHART names a
renderer registered in this module for that benchmark (listed below): a small pure function from the
JSON payload to a markdown table, or to a PNG drawn with matplotlib (Agg). To show a table, write its
two markers with nothing between them and run --write. Text outside the markers is never touched,
but --check refuses a table of figures outside them (a table with an aligned column, `---:`): a
record that no results file stands behind belongs in bench/HISTORY.md, not among the current figures.

--write also draws every registered chart of every results file whose JSON has the chart's series
(bench/results/charts/NAME-CHART.png), linked or not; a block naming a missing file, renderer or
series is an error, and that block is left as it was.

--check compares text: a block must equal its rendering character for character, numbers as the
renderer formats them (thousands separators, fixed decimals). For a chart block it compares the link
and the machine line and checks that the PNG exists; it does not compare the PNG's bytes, which
depend on matplotlib's version and its fonts. On the same JSON the same matplotlib writes the same
bytes (fixed size and dpi, default style, no metadata), so a rerun of --write shows no diff.
tests/bench/test_report.py runs the check on both pages.
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.results import RESULTS_DIR

Payload = Mapping[str, Any]  # what `write_result` wrote: benchmark, date, command, machine, summary
MARKDOWN = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
# The pages whose figures come from bench/results: --check and --write cover both by default.
MARKDOWNS = (MARKDOWN, MARKDOWN.parent / "RELIABILITY.md")
CHART_SIZE_IN = (8.0, 4.5)
CHART_DPI = 100

# A marker is a line of its own; the same words inside a sentence (as in BENCHMARKS.md's preamble) are prose.
BLOCK = re.compile(
    r"^<!-- (results|chart): ([A-Za-z0-9_.-]+)/([A-Za-z0-9_-]+) -->\n(.*?)^<!-- /\1 -->$", re.DOTALL | re.MULTILINE
)
OPENING = re.compile(r"^<!-- (results|chart): ", re.MULTILINE)


class Missing(LookupError):
    """The payload lacks what a renderer shows (a run without that phase): nothing to render."""


@dataclass(frozen=True, slots=True)
class Table:
    benchmark: str
    name: str
    what: str  # one line for --help
    render: Callable[[Payload], str]  # the payload -> a markdown table (no machine line: `render_table` adds it)


@dataclass(frozen=True, slots=True)
class Chart:
    benchmark: str
    name: str
    what: str  # one line for --help, and the image's alt text
    draw: Callable[[Payload, Any], None]  # the payload and a matplotlib Figure -> draws into the figure


TABLES: dict[tuple[str, str], Table] = {}
CHARTS: dict[tuple[str, str], Chart] = {}


def table(benchmark: str, name: str, what: str) -> Callable[[Callable[[Payload], str]], Callable[[Payload], str]]:
    """Register a table renderer for `benchmark`'s results files as NAME/`name`."""

    def register(render: Callable[[Payload], str]) -> Callable[[Payload], str]:
        TABLES[(benchmark, name)] = Table(benchmark, name, what, render)
        return render

    return register


def chart(benchmark: str, name: str, what: str) -> Callable[[Callable[[Payload, Any], None]], Callable[[Payload, Any], None]]:
    """Register a chart renderer for `benchmark`'s results files as NAME/`name`."""

    def register(draw: Callable[[Payload, Any], None]) -> Callable[[Payload, Any], None]:
        CHARTS[(benchmark, name)] = Chart(benchmark, name, what, draw)
        return draw

    return register


def benchmark_of(result: str) -> str:
    """The benchmark a results file belongs to: its name up to the first "-" (`train-cre` -> train)."""
    return result.split("-", 1)[0]


# ---------------------------------------------------------------------- formatting


def num(value: float | None, decimals: int = 1) -> str:
    """A figure with thousands separators and fixed decimals; "-" when it was not measured."""
    return "-" if value is None else f"{value:,.{decimals}f}"


def times(value: float | None, decimals: int = 2) -> str:
    """A ratio as a factor: `1.36x`."""
    return "-" if value is None else f"{value:,.{decimals}f}x"


def share(value: float | None) -> str:
    """A share as a percentage: `9.56 %`."""
    return "-" if value is None else f"{100 * value:.2f} %"


def row(*cells: object) -> str:
    """A markdown table row; a `|` inside a cell (|x - x̂|²) is escaped so it does not split the cell."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def grid(header: Sequence[str], align: str, rows: Sequence[str]) -> str:
    """A markdown table: `align` has one character per column, l (left) or r (right)."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join([row(*header), rule, *rows])


def machine_line(payload: Payload) -> str:
    """The line under every generated block: where and when the figures were measured, and how."""
    m = payload.get("machine", {})
    runtime = payload.get("summary", {}).get("runtime") or {}
    extra = "".join(f"; {key.replace('_', ' ')} {value}" for key, value in runtime.items())
    return (
        f"Machine: {m.get('cpu', 'unknown')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB, "
        f"{m.get('os', '?')}, Python {m.get('python', '?')}{extra}. Measured {payload.get('date', '?')}: "
        f"`{payload.get('command', '?')}`."
    )


def _summary(payload: Payload) -> Mapping[str, Any]:
    summary: Mapping[str, Any] = payload["summary"]
    return summary


# ---------------------------------------------------------------------- bench.encoder


@table("encoder", "batches", "the in-process baseline and Triton per client batch size and queue delay")
def encoder_batches(payload: Payload) -> str:
    rows = [
        row(
            r["encoder"],
            r["media"],
            r["batch"],
            r["queue_delay_us"],
            num(r["in_process_items_s"]),
            num(r["triton_items_s"]),
            num(r["ratio"], 2),
        )
        for r in _summary(payload)["rows"]
    ]
    header = (
        "encoder",
        "media",
        "batch",
        "Triton queue delay (µs)",
        "in-process items/s",
        "Triton items/s",
        "Triton / in-process",
    )
    return grid(header, "llrrrrr", rows)


# ---------------------------------------------------------------------- bench.pipeline


def _pipeline_cpu(cpu: Mapping[str, float]) -> str:
    workers = sum(v for k, v in cpu.items() if k.startswith("worker"))
    parts = (cpu.get("triton", 0.0), workers, cpu.get("kafka", 0.0), cpu.get("milvus", 0.0), cpu.get("producer+bench", 0.0))
    return " / ".join(f"{v:.2f}" for v in parts)


@table("pipeline", "runs", "content pipeline runs against the in-process encoder ceiling and the naive pipeline")
def pipeline_runs(payload: Payload) -> str:
    s = _summary(payload)
    rows = [row("in-process encoder, batch 32 (the ceiling)", "-", "-", num(s["ceiling_items_s"]), "1.00", "-", "-")]
    for r in s["content_runs"]:
        fresh = " / ".join(num(r[f"freshness_p{q}_s"], 2) for q in (50, 95, 99))
        rows.append(
            row(
                f"{r['of_ceiling']:.0%} of the ceiling",
                r["workers"],
                num(r["offered_items_s"]),
                num(r["sustained_items_s"]),
                num(r["efficiency"], 2),
                fresh,
                _pipeline_cpu(r["cpu_share"]),
            )
        )
    rows.append(row("naive per-message pipeline", 1, "backlog", num(s["naive_items_s"]), num(s["naive_efficiency"], 2), "-", "-"))
    header = (
        "run",
        "workers",
        "offered items/s",
        "sustained items/s",
        "/ ceiling",
        "freshness p50 / p95 / p99 (s)",
        "CPU share: triton / worker(s) / kafka / milvus / producer",
    )
    return grid(header, "lrrrrll", rows)


@table("pipeline", "interest", "interactions/s applied by one worker from a backlog against the naive per-event loop")
def pipeline_interest(payload: Payload) -> str:
    i = _summary(payload)["interest"]
    rows = [
        row(
            f"one worker, from a backlog of {i['interactions']:,}",
            num(i["applied_interactions_s"]),
            times(i["applied_interactions_s"] / i["naive_interactions_s"], 1) if i["naive_interactions_s"] else "-",
        ),
        row("naive per-event loop", num(i["naive_interactions_s"]), "1.0x"),
    ]
    return grid(("interest path", "interactions/s", "vs naive"), "lrr", rows)


@chart("pipeline", "freshness", "Upload freshness against offered load (share of the encoder ceiling)")
def pipeline_freshness(payload: Payload, figure: Any) -> None:
    runs = [r for r in _summary(payload).get("content_runs", []) if r.get("freshness_p50_s") is not None]
    if not runs:
        raise Missing("no content runs with freshness")
    _freshness_axes(
        figure,
        [(r["of_ceiling"], r["workers"], r["freshness_p50_s"], r["freshness_p95_s"], r["freshness_p99_s"]) for r in runs],
        "offered load / in-process encoder ceiling",
    )


def _freshness_axes(figure: Any, points: list[tuple[float, int, float, float, float]], xlabel: str) -> None:
    """Freshness percentiles (log scale) against offered load; one line per worker count."""
    ax = figure.add_subplot(1, 1, 1)
    for workers in sorted({p[1] for p in points}):
        mine = sorted(p for p in points if p[1] == workers)
        xs = [p[0] for p in mine]
        for column, (label, style) in enumerate((("p50", "o-"), ("p95", "s--"), ("p99", "^-"))):
            ax.plot(xs, [p[2 + column] for p in mine], style, label=f"{label}, {workers} worker(s)")
    ax.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter

    for axis_formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        axis_formatter(FormatStrFormatter("%g"))  # 0.5 s, not 5 x 10^-1
    ax.set_xlabel(xlabel)
    ax.set_ylabel("freshness: upload to stored (s)")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=8)


# ---------------------------------------------------------------------- bench.interest


@table("interest", "drains", "workers draining the backlog against the naive per-event loop, with state and CPU figures")
def interest_drains(payload: Payload) -> str:
    s = _summary(payload)
    drains = [*s["drains"], *([s["batched_drain"]] if s.get("batched_drain") else [])]
    naive = s["naive_interactions_s"]
    rows = []
    for d in drains:
        first = drains[0]["applied_s"]
        per_record = d.get("per_record", 1)
        rows.append(
            row(
                f"{d['workers']} worker(s)" + (f", batch records of {per_record}" if per_record > 1 else ""),
                f"{d['interactions']:,}",
                num(d["seconds"]),
                num(d["applied_s"]),
                "-" if d is drains[0] or not first else num(d["applied_s"] / first, 2),
                times(d["applied_s"] / naive, 1) if naive else "-",
                f"{d['changelog_records']:,}",
                num(d["changelog_bytes_per_interaction"]),
                f"{d['state_bytes_p50']:,.0f} / {d['state_bytes_p99']:,.0f}",
                f"{d['users']:,}",
                _vector_sources(d.get("item_vectors") or {}),
                ", ".join(f"{k} {v:.2f}" for k, v in d["cpu_share"].items()),
            )
        )
    sample = s.get("params", {}).get("naive_sample")
    label = "naive per-event loop" + (f" ({sample:,} events)" if sample else "")
    rows.append(row(label, "-", "-", num(naive), "-", "1.0x", "-", "-", "-", "-", "-", "-"))
    header = (
        "run",
        "interactions",
        "drain (s)",
        "applied/s",
        "vs 1st drain",
        "vs naive",
        "changelog records",
        "changelog bytes / interaction",
        "state bytes p50 / p99",
        "users",
        "item vectors: cache / Milvus",
        "CPU share of the machine",
    )
    return grid(header, "lrrrrrrrrrrl", rows)


def _vector_sources(sources: Mapping[str, int]) -> str:
    """A drain's item-vector lookups by source (`sail_item_vectors_total`; none before the metric)."""
    if not sources:
        return "-"
    return f"{sources.get('cache', 0):,} / {sources.get('milvus', 0):,}"


@table("interest", "floor", "the empty Faust agent and bare aiokafka on the same backlog")
def interest_floor(payload: Payload) -> str:
    s = _summary(payload)
    floors = s.get("floors") or (s.get("floor_per_s") if isinstance(s.get("floor_per_s"), dict) else None) or {}
    if not floors:
        raise Missing("the run had --no-floor")
    rows = [
        row("bare aiokafka, no Faust", num(floors.get("kafka"))),
        row("empty Faust agent", num(floors.get("faust"))),
        row("the worker (interest path)", num(s["drains"][0]["applied_s"]) if s["drains"] else "-"),
        row("naive per-event loop", num(s["naive_interactions_s"])),
    ]
    return grid(("reader of the same backlog", "records/s"), "lr", rows)


@table("interest", "goals", "issue 32's figures of one run, each against its goal")
def interest_goals(payload: Payload) -> str:
    s = _summary(payload)
    goals = s.get("goals")
    if not goals:
        raise Missing("a run before issue 32 (no goals)")
    shown = {
        "single_vs_floor": ("worker, one event per record / empty Faust agent", ">="),
        "batched_per_s": ("worker, batch records: interactions/s", ">="),
        "batched_vs_naive": ("worker, batch records / naive per-event loop", ">="),
        "freshness_p99_s_at_80": ("user freshness p99 (s) at 80 % of the single-event rate", "<="),
        "retry_reads_per_parked": ("retry-topic reads per parked interaction, Triton frozen 15 s", "<="),
    }
    rows = [
        row(
            label,
            num(goals[name]["value"], 2),
            f"{sign} {num(goals[name]['goal'], 2)}",
            "met" if goals[name]["met"] else "**missed**",
        )
        for name, (label, sign) in shown.items()
        if name in goals
    ]
    return grid(("figure", "measured", "goal", ""), "lrrl", rows)


@table("interest", "phases", "the model of the limit: the interest agent's time per interaction by phase, each drain")
def interest_phases(payload: Payload) -> str:
    s = _summary(payload)
    drains = [d for d in [*s["drains"], *([s["batched_drain"]] if s.get("batched_drain") else [])] if d.get("phase_us")]
    if not drains:
        raise Missing("a run before issue 32 (no phase costs)")
    phases = list(dict.fromkeys(p for d in drains for p in d["phase_us"] if p != "total"))
    rows = [
        row(
            f"{d['workers']} worker(s)" + (f", batch records of {d['per_record']}" if d.get("per_record", 1) > 1 else ""),
            *(num(d["phase_us"].get(p)) for p in phases),
            num(d["phase_us"].get("total")),
            num(1e6 / d["applied_s"]) if d["applied_s"] else "-",
        )
        for d in drains
    ]
    live = s.get("user_freshness_at_80pct") or {}
    if live.get("steady_phase_us"):  # the same worker offered live traffic, after its drain (issue 32)
        rows.append(
            row(
                f"live at {num(live['offered_s'])}/s"
                + (f", {num(live['steady_applied_per_s'])}/s applied" if live.get("steady_applied_per_s") else "")
                + f", steady window (agent busy {num(live['steady_agent_busy'], 2)})",
                *(num(live["steady_phase_us"].get(p)) for p in phases),
                num(live["steady_phase_us"].get("total")),
                num(1e6 / (live.get("steady_applied_per_s") or live["offered_s"])),
            )
        )
    header = ("drain (us per interaction)", *phases, "agent total", "wall per interaction")
    return grid(header, "l" + "r" * (len(phases) + 2), rows)


@table("interest", "ablations", "the 1-worker drains again with one setting changed, same run")
def interest_ablations(payload: Payload) -> str:
    s = _summary(payload)
    ablations = s.get("ablations") or {}
    if not ablations:
        raise Missing("a run before issue 32, or --no-ablations")
    single = s["drains"][0]["applied_s"] if s["drains"] else None
    batched = (s.get("batched_drain") or {}).get("applied_s")
    shown = {
        "faust_monitor": "Faust's own monitor (the quiet one reverted)",
        "no_collab": "collaborative update off (SAIL_COLLAB_PAIRS=0)",
        "one_in_flight": "one interaction batch at a time (SAIL_INTEREST_IN_FLIGHT=1)",
        "python_gc": "Python's collector defaults (SAIL_WORKER_GC_YOUNG=0)",
    }

    def cell(value: float | None, base: float | None) -> str:
        return "-" if value is None else f"{num(value)} ({num(value / base, 2)}x)" if base else num(value)

    rows = [row("defaults", num(single), num(batched))]
    rows += [
        row(shown.get(name, name), cell(r.get("single_per_s"), single), cell(r.get("batched_per_s"), batched))
        for name, r in ablations.items()
    ]
    return grid(("1 worker", "one event per record (/s)", "batch records (/s)"), "lrr", rows)


@table("interest", "paused", "a bad day: Triton frozen 15 s under 10 uploads/s and 100 interactions/s")
def interest_paused(payload: Payload) -> str:
    p = _summary(payload).get("paused_encoder") or {}
    if not p:
        raise Missing("the run had --no-paused-encoder")
    rows = [
        row(
            f"{p['parked']:,}",
            f"{p['retry_reads']:,}",
            num(p["retry_reads_per_parked"], 2),
            f"{p['followed']:,}",
            f"{num(p['follow_p50_s'], 2)} / {num(p['follow_p99_s'], 2)} / {num(p['follow_max_s'], 2)}",
        )
    ]
    header = ("parked", "retry reads", "reads per parked", "sent back", "followed its item p50 / p99 / max (s)")
    note = (
        "\n\nTriton died after the SIGSTOP (pytriton's shared-memory lock) and was started again."
        if p.get("triton_restarted")
        else ""
    )
    if p.get("drained") is False:
        note += " The run did **not** drain within 240 s of the traffic's end (figures as they stood then)."
    return grid(header, "rrrrr", rows) + note


@table("interest", "freshness", "user freshness with interactions offered live after the drain")
def interest_freshness(payload: Payload) -> str:
    f = _summary(payload).get("user_freshness_at_80pct") or {}
    if not f:
        raise Missing("the run had --paced-s 0")
    shares = f.get("steady_cpu_share") or {}
    rows = [
        row(
            num(f["offered_s"]),
            f"{num(f['restart_p50_s'], 2)} / {num(f['restart_p99_s'], 2)}",
            f"{num(f['p50_s'], 2)} / {num(f['p99_s'], 2)}",
            ", ".join(f"{name} {share:.2f}" for name, share in shares.items()) or "-",
        )
    ]
    header = (
        "offered interactions/s",
        "just after the restart: p50 / p99 (s)",
        "steady: p50 / p99 (s)",
        "steady: CPU share of the machine",
    )
    return grid(header, "lrrl", rows)


# ---------------------------------------------------------------------- bench.quality


def _methods(methods: list[Mapping[str, Any]]) -> str:
    rows = [
        row(
            m["method"],
            num(m["hit_rate_10"], 4),
            num(m["hit_rate_50"], 4),
            num(m["ndcg_10"], 4),
            num(m["coverage_10"], 4),
            f"{m['served']:,} / {m['queries']:,}",
        )
        for m in methods
    ]
    return grid(("method", "HitRate@10", "HitRate@50", "NDCG@10", "coverage@10", "served"), "lrrrrr", rows)


def _keyed(s: Mapping[str, Any]) -> str:
    """The methods table of a run that keys them by name (issue 31's shape): every ranked like, the likes of
    fresh items, the likes a nightly job could serve; the baselines marked, the default method in bold."""
    baselines, default = set(s.get("baselines") or ()), s.get("default_method")
    rows = []
    for name, m in s["methods"].items():
        label = f"**{name}** (default)" if name == default else f"{name} (baseline)" if name in baselines else name
        rows.append(
            row(
                label,
                num(m["hr10"], 4),
                num(m["hr50"], 4),
                num(m["ndcg10"], 4),
                num(m["coverage10"], 3),
                num(m["fresh_hr10"], 4),
                num(m["fresh_hr50"], 4),
                num(m["served_hr10"], 4),
                f"{m['answered']:,} / {m['likes']:,}",
            )
        )
    header = (
        "method",
        "HitRate@10",
        "HitRate@50",
        "NDCG@10",
        "coverage@10",
        "fresh HR@10",
        "fresh HR@50",
        "served HR@10",
        "answered",
    )
    return grid(header, "lrrrrrrrr", rows)


@table("quality", "methods", "every method over every held-out like (with fresh and served columns where the run keys them)")
def quality_methods(payload: Payload) -> str:
    s = _summary(payload)
    return _keyed(s) if isinstance(s["methods"], Mapping) else _methods(s["methods"])


@table("quality", "warm", "every method over the likes of users with a positive before that day (older runs)")
def quality_warm(payload: Payload) -> str:
    s = _summary(payload)
    if "warm_methods" not in s:
        raise Missing("a run that keys its methods: the served columns of its methods table are these likes")
    return _methods(s["warm_methods"])


def _knobs(p: Mapping[str, Any]) -> str:
    return f"factors {p['factors']}, regularization {p['regularization']:g}, alpha {p['alpha']:g}, iterations {p['iterations']}"


@table("quality", "nightly", "the default method against the nightly ALS, and the ALS knobs tuned before the test period")
def quality_nightly(payload: Payload) -> str:
    s = _summary(payload)
    als = s.get("als")
    if not isinstance(s["methods"], Mapping) or not als:
        raise Missing("a run without the ALS baselines")
    tuning = s.get("tuning") or s.get("als_tuning") or {}
    test = s.get("test_from") or {}
    chosen = tuning.get("chosen") or {}
    rows = [
        row("likes ranked (the test period: after the first ratings below)", f"{s['likes']:,}"),
        row("ratings before the test period (the tuning log)", f"{test.get('ratings') or 0:,}"),
        row(
            f"tuning trials (likes of every {tuning.get('sample_days', '-')}th day of its second half)",
            f"{len(tuning.get('trials') or []):,}",
        ),
        row("als-nightly knobs", _knobs(als["nightly"])),
        row("als-foldin knobs", _knobs(als["foldin"])),
        *(
            [
                row("item-knn knobs", f"history {chosen['knn']['history']}, pairs {chosen['knn']['pairs']}"),
                row(
                    "collab knobs",
                    ", ".join(f"{k} {chosen['collab'][k]:g}" for k in ("user_items", "user_decay", "item_norm", "pairs")),
                ),
                row("fused knobs", f"content weight {chosen['fusion']['content']:g}"),
            ]
            if "knn" in chosen
            else []
        ),
        row("nightly trainings in the test pass", f"{als['trainings']:,}"),
        row(
            f"served HitRate@10 of {s['default_method']} / als-nightly's (realtime_vs_nightly)",
            times(s.get("realtime_vs_nightly"), 3),
        ),
    ]
    return grid(("figure", "value"), "lr", rows)


@table("quality", "goals", "issue 31's three ratios for the served default and the stream's collaborative channels")
def quality_goals(payload: Payload) -> str:
    s = _summary(payload)
    if "goals" not in s:
        raise Missing("a run before the goals were recorded")
    rows = [
        row(
            name,
            f"{times(g['vs_best_baseline'], 3)} ({g['best_baseline']})",
            f"{times(g['fresh_vs_best_baseline'], 3)} ({g['best_fresh_baseline']})",
            times(g["served_vs_nightly"], 3),
        )
        for name, g in s["goals"].items()
    ]
    header = (
        "method",
        "HR@10 / best baseline (goal 1.1x)",
        "fresh HR@10 / best baseline (goal 2x)",
        "served HR@10 / als-nightly (goal 1.5x)",
    )
    return grid(header, "lrrr", rows)


@table("quality", "pipeline", "the log through the real pipeline: movies encoded, ratings applied (one worker)")
def quality_pipeline(payload: Payload) -> str:
    s = _summary(payload)
    if s.get("applied_per_s") is None:
        raise Missing("a run from before the clocks were fixed (no applied_per_s)")
    rows = [
        row(f"{s['movies']:,} movies encoded and stored (first send to last commit)", f"{num(s['encode_s'])} s", "-"),
        row(
            f"{s['events']:,} ratings applied (first send to last commit, polled every 0.5 s)",
            f"{num(s['apply_s'])} s",
            f"{num(s['applied_per_s'])}/s",
        ),
    ]
    return grid(("phase", "seconds", "rate"), "lrr", rows)


@table("quality", "collab", "what the collaborative vectors cost the worker, and what the recall API serves of them")
def quality_collab(payload: Payload) -> str:
    s = _summary(payload)
    cost, agree = s.get("collab_cost"), s.get("agreement") or {}
    if not cost:
        raise Missing("a run before the collaborative vectors")
    overlap = agree.get("mean_top10_overlap") or {}
    rows = [
        row("co-engagements applied (positives)", f"{cost['co_engagements_applied']:,}"),
        row("worker CPU per co-engagement (both stages)", f"{num(cost['cpu_us_per_interaction'])} µs"),
        row("Milvus collab_items rows per co-engagement (coalesced per batch)", num(cost["item_rows_per_interaction"], 3)),
        row("Milvus collab_users rows per co-engagement", num(cost["user_rows_per_interaction"], 3)),
        row(
            "collaborative freshness, event to row (p50 / p99, histogram bucket bounds)",
            f"{num(cost['freshness_p50_s'])} / {num(cost['freshness_p99_s'])} s",
        ),
        row(
            "ratings applied with / without the collaborative vectors (same run)",
            f"{num(cost.get('apply_s_with'))} / {num(cost.get('apply_s_without'))} s",
        ),
        row("items whose stored positives equal the log's", share(agree.get("collab_likes_equal_share"))),
        *(
            row(f"recall API top-10 overlap with the protocol, channel {c} ({agree.get('users')} users)", num(v, 3))
            for c, v in overlap.items()
        ),
    ]
    return grid(("figure", "value"), "lr", rows)


@table("quality", "gain", "each real-time variant over its daily refresh")
def quality_gain(payload: Payload) -> str:
    gain = _summary(payload).get("realtime_gain") or {}
    if not gain:
        raise Missing("no real-time variant ran beside its daily refresh")
    methods = list(dict.fromkeys(key.rsplit(" ", 1)[0] for key in gain))
    rows = [row(m, times(gain.get(f"{m} hit_rate_10")), times(gain.get(f"{m} hit_rate_50"))) for m in methods]
    return grid(("real-time method", "HitRate@10 / daily", "HitRate@50 / daily"), "lrr", rows)


@table("quality", "sid", "the semantic-ID codebook and the assignment's cost in the stream (--sid)")
def quality_sid(payload: Payload) -> str:
    s = _summary(payload).get("semantic_ids")
    if not s:
        raise Missing("the run had no --sid")
    rows = [
        row("codebook", f"{s['levels']} x {s['codes']} (`{s['codebook']}`)"),
        row(f"fit over {s['fitted_items']:,} stored vectors", f"{num(s['fit_s'])} s"),
        row("code utilisation per level", " / ".join(share(u) for u in s["utilisation"])),
        row("collision rate: items sharing every code with another", share(s["collision_rate"])),
        row("mean quantisation error, |x - x̂|² / |x|²", num(s["quantisation_error"], 4)),
        row(f"backfill of {s['backfilled']:,} rows", f"{num(s['backfill_s'])} s"),
        row("fresh uploads assigned (collisions)", f"{s['fresh_assigned']:,} ({s['fresh_collisions']:,})"),
        row(
            "encoder request time per item (with queueing in Triton; not a share's base)",
            f"{num(s['encoder_ms_per_item'], 3)} ms",
        ),
        row("encoder achieved time per item (the backlog's wall time / items)", f"{num(s['achieved_ms_per_item'], 3)} ms"),
        row("encoder compute time per item (Triton's compute duration / items)", f"{num(s['compute_ms_per_item'], 3)} ms"),
        row("codes (the quantiser) per item", f"{num(s['codes_ms_per_item'], 4)} ms"),
        row("bucket lookup per item", f"{num(s['lookup_ms_per_item'], 4)} ms"),
        row("codes / achieved time", share(s["codes_share_of_achieved"])),
        row("codes + lookup / achieved time", share(s["codes_and_lookup_share_of_achieved"])),
        row("codes / compute time", share(s["codes_share_of_compute"])),
        row("codes + lookup / compute time", share(s["codes_and_lookup_share_of_compute"])),
    ]
    return grid(("figure", "value"), "lr", rows)


@chart("quality", "methods", "HitRate@10 and @50 per method, every held-out like")
def quality_chart(payload: Payload, figure: Any) -> None:
    methods = _summary(payload).get("methods") or []
    if isinstance(methods, Mapping):
        methods = [{"method": k, "hit_rate_10": m["hr10"], "hit_rate_50": m["hr50"]} for k, m in methods.items()]
    if not methods:
        raise Missing("no methods")
    ax = figure.add_subplot(1, 1, 1)
    ys = range(len(methods))
    height = 0.4
    ax.barh([y - height / 2 for y in ys], [m["hit_rate_10"] for m in methods], height, label="HitRate@10")
    ax.barh([y + height / 2 for y in ys], [m["hit_rate_50"] for m in methods], height, label="HitRate@50")
    ax.set_yticks(list(ys), [m["method"] for m in methods], fontsize=8)
    ax.invert_yaxis()  # the table's order, top down
    ax.set_xlabel("hit rate over every held-out like")
    ax.grid(True, axis="x", linewidth=0.3)
    ax.legend(fontsize=8)


# ---------------------------------------------------------------------- bench.train


@table("train", "run", "the training run: steps, time, throughput, final losses")
def train_run(payload: Payload) -> str:
    s = _summary(payload)
    t = s["train"]
    losses = ", ".join(f"{k} {v:.2f}" for k, v in (t.get("losses") or {}).items()) or "-"
    rows = [
        row(
            s["recipe"]["name"],
            f"`{t['model_version']}`",
            f"{t['steps']:,}",
            t["resumed_from"],
            num(t["seconds"]),
            num(t["items_per_s"]),
            t["device"],
            losses,
        )
    ]
    header = ("recipe", "trained encoder", "steps", "resumed from", "seconds", "items/s", "device", "loss, last 10 % of steps")
    return grid(header, "llrrrrll", rows)


@table("train", "i2i", "i2i Recall@50 on the test period, cold and warm query items (cre)")
def train_i2i(payload: Payload) -> str:
    s = _summary(payload)
    if "i2i_queries" not in s:
        raise Missing("not a cre-movielens run")
    q = s["i2i_queries"]
    rows = [
        row(r["encoder"], num(r["encode_items_per_s"]), num(r["i2i_recall50_cold"], 4), num(r["i2i_recall50_warm"], 4))
        for r in s["rows"]
    ]
    rows.append(row("chance (50 / movies)", "-", num(s["i2i_chance"], 4), num(s["i2i_chance"], 4)))
    header = ("encoder", "encode items/s", f"i2i Recall@50, cold ({q['cold']:,} queries)", f"warm ({q['warm']:,} queries)")
    return grid(header, "lrrr", rows)


@table("train", "protocol", "the time-ordered protocol over the test period, likes of cold and warm items (cre)")
def train_protocol(payload: Payload) -> str:
    s = _summary(payload)
    if "i2i_queries" not in s:
        raise Missing("not a cre-movielens run")
    rows = [
        row(r["encoder"], group, m["method"], num(m["hit_rate_10"], 4), num(m["hit_rate_50"], 4), f"{m['queries']:,}")
        for r in s["rows"]
        for group, methods in r["protocol"].items()
        for m in methods
    ]
    return grid(("encoder", "liked item", "method", "HitRate@10", "HitRate@50", "likes"), "lllrrr", rows)


@table("train", "recall", "text->image Recall@10 on the held-out emoji (vision)")
def train_recall(payload: Payload) -> str:
    s = _summary(payload)
    if "held_out" not in s:
        raise Missing("not a vision-emoji run")
    rows = [row(r["encoder"], num(r["text_to_image_recall10"], 4)) for r in s["rows"]]
    return grid(("encoder", f"text->image Recall@10 ({s['held_out']:,} held out)"), "lr", rows)


# ---------------------------------------------------------------------- bench.faults


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _fault(f: Mapping[str, Any]) -> str:
    text = f"{f['what']}: {_seconds(f['resumed_s'])} / {_seconds(f['caught_up_s'])}"
    if f.get("under_replicated") is not None:
        seen = ", ".join(f"{where} {n}" for where, n in f["under_replicated"].items())
        return f"{text} (under-replicated partitions seen: {seen})"
    if f.get("in_sync_again_s") is not None:
        return f"{text} (all in sync again {f['in_sync_again_s']:.1f} s after the restart)"
    return text


@table("faults", "scenarios", "each scenario: events, verified, lost, dead-lettered, recovery times")
def faults_scenarios(payload: Payload) -> str:
    rows = [
        row(
            r["scenario"],
            f"{r['events_in']:,}",
            f"{r['items_verified']:,} / {r['uploads']:,}",
            f"{r['users_verified']:,} / {r['users_verified'] + r['users_wrong']:,}",
            r["lost"],
            f"{r['dead_lettered']:,} ({r['bad_sent']:,})",
            r["good_dead_lettered"],
            "; ".join(_fault(f) for f in r["faults"]) or "none",
            f"{r['drained_s']:.1f} s",
            "-" if "longest_commit_wait_s" not in r else f"{r['longest_commit_wait_s']:.0f} s",
            ", ".join(f"{kind} {n}" for kind, n in (r.get("repairs") or {}).items()) or ("none" if "repairs" in r else "-"),
            f"{r['worker_peak_rss_mb']:,.0f} MiB",
            "pass" if r["passed"] else "FAIL: " + "; ".join(r["problems"]),
        )
        for r in _summary(payload)["results"]
    ]
    header = (
        "scenario",
        "events in",
        "items verified",
        "users verified",
        "lost",
        "dead-lettered (bad sent)",
        "good in DLQ",
        "faults: resumed / caught up after",
        "drained after stream",
        "longest without a commit",
        "commit repairs",
        "worker peak RSS",
        "result",
    )
    return grid(header, "lrrrrrrlrrlrl", rows)


@table("faults", "hostile", "the hostile scenario's bad messages by kind")
def faults_hostile(payload: Payload) -> str:
    hostile = [r for r in _summary(payload)["results"] if r["scenario"] == "hostile"]
    if not hostile:
        raise Missing("the run had no hostile scenario")
    r = hostile[0]
    rows = [row(kind, f"{n:,}") for kind, n in r["bad_kinds"].items()]
    rows.append(row(f"all (extra dead letters from replays: {r['bad_dead_lettered_again']:,})", f"{r['bad_sent']:,}"))
    return grid(("kind", "sent"), "lr", rows)


# ---------------------------------------------------------------------- bench.overload


@table("overload", "runs", "the stand-in's capacity, the pipeline from a backlog, at 50 % and 80 %, sail-tiny beside a CPU hog")
def overload_runs(payload: Payload) -> str:
    rows = []
    for r in _summary(payload)["rows"]:
        fresh = "-" if r["freshness_p50_s"] is None else " / ".join(num(r[f"freshness_p{q}_s"], 2) for q in (50, 95, 99))
        bare = r["run"] == "bare client"  # the capacity: full batches from the client itself, no topic, no rows
        rows.append(
            row(
                r["encoder"],
                r["run"],
                "-" if bare else "backlog" if r["offered_items_s"] is None else num(r["offered_items_s"]),
                "-" if bare else f"{r['items']:,}",
                num(r["items_s"]),
                num(r["vs_capacity"], 2),
                fresh,
                num(r["duty"], 2),
                r["recomputed"],
                r["cpu"],
            )
        )
    header = (
        "encoder",
        "run",
        "offered items/s",
        "items",
        "items/s",
        "/ capacity",
        "freshness p50 / p95 / p99 (s)",
        "encoder duty",
        "recomputed",
        "CPU: worker / kafka / milvus / triton",
    )
    return grid(header, "llrrrrlrrl", rows)


@table("overload", "overload", "150 % of capacity, then 50 %: throughput, duty, recovery")
def overload_overload(payload: Payload) -> str:
    o = _summary(payload).get("overload")
    if not o:
        raise Missing("the run had no overload")
    rows = [
        row(
            "offered: overload (150 %), then recovery (50 %)",
            f"{num(o['offered_high_items_s'])} / {num(o['offered_low_items_s'])} items/s",
        ),
        row("overload window", f"{num(o['overload_s'])} s"),
        row("items/s stored during the overload", num(o["items_s_during_overload"])),
        row("... / capacity", num(o["vs_capacity_during_overload"], 2)),
        row("encoder duty during the overload", num(o["duty_during_overload"], 2)),
        row(
            "freshness p99 back under 1 s after", "not within the run" if o["recovery_s"] is None else f"{o['recovery_s']:.0f} s"
        ),
        row("share of the later seconds under 1 s", "-" if o["fresh_share_after"] is None else f"{o['fresh_share_after']:.0%}"),
        row("FIFO bound: backlog left / spare capacity", f"{num(o['drain_bound_s'], 0)} s"),
        row("requests recomputed", o["recomputed"]),
        row("CPU during the overload: worker / kafka / milvus / triton / load generator", o["cpu_during_overload"]),
    ]
    return grid(("figure", "value"), "lr", rows)


@chart("overload", "freshness", "Upload freshness against offered load (share of the stand-in's capacity)")
def overload_freshness(payload: Payload, figure: Any) -> None:
    s = _summary(payload)
    capacity = s.get("capacity_items_s")
    rows = [r for r in s.get("rows", []) if r.get("freshness_p50_s") is not None and r.get("offered_items_s") is not None]
    if not rows or not capacity:
        raise Missing("no offered run with freshness")
    _freshness_axes(
        figure,
        [(r["offered_items_s"] / capacity, 1, r["freshness_p50_s"], r["freshness_p95_s"], r["freshness_p99_s"]) for r in rows],
        "offered load / stand-in capacity (bare client)",
    )


@chart("overload", "lag", "Consumer lag and items stored per second through the overload and its recovery")
def overload_lag(payload: Payload, figure: Any) -> None:
    s = _summary(payload)
    o = s.get("overload") or {}
    series = o.get("series") or []
    if not series:
        raise Missing("no overload series")
    t = [p["t_s"] for p in series]
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.plot(t, [p["lag"] for p in series], color="tab:red")
    top.set_ylabel("lag (uploads not yet stored)")
    bottom.plot(t, [p["items_per_s"] for p in series], color="tab:blue", linewidth=0.8, label="stored items/s")
    for rate, label, style in (
        (s.get("capacity_items_s"), "capacity (bare client)", "--"),
        (o.get("offered_high_items_s"), "offered during the overload", ":"),
        (o.get("offered_low_items_s"), "offered after it", "-."),
    ):
        if rate:
            bottom.axhline(rate, color="grey", linewidth=0.8, linestyle=style, label=label)
    bottom.set_ylabel("items/s")
    bottom.set_xlabel("seconds since the overload began")
    bottom.legend(fontsize=7, loc="lower right")
    for ax in (top, bottom):
        ax.axvline(o["overload_s"], color="black", linewidth=0.8, linestyle="--")
        ax.grid(True, linewidth=0.3)


# ---------------------------------------------------------------------- bench.reembed


def _freshness(f: Mapping[str, Any]) -> str:
    if not f or f.get("p50_s") is None:
        return "-"
    return f"p50 {num(f['p50_s'], 2)} s, p99 {num(f['p99_s'], 2)} s (n = {f['n']:,})"


@table("reembed", "run", "a model change under live traffic: freshness around the backfill, the swap, recall's answers")
def reembed_run(payload: Payload) -> str:
    s = _summary(payload)
    base, during = s["baseline_freshness"], s["backfill_freshness"]
    ratio = during["p99_s"] / base["p99_s"] if base.get("p99_s") and during.get("p99_s") is not None else None
    rows = [
        row("encoders: live -> new", f"`{s['live_encoder']}` -> `{s['new_encoder']}`"),
        row("catalogue through the worker", f"{s['items']:,} items in {num(s['catalogue_s'], 0)} s"),
        row(
            "new encoder capacity (bare client) / backfill cap",
            f"{num(s['new_encoder_capacity_items_s'])} / {num(s['max_rate_items_s'])} items/s",
        ),
        row(
            "backfill",
            f"{num(s['backfill_items_s'])} items/s, {num(s['backfill_s'], 0)} s; users phase {num(s['users_phase_s'], 0)} s; "
            f"{s['followed_records']:,} records followed",
        ),
        row("upload freshness, baseline (traffic only)", _freshness(base)),
        row("upload freshness during the backfill", f"{_freshness(during)}; p99 {times(ratio)} the baseline"),
        row("upload freshness after the swap", _freshness(s["after_swap_freshness"])),
        row("counts at the swap", s["counts"]),
        row("the swap's registry write", "-" if s["swap_write_ms"] is None else f"{num(s['swap_write_ms'], 0)} ms"),
        row(
            "recall's first new-version answer after the swap",
            "-" if s["recall_switch_s"] is None else f"{num(s['recall_switch_s'])} s",
        ),
        row("recall queries / errors", f"{s['recall_queries']:,} / {s['recall_errors']:,}"),
        row("answers served mixing versions (query vector or items)", f"{s['recall_mixed']:,}"),
        row("version mismatches refused (409)", f"{s['recall_mixed_refused']:,}"),
        row("recall answers by version", _counts(s["recall_by_version"])),
        row("whole run", f"{num(s['total_s'], 0)} s"),
    ]
    return grid(("figure", "value"), "lr", rows)


# ---------------------------------------------------------------------- bench.hostile --fuzz


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"


@table("fuzz", "run", "the end-to-end fuzzer: seeded mutations through the decoder and the real pipeline")
def fuzz_run(payload: Payload) -> str:
    s = _summary(payload)
    rows = [
        row(
            "generated (uploads / interactions)",
            f"{s['generated']:,} ({' / '.join(f'{v:,}' for v in s['generated_by_topic'].values())})",
        ),
        row("refused by the decoder", f"{s['refused_by_decoder']:,}: {_counts(s['refused_by_reason'])}"),
        row("accepted", f"{s['accepted']:,}"),
        row("accepted uploads stored exactly as decoded", f"{s['uploads_stored']:,}"),
        row("accepted interactions applied as the maths says", f"{s['interactions_applied']:,}"),
        row("accepted, then dead-lettered", _counts(s["accepted_dead_lettered_by_reason"])),
        row("**violations** (lost, mangled, or stored against the contract)", f"**{s['violations']:,}**"),
    ]
    return grid(("figure", "value"), "lr", rows)


# ---------------------------------------------------------------------- bench.scale


@table("scale", "growth", "upsert and search latency, recall@10, import rate and footprint as one collection grows, per backend")
def scale_growth(payload: Payload) -> str:
    s = _summary(payload)
    growth = s.get("upsert_p99_growth", {})
    rows = [
        row(
            r["backend"],
            f"{p['rows']:,}",
            num(p["upsert_p50_ms"]),
            num(p["upsert_p99_ms"]),
            num(p["search_p50_ms"]),
            num(p["search_p99_ms"]),
            num(p["recall_at_10"], 3),
            f"{p['import_rows_per_s']:,}",
            num(p["rss_mib"], 0),
            num(p["disk_mib"], 0),
        )
        for r in s["runs"]
        for p in r["points"]
    ]
    header = (
        "backend",
        "rows",
        f"upsert of {s['rows_per_upsert']} rows p50 ms",
        "p99 ms",
        "search top-10 p50 ms",
        "p99 ms",
        "recall@10 vs exact",
        "import rows/s",
        "Milvus RSS MiB",
        "disk MiB",
    )
    ratios = "; ".join(f"{backend}: {times(value)}" for backend, value in growth.items())
    return grid(header, "lrrrrrrrrr", rows) + f"\n\nUpsert p99 at the largest size over p99 at the smallest: {ratios}."


def _goal(value: float | None, met: bool | None) -> str:
    return "-" if value is None or met is None else ("met" if met else "**missed**")


def _lite_limit(s: Mapping[str, Any]) -> str:
    held, fell = s.get("lite_max_items"), s.get("lite_first_below_floor")
    if held:
        return f"{held:,} rows" + (f" (below at {fell:,})" if fell else "")
    return f"below the smallest size tried ({fell:,} rows)" if fell else "-"


@table("scale", "goals", "the catalogue run's acceptance figures against issue 33's goals")
def scale_goals(payload: Payload) -> str:
    s = _summary(payload)
    if "upsert_p99_ms_1m" not in s:
        raise Missing("no server run")
    growth = s["upsert_p99_ms_1m"] / s["upsert_p99_ms_10k"]
    recall_ok = None if s["recall_p99_ms_1m"] is None else s["recall_p99_ms_1m"] < 50 and s["hnsw_recall_at_10"] >= 0.95
    fresh = s.get("freshness_p99_s_80_1m")
    content = s.get("content_vs_capacity_1m")
    rows = [
        row("items / users on the server", f"{s['items']:,} / {s['users']:,}", "1,000,000 / 100,000", "-"),
        row(
            "upsert p99 of 64 rows, at 10k / at the largest size",
            f"{num(s['upsert_p99_ms_10k'])} / {num(s['upsert_p99_ms_1m'])} ms ({times(growth)})",
            "<= 1.5x",
            _goal(growth, growth <= 1.5),
        ),
        row(
            "content path / stand-in capacity, at 10k / at the largest size",
            f"{num(s.get('content_vs_capacity_10k'), 3)} / {num(content, 3)}",
            ">= 0.95",
            _goal(content, None if content is None else content >= 0.95),
        ),
        row(
            "upload freshness p99 at 80 % of capacity",
            f"{num(fresh, 3)} s",
            "< 1 s",
            _goal(fresh, None if fresh is None else fresh < 1),
        ),
        row(
            "recall API p99 (worse of u2i, i2i) / HNSW recall@10",
            f"{num(s['recall_p99_ms_1m'])} ms / {num(s['hnsw_recall_at_10'], 3)}",
            "< 50 ms with >= 0.95",
            _goal(s["recall_p99_ms_1m"], recall_ok),
        ),
        row("Lite: largest size whose content path drained >= 0.9 of capacity", _lite_limit(s), "-", "-"),
    ]
    return grid(("figure", "value", "goal", "verdict"), "llll", rows)


@table("scale", "catalogue", "each size of the catalogue run: import, index, upserts, searches, content path, footprint")
def scale_catalogue(payload: Payload) -> str:
    s = _summary(payload)
    rows = [
        row(
            r["backend"],
            f"{p['rows']:,}",
            f"{p['import_rows_per_s']:,}" if p.get("import_rows_per_s") else "-",
            num(p.get("index_wait_s")),
            num(p.get("quiet_wait_s")),
            num(p["upsert_p50_ms"]),
            num(p["upsert_p99_ms"]),
            num(p["search_p50_ms"]),
            num(p["search_p99_ms"]),
            num(p["recall_at_10"], 3),
            num(p["content"]["vs_capacity"], 3) if "content" in p else "-",
            num(p["rss_mib"], 0),
            num(p["disk_mib"], 0),
        )
        for r in s["runs"]
        for p in r["points"]
    ]
    header = (
        "backend",
        "rows",
        "import rows/s",
        "index wait s",
        "quiet wait s",
        f"upsert of {s['rows_per_upsert']} rows p50 ms",
        "p99 ms",
        "search top-10 p50 ms",
        "p99 ms",
        "recall@10 vs exact",
        "content path / capacity",
        "Milvus RSS MiB",
        "disk MiB",
    )
    server = next((r for r in s["runs"] if r["backend"] == "server"), None)
    notes = []
    if server and "recall" in server:
        rc = server["recall"]
        notes.append(
            f"Recall API at {rc['rows']:,} items and {server['users']:,} users (its own process, Bounded, k=10): "
            + "; ".join(
                f"{kind} p50 {num(rc[f'{kind}_p50_ms'])} ms, p99 {num(rc[f'{kind}_p99_ms'])} ms, "
                f"max {num(rc[f'{kind}_max_ms'])} ms, {rc[f'{kind}_over_50_ms']} calls over 50 ms"
                for kind in ("u2i", "i2i")
            )
            + "."
        )
    if server and "offered_80" in server:
        o = server["offered_80"]
        notes.append(
            f"Uploads at 80 % of the stand-in's {num(server['capacity_items_s'])} items/s on {o['rows']:,} rows: "
            f"{num(o['items_s'])} items/s stored, freshness p50 {num(o['freshness_p50_s'], 3)} s, "
            f"p99 {num(o['freshness_p99_s'], 3)} s."
        )
    return grid(header, "lrrrrrrrrrrrr", rows) + ("\n\n" + " ".join(notes) if notes else "")


@chart("scale", "upserts", "Upsert p99 of a 64-row batch against the collection's size, per Milvus backend")
def scale_upserts(payload: Payload, figure: Any) -> None:
    runs = [r for r in _summary(payload)["runs"] if r["points"]]
    if not runs:
        raise Missing("no backend measured")
    ax = figure.add_subplot(1, 1, 1)
    for r, marker, colour in zip(runs, "os^", ("tab:blue", "tab:green", "tab:red")):
        rows = [p["rows"] for p in r["points"]]
        ax.plot(rows, [p["upsert_p99_ms"] for p in r["points"]], f"{marker}-", color=colour, label=f"{r['backend']} p99")
        ax.plot(rows, [p["upsert_p50_ms"] for p in r["points"]], f"{marker}:", color=colour, label=f"{r['backend']} p50")
    ax.set_xscale("log")
    ax.set_xlabel("rows in the items collection")
    ax.set_ylabel("upsert of 64 rows (ms)")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=8)


# ---------------------------------------------------------------------- blocks


def render_table(result: str, name: str, results_dir: Path) -> str:
    """The body of `<!-- results: RESULT/NAME -->`: the table, a blank line, the machine line.

    Raises:
        LookupError: no renderer of that name, no such results file, or the payload lacks the table's figures.
    """
    renderer = TABLES.get((benchmark_of(result), name))
    if renderer is None:
        raise LookupError(f"no table renderer {benchmark_of(result)}/{name}")
    payload = _payload(result, results_dir)
    return f"{renderer.render(payload)}\n\n{machine_line(payload)}"


def chart_path(result: str, name: str, results_dir: Path) -> Path:
    return results_dir / "charts" / f"{result}-{name}.png"


def chart_png(result: str, name: str, results_dir: Path) -> bytes:
    """The chart as PNG bytes, the same bytes for the same payload and matplotlib.

    Raises:
        LookupError: no renderer of that name, no such results file, or the payload lacks the chart's series.
    """
    renderer = CHARTS.get((benchmark_of(result), name))
    if renderer is None:
        raise LookupError(f"no chart renderer {benchmark_of(result)}/{name}")
    payload = _payload(result, results_dir)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.style
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"):  # not the user's matplotlibrc
        figure = Figure(figsize=CHART_SIZE_IN, dpi=CHART_DPI, layout="constrained")
        renderer.draw(payload, figure)
        figure.suptitle(f"{renderer.what} ({payload.get('date', '?')})", fontsize=9)
        out = io.BytesIO()
        figure.savefig(out, format="png", dpi=CHART_DPI, metadata={"Software": None})  # no version stamp
    return out.getvalue()


def render_chart(result: str, name: str, results_dir: Path, markdown: Path) -> str:
    """The body of `<!-- chart: RESULT/NAME -->`: the image link (relative to `markdown`), the machine line.

    Raises:
        LookupError: as `render_table`.
    """
    renderer = CHARTS.get((benchmark_of(result), name))
    if renderer is None:
        raise LookupError(f"no chart renderer {benchmark_of(result)}/{name}")
    payload = _payload(result, results_dir)
    link = Path(os.path.relpath(chart_path(result, name, results_dir), markdown.resolve().parent)).as_posix()
    return f"![{renderer.what}]({link})\n\n{machine_line(payload)}"


def _payload(result: str, results_dir: Path) -> Payload:
    path = results_dir / f"{result}.json"
    if not path.exists():
        raise LookupError(f"no results file {path}")
    data: Payload = json.loads(path.read_text())
    return data


@dataclass(frozen=True, slots=True)
class Block:
    kind: str  # "results" or "chart"
    result: str
    name: str
    body: str  # the text between the two marker lines, without its final newline
    line: int  # of the opening marker, from 1
    span: tuple[int, int]  # the body's character span in the file


def blocks(text: str) -> tuple[list[Block], list[str]]:
    """Every generated block of a markdown text, and the problems of markers that open no block."""
    found = []
    for m in BLOCK.finditer(text):
        body = m.group(4)
        found.append(
            Block(
                m.group(1),
                m.group(2),
                m.group(3),
                body[:-1] if body.endswith("\n") else body,
                text.count("\n", 0, m.start()) + 1,
                (m.start(4), m.end(4)),
            )
        )
    inside = {m.start() for m in BLOCK.finditer(text)}
    problems = [
        f"line {text.count(chr(10), 0, m.start()) + 1}: a marker without its closing <!-- /{m.group(1)} --> "
        "(or a malformed NAME/RENDERER)"
        for m in OPENING.finditer(text)
        if m.start() not in inside
    ]
    return found, problems


def rendered(block: Block, results_dir: Path, markdown: Path) -> str:
    """What `block`'s body should be.

    Raises:
        LookupError: as `render_table`.
    """
    if block.kind == "results":
        return render_table(block.result, block.name, results_dir)
    return render_chart(block.result, block.name, results_dir, markdown)


# A table's delimiter row (`|---|---:|`); a cell with a colon aligns its column, which only a column of figures wants.
DELIMITER = re.compile(r"^\|(?:\s*:?-+:?\s*\|)+\s*$")


def hand_written_figures(text: str) -> list[str]:
    """Every table outside a generated block with an aligned column (`---:`): figures typed by hand.

    A table of words (a case and what happens, columns left as they are) may stand in prose; a table of
    figures must come from a results file, or it can drift from what was measured.
    """
    spans = [m.span() for m in BLOCK.finditer(text)]
    problems = []
    for m in re.finditer(r"^.*$", text, re.MULTILINE):
        line = m.group(0)
        if DELIMITER.match(line) and ":" in line and not any(a <= m.start() < b for a, b in spans):
            header = text.rfind("\n", 0, m.start() - 1) + 1
            problems.append(
                f"line {text.count(chr(10), 0, header) + 1}: a table of figures written by hand "
                "(generate it from bench/results, or move the record to bench/HISTORY.md)"
            )
    return problems


def check(markdown: Path = MARKDOWN, results_dir: Path = RESULTS_DIR) -> list[str]:
    """Every generated block of `markdown` that differs from its rendering (with a diff), or cannot be rendered,
    and every table of figures outside a generated block."""
    text = markdown.read_text()
    found, problems = blocks(text)
    problems = [f"{markdown.name}: {p}" for p in [*problems, *hand_written_figures(text)]]
    for block in found:
        where = f"{markdown.name}:{block.line}: {block.kind}: {block.result}/{block.name}"
        try:
            want = rendered(block, results_dir, markdown)
        except LookupError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if block.body != want:
            diff = difflib.unified_diff(block.body.splitlines(), want.splitlines(), markdown.name, "from the JSON", lineterm="")
            problems.append(f"{where}: differs from {block.result}.json\n" + "\n".join(f"    {line}" for line in diff))
        if block.kind == "chart" and not chart_path(block.result, block.name, results_dir).exists():
            problems.append(f"{where}: {chart_path(block.result, block.name, results_dir)} is missing: run --write")
    return problems


def write(pages: Path | Sequence[Path] = MARKDOWNS, results_dir: Path = RESULTS_DIR) -> tuple[list[str], list[Path]]:
    """Re-render every block of each page in place, then draw every chart with a series once:
    (problems, charts written)."""
    problems: list[str] = []
    linked: dict[tuple[str, str], str] = {}  # (result, chart) -> the first page that links it
    for markdown in [pages] if isinstance(pages, Path) else pages:
        text = markdown.read_text()
        found, page_problems = blocks(text)
        problems += [f"{markdown.name}: {p}" for p in page_problems]
        out, at = [], 0
        for block in found:
            try:
                body = rendered(block, results_dir, markdown) + "\n"
            except LookupError as exc:
                problems.append(
                    f"{markdown.name}:{block.line}: {block.kind}: {block.result}/{block.name}: {exc} (left as it was)"
                )
                continue
            out += [text[at : block.span[0]], body]
            at = block.span[1]
        new = "".join([*out, text[at:]])
        if new != text:
            markdown.write_text(new)
        for b in found:
            if b.kind == "chart":
                linked.setdefault((b.result, b.name), markdown.name)
    written = []
    for path in sorted(results_dir.glob("*.json")):
        result = path.stem
        for benchmark, name in sorted(CHARTS):
            if benchmark != benchmark_of(result):
                continue
            try:
                png = chart_png(result, name, results_dir)
            except Missing:
                if (result, name) in linked:
                    problems.append(f"{linked[result, name]}: chart: {result}/{name}: {result}.json has no series for it")
                continue
            target = chart_path(result, name, results_dir)
            if not target.exists() or target.read_bytes() != png:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(png)
                written.append(target)
    return problems, written


# The results files each benchmark writes (its `write_result` names), for --help.
RESULT_FILES = {
    "encoder": "encoder-ENCODER[-cover][-Nframes][-quick]",
    "faults": "faults (every scenario), faults-SCENARIO[-SCENARIO...]",
    "interest": "interest, interest-Nbrokers",
    "overload": "overload, overload-only",
    "pipeline": "pipeline, pipeline-quick",
    "quality": "quality[-sid][-Nratings]",
    "train": "train-cre, train-vision",
}


def catalogue() -> str:
    """The results files, tables and charts, for --help."""
    lines = ["results files (bench/results/NAME.json) by benchmark:"]
    lines += [f"  {b:<10} {names}" for b, names in sorted(RESULT_FILES.items())]
    lines += ["", "tables, <!-- results: NAME/TABLE --> (NAME: any results file of the benchmark):"]
    lines += [f"  {b:<10} {n:<10} {t.what}" for (b, n), t in sorted(TABLES.items())]
    lines += ["", "charts, <!-- chart: NAME/CHART --> (drawn to bench/results/charts/NAME-CHART.png):"]
    lines += [f"  {b:<10} {n:<10} {c.what}" for (b, n), c in sorted(CHARTS.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description=__doc__,
        epilog=catalogue(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="re-render every generated block in place, and draw the charts")
    mode.add_argument("--check", action="store_true", help="exit 1, listing every block that differs from its JSON")
    parser.add_argument(
        "--markdown",
        type=Path,
        action="append",
        help="a markdown file to check or write (repeatable; default: BENCHMARKS.md and RELIABILITY.md)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="the results folder (default: bench/results)")
    args = parser.parse_args(argv)
    pages = args.markdown or list(MARKDOWNS)
    if args.check:
        problems = [p for page in pages for p in check(page, args.results)]
        for problem in problems:
            print(problem)
        names = ", ".join(page.name for page in pages)
        print(f"{names}: {'tables differ from their JSON' if problems else 'every table is generated and matches'}")
        return 1 if problems else 0
    problems, written = write(pages, args.results)
    for path in written:
        print(f"wrote {path}")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
