"""BENCHMARKS.md's generated blocks against bench/results/*.json (`bench.report`), and the summaries the
benchmarks hand to `write_result`: every check here runs on small payloads in temporary folders, except
the ones that read the committed BENCHMARKS.md and bench/results/."""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.results import RESULTS_DIR, write_result

BENCH = Path(report.__file__).resolve().parent
NOW = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
MACHINE = {"cpu": "AMD EPYC", "cores": 2, "memory_gib": 7.8, "os": "Linux 6.18", "python": "3.11.7"}


def _payload(name: str, summary: dict[str, Any], command: str = "python -m bench.encoder --quick") -> dict[str, Any]:
    return {"benchmark": name, "date": "2026-12-01 09:30 UTC", "command": command, "machine": MACHINE, "summary": summary}


def _save(results: Path, name: str, summary: dict[str, Any]) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(_payload(name, summary), indent=2) + "\n")


ENCODER_SUMMARY = {
    "items": 96,
    "batches": [8, 32],
    "queue_delays_us": [2000],
    "runtime": {"torch": "2.15.0", "device": "cpu"},
    "rows": [
        {
            "encoder": "sail-tiny",
            "media": "text",
            "batch": 8,
            "queue_delay_us": 2000,
            "in_process_items_s": 1234.5,
            "triton_items_s": 64.2,
            "ratio": 0.052,
        },
        {
            "encoder": "sail-tiny",
            "media": "text",
            "batch": 32,
            "queue_delay_us": 2000,
            "in_process_items_s": 80.3,
            "triton_items_s": 67.9,
            "ratio": 0.8456,
        },
    ],
}


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = report.main(list(argv))
    return code, out.getvalue()


# ---------------------------------------------------------------------- rendering


def test_a_table_renders_its_payload_with_fixed_formats_and_the_machine_line(tmp_path: Path) -> None:
    _save(tmp_path, "encoder-sail-tiny-quick", ENCODER_SUMMARY)
    assert report.render_table("encoder-sail-tiny-quick", "batches", tmp_path) == "\n".join(
        [
            "| encoder | media | batch | Triton queue delay (µs) | in-process items/s | Triton items/s | Triton / in-process |",
            "|---|---|---:|---:|---:|---:|---:|",
            "| sail-tiny | text | 8 | 2000 | 1,234.5 | 64.2 | 0.05 |",
            "| sail-tiny | text | 32 | 2000 | 80.3 | 67.9 | 0.85 |",
            "",
            "Machine: AMD EPYC, 2 cores, 7.8 GiB, Linux 6.18, Python 3.11.7; torch 2.15.0; device cpu. "
            "Measured 2026-12-01 09:30 UTC: `python -m bench.encoder --quick`.",
        ]
    )


def test_a_results_file_belongs_to_the_benchmark_before_its_first_dash() -> None:
    assert report.benchmark_of("encoder-sail-tiny-omni") == "encoder"
    assert report.benchmark_of("train-cre") == "train"
    assert report.benchmark_of("overload") == "overload"


def test_unknown_renderer_or_missing_file_or_missing_phase_is_a_lookup_error(tmp_path: Path) -> None:
    _save(tmp_path, "encoder-sail-tiny", ENCODER_SUMMARY)
    _save(tmp_path, "interest", {"drains": [], "naive_interactions_s": 40.0, "floor_per_s": {}})
    with pytest.raises(LookupError, match="no table renderer"):
        report.render_table("encoder-sail-tiny", "nope", tmp_path)
    with pytest.raises(LookupError, match="no results file"):
        report.render_table("encoder-other", "batches", tmp_path)
    with pytest.raises(report.Missing, match="--no-floor"):
        report.render_table("interest", "floor", tmp_path)


# ---------------------------------------------------------------------- --write and --check


MARKDOWN = """# Benchmarks

Prose that the report never touches: 1,234.5 items/s.

<!-- results: encoder-sail-tiny-quick/batches -->
<!-- /results -->

More prose.
"""


def test_write_renders_blocks_in_place_and_check_then_passes(tmp_path: Path) -> None:
    results, md = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    _save(results, "encoder-sail-tiny-quick", ENCODER_SUMMARY)
    md.write_text(MARKDOWN)
    assert _run("--check", "--markdown", str(md), "--results", str(results))[0] == 1  # the empty block differs
    assert _run("--write", "--markdown", str(md), "--results", str(results))[0] == 0
    text = md.read_text()
    assert "| sail-tiny | text | 32 | 2000 | 80.3 | 67.9 | 0.85 |" in text
    assert text.startswith(MARKDOWN.split("<!-- results")[0]) and text.endswith("<!-- /results -->\n\nMore prose.\n")
    code, out = _run("--check", "--markdown", str(md), "--results", str(results))
    assert code == 0, out
    assert _run("--write", "--markdown", str(md), "--results", str(results))[0] == 0
    assert md.read_text() == text  # a second write changes nothing


def test_check_fails_when_a_number_in_the_markdown_differs_from_the_json(tmp_path: Path) -> None:
    results, md = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    _save(results, "encoder-sail-tiny-quick", ENCODER_SUMMARY)
    md.write_text(MARKDOWN)
    report.write(md, results)
    md.write_text(md.read_text().replace("| 80.3 | 67.9 |", "| 80.3 | 69.7 |"))  # someone "fixes" a figure by hand
    code, out = _run("--check", "--markdown", str(md), "--results", str(results))
    assert code == 1
    assert "BENCHMARKS.md:5: results: encoder-sail-tiny-quick/batches: differs from encoder-sail-tiny-quick.json" in out
    assert "-| sail-tiny | text | 32 | 2000 | 80.3 | 69.7 | 0.85 |" in out
    assert "+| sail-tiny | text | 32 | 2000 | 80.3 | 67.9 | 0.85 |" in out


def test_check_fails_when_the_json_moves_and_the_markdown_does_not(tmp_path: Path) -> None:
    results, md = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    _save(results, "encoder-sail-tiny-quick", ENCODER_SUMMARY)
    md.write_text(MARKDOWN)
    report.write(md, results)
    rerun = json.loads(json.dumps(ENCODER_SUMMARY))
    rerun["rows"][1]["triton_items_s"] = 70.0
    _save(results, "encoder-sail-tiny-quick", rerun)
    assert len(report.check(md, results)) == 1


def test_check_reports_unknown_renderers_missing_files_and_unclosed_markers(tmp_path: Path) -> None:
    results, md = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    _save(results, "encoder-sail-tiny", ENCODER_SUMMARY)
    md.write_text(
        "<!-- results: encoder-sail-tiny/typo -->\n<!-- /results -->\n"
        "<!-- results: pipeline/runs -->\n<!-- /results -->\n"
        "<!-- results: encoder-sail-tiny/batches -->\nno end\n"
        "In a sentence, `<!-- results: NAME/TABLE -->` is prose.\n"
    )
    problems = report.check(md, results)
    assert [p.split(": ", 1)[1] if p.startswith("BENCHMARKS.md: ") else p for p in problems] == [
        "line 5: a marker without its closing <!-- /results --> (or a malformed NAME/RENDERER)",
        "BENCHMARKS.md:1: results: encoder-sail-tiny/typo: no table renderer encoder/typo",
        f"BENCHMARKS.md:3: results: pipeline/runs: no results file {results / 'pipeline.json'}",
    ]
    before = md.read_text()
    problems, _ = report.write(md, results)
    assert len(problems) == 3 and md.read_text() == before  # blocks it cannot render are left as they were


# ---------------------------------------------------------------------- the committed files


@pytest.mark.parametrize("page", report.MARKDOWNS, ids=lambda p: p.name)
def test_published_tables_are_generated_and_equal_their_json(page: Path) -> None:
    """Every `<!-- results: -->` and `<!-- chart: -->` block of BENCHMARKS.md and RELIABILITY.md names a
    committed results file and a registered renderer, and equals its rendering; no table of figures is
    typed by hand outside a block."""
    text = page.read_text()
    found, problems = report.blocks(text)
    assert problems == []
    assert found, f"{page.name} shows no generated figures"
    for block in found:
        assert (RESULTS_DIR / f"{block.result}.json").exists(), block
        registry = report.TABLES if block.kind == "results" else report.CHARTS
        assert (report.benchmark_of(block.result), block.name) in registry, block
    assert report.check(page) == []
    # Before its first table, the page tells a reader that the tables are generated, and how
    assert "python -m bench.report --write" in text.split("\n<!-- results: ", 1)[0]


def test_a_table_of_figures_outside_a_block_is_refused(tmp_path: Path) -> None:
    """A hand-typed table of figures cannot pass for a measured one; a table of words in prose may stand."""
    words = "| case | what happens |\n|---|---|\n| a kill | it resumes |\n"
    figures = "| run | items/s |\n|---|---:|\n| one | 80.3 |\n"
    assert report.hand_written_figures("Prose.\n\n" + words) == []
    problems = report.hand_written_figures("Prose.\n\n" + words + "\n" + figures)
    assert problems == [
        "line 7: a table of figures written by hand (generate it from bench/results, or move the record to bench/HISTORY.md)"
    ]
    # The same table inside a generated block is the block's business (compared with its JSON), not this rule's
    assert report.hand_written_figures("<!-- results: x/y -->\n" + figures + "<!-- /results -->\n") == []
    md = tmp_path / "page.md"
    md.write_text("# Page\n\n" + figures)
    assert report.check(md, tmp_path) == [f"page.md: {problems[0].replace('line 7', 'line 3')}"]


def test_every_committed_results_file_can_be_shown() -> None:
    """A results file of a benchmark with no renderer could never reach BENCHMARKS.md."""
    families = {benchmark for benchmark, _ in report.TABLES}
    for path in RESULTS_DIR.glob("*.json"):
        payload = json.loads(path.read_text())
        assert report.benchmark_of(path.stem) in families, path
        assert {"benchmark", "date", "command", "machine", "summary"} <= payload.keys(), path


def _benchmarks_with_main() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(BENCH.glob("*.py")):
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            found[path.stem] = tree
    return found


def _calls_write_result(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == "write_result")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "write_result")
        )
        for node in ast.walk(tree)
    )


def test_every_benchmark_with_a_main_writes_its_result() -> None:
    benchmarks = _benchmarks_with_main()
    benchmarks.pop("report")  # renders the results, measures nothing
    assert {"encoder", "pipeline", "interest", "quality", "train", "faults", "overload"} <= benchmarks.keys()
    skipping = sorted(name for name, tree in benchmarks.items() if not _calls_write_result(tree))
    assert skipping == [], f"benchmarks that never call write_result: {skipping}"


def test_every_benchmark_the_report_lists_has_a_table() -> None:
    for name in report.RESULT_FILES:
        assert (BENCH / f"{name}.py").exists(), name
        assert any(b == name for b, _ in report.TABLES), f"{name}: register a table renderer in bench.report"


def test_the_source_check_sees_a_benchmark_that_skips_write_result() -> None:
    skipping = ast.parse("def main() -> None:\n    print('figures')\n")
    wired = ast.parse("from bench import results\n\ndef main() -> None:\n    results.write_result('x', {})\n")
    assert not _calls_write_result(skipping)
    assert _calls_write_result(wired)


# ---------------------------------------------------------------------- the benchmarks' summaries


def _namespace(**values: Any) -> argparse.Namespace:
    return argparse.Namespace(**values)


def _write(tmp_path: Path, name: str, summary: dict[str, object]) -> None:
    write_result(name, summary, results_dir=tmp_path, now=NOW)


def _render_all(tmp_path: Path, name: str) -> dict[str, str | None]:
    """Every table registered for `name`'s benchmark: its text, or None where the run lacks that phase."""
    out: dict[str, str | None] = {}
    for benchmark, table in report.TABLES:
        if benchmark == report.benchmark_of(name):
            try:
                out[table] = report.render_table(name, table, tmp_path)
            except report.Missing:
                out[table] = None
    return out


def test_encoder_summary_renders(tmp_path: Path) -> None:
    from bench.encoder import Row, result_name, summary

    rows = [Row("sail-tiny", "text", 8, 2000, 75.0, 64.2), Row("sail-tiny", "text", 32, 2000, 80.3, 67.9)]
    info = {"torch": "2.15.0", "torch_threads": 2, "device": "cpu"}
    name = result_name("sail-tiny", cover=False, frames=0, quick=True)
    assert name == "encoder-sail-tiny-quick"
    assert result_name("sail-large", cover=True, frames=8, quick=False) == "encoder-sail-large-cover-8frames"
    _write(tmp_path, name, summary(rows, info, 96, [8, 32], [2000]))
    assert "| sail-tiny | text | 32 | 2000 | 80.3 | 67.9 | 0.85 |" in (_render_all(tmp_path, name)["batches"] or "")


def test_pipeline_summary_renders(tmp_path: Path) -> None:
    from bench.pipeline import ContentRun, InterestRun, summary

    cpu = {"kafka": 0.1, "milvus": 0.01, "triton": 0.5, "worker0": 0.1, "producer+bench": 0.05}
    runs = [ContentRun(1, 42.6, 1917, 42.4, 0.3, 0.77, 0.96, cpu), ContentRun(2, 85.3, 3838, 59.5, 14.36, 20.26, 20.75, cpu)]
    headline = {"ceiling_items_s": 85.3}
    _write(
        tmp_path,
        "pipeline",
        summary(False, {"torch": "2.15", "device": "cpu"}, 85.3, runs, 21.1, InterestRun(5000, 1257.5, 199.4), headline),
    )
    tables = _render_all(tmp_path, "pipeline")
    assert "| 50% of the ceiling | 1 | 42.6 | 42.4 | 0.50 | 0.30 / 0.77 / 0.96 | 0.50 / 0.10 / 0.10 / 0.01 / 0.05 |" in (
        tables["runs"] or ""
    )
    assert "| naive per-message pipeline | 1 | backlog | 21.1 | 0.25 | - | - |" in (tables["runs"] or "")
    assert "| one worker, from a backlog of 5,000 | 1,257.5 | 6.3x |" in (tables["interest"] or "")


def _drain(workers: int, applied: float, per_record: int = 1) -> dict[str, object]:
    from dataclasses import asdict

    from bench.interest import Drain

    return asdict(
        Drain(
            workers,
            per_record,
            50_000,
            40.0,
            applied,
            48_500,
            298.5,
            477.0,
            731.0,
            5000,
            {"worker0": 0.4, "kafka": 0.19},
            {"upsert": 300.0, "decode": 50.0, "total": 350.0},
        )
    )


def test_interest_summary_renders(tmp_path: Path) -> None:
    from bench.interest import headline, result_name, summary

    args = _namespace(
        interactions=50_000,
        users=5000,
        items=20_000,
        workers="1,2",
        naive_sample=500,
        paced_s=0.0,
        paced_rate=None,
        paced_warm_s=30.0,
        floor=True,
        batched=200_000,
        per_record=20,
        paused_encoder=True,
        ablations=True,
        seed=14,
    )
    paused = {
        "parked": 812,
        "retry_reads": 1624,
        "retry_reads_per_parked": 2.0,
        "followed": 800,
        "follow_p50_s": 0.3,
        "follow_p99_s": 0.9,
        "follow_max_s": 1.2,
        "drained_s": 55.0,
    }
    printed = {
        "machine": {"cores": 2},
        "kafka_brokers": 3,
        "drains": [_drain(1, 1138.7), _drain(2, 1548.9)],
        "naive_interactions_s": 71.6,
        "vs_naive": 15.9,
        "two_vs_one": 1.36,
        "user_freshness_at_80pct": {},
        "floors": {"kafka": 283840.0, "faust": 4080.0},
        "batched_drain": _drain(1, 9000.0, per_record=20),
        "paused_encoder": paused,
        "ablations": {"faust_monitor": {"single_per_s": 1000.0, "batched_per_s": 8000.0}},
        "profile_top": [],
    } | headline(1138.7, 4080.0, 9000.0, 71.6, {}, paused)
    assert result_name(3) == "interest-3brokers" and result_name(1) == "interest"
    data: Any = summary(args, printed)
    assert "machine" not in data and data["params"]["naive_sample"] == 500
    _write(tmp_path, "interest-3brokers", data)
    tables = _render_all(tmp_path, "interest-3brokers")
    assert "| 2 worker(s) | 50,000 | 40.0 | 1,548.9 | 1.36 | 21.6x |" in (tables["drains"] or "")
    assert "| naive per-event loop (500 events) | - | - | 71.6 |" in (tables["drains"] or "")
    assert "| bare aiokafka, no Faust | 283,840.0 |" in (tables["floor"] or "")
    assert tables["freshness"] is None  # --paced-s 0: no freshness phase, no table
    assert "| 1 worker(s), batch records of 20 | 50,000 | 40.0 | 9,000.0 |" in (tables["drains"] or "")
    goals = tables["goals"] or ""
    assert "| worker, one event per record / empty Faust agent | 0.28 | >= 0.30 | **missed** |" in goals
    assert "| worker, batch records / naive per-event loop | 125.70 | >= 20.00 | met |" in goals
    assert "| worker, batch records: interactions/s | 9,000.00 | >= 10,000.00 | **missed** |" in goals
    assert "| retry-topic reads per parked interaction, Triton frozen 15 s | 2.00 | <= 5.00 | met |" in goals
    assert "user freshness p99" in goals and "| - | <= 1.00 | **missed** |" in goals  # not taken: meets nothing
    assert "| 812 | 1,624 | 2.00 | 800 | 0.30 / 0.90 / 1.20 |" in (tables["paused"] or "")
    assert "| 1 worker(s) | 300.0 | 50.0 | 350.0 | 878.2 |" in (tables["phases"] or "")
    assert "| Faust's own monitor (the quiet one reverted) | 1,000.0 (0.88x) | 8,000.0 (0.89x) |" in (tables["ablations"] or "")


def test_quality_summary_renders_and_charts(tmp_path: Path) -> None:
    from bench.quality import Score, realtime_gain, result_name, summary

    scores = []
    for method, ranks in (("fused", [0, 20, 99]), ("realtime-weighted-K1", [0, 20, 99]), ("daily-weighted-K1", [40, 99, 99])):
        score = Score(method)
        for rank in ranks:
            score.add(rank, [1, 2])
        score.miss()
        scores.append(score.summary(100))
    result: dict[str, object] = {
        "events": 10,
        "likes": 4,
        "methods": scores,
        "warm_methods": scores,
        "fresh_methods": scores[2:],
        "machine": {},
    }
    result["realtime_gain"] = realtime_gain(result)
    args = _namespace(ratings=None, encoder=None, sid=False, sid_levels=3, sid_codes=256, sid_fresh=1000, only=None)
    assert result_name(False, None) == "quality" and result_name(True, 20_000) == "quality-sid-20000ratings"
    _write(tmp_path, "quality", summary(result, args))
    tables = _render_all(tmp_path, "quality")
    # Keyed by name (issue 31's shape): the default method in bold; a method with no fresh like shows "-"
    assert "| **fused** (default) | 0.2500 | 0.5000 | 0.2500 | 0.020 | - | - | 0.2500 | 3 / 4 |" in (tables["methods"] or "")
    assert "| realtime-weighted-K1 | 0.2500 | 0.5000 | 0.2500 | 0.020 | - | - | 0.2500 | 3 / 4 |" in (tables["methods"] or "")
    assert "| daily-weighted-K1 | 0.0000 | 0.2500 | 0.0000 | 0.020 | 0.0000 | 0.2500 | 0.0000 | 3 / 4 |" in (
        tables["methods"] or ""
    )
    assert tables["warm"] is None  # its figures are the served columns now
    assert tables["nightly"] is None  # no ALS in this run
    assert "| realtime-weighted-K1 | - | 2.00x |" in (tables["gain"] or "")  # daily has no hit at 10: no ratio
    assert tables["sid"] is None
    assert tables["pipeline"] is None  # no clocks in this payload


def test_quality_clocks_and_sid_shares_render_against_achieved_and_compute_time(tmp_path: Path) -> None:
    sid = {
        "codebook": "cb",
        "levels": 3,
        "codes": 256,
        "fit_s": 17.0,
        "fitted_items": 9066,
        "utilisation": [1.0, 1.0, 1.0],
        "collision_rate": 0.096,
        "quantisation_error": 0.1234,
        "backfilled": 9066,
        "backfill_s": 5.9,
        "fresh_assigned": 1000,
        "fresh_collisions": 1000,
        "encoder_ms_per_item": 19.7,
        "achieved_ms_per_item": 14.7,
        "compute_ms_per_item": 12.5,
        "codes_ms_per_item": 0.041,
        "lookup_ms_per_item": 0.156,
        "codes_share_of_achieved": 0.00279,
        "codes_and_lookup_share_of_achieved": 0.0134,
        "codes_share_of_compute": 0.00328,
        "codes_and_lookup_share_of_compute": 0.01576,
    }
    summary = {
        "events": 100_004,
        "movies": 9066,
        "encode_s": 132.5,
        "apply_s": 80.0,
        "applied_per_s": 1250.1,
        "semantic_ids": sid,
    }
    _write(tmp_path, "quality-sid", summary)
    tables = {name: report.render_table("quality-sid", name, tmp_path) for name in ("pipeline", "sid")}
    assert "| 100,004 ratings applied (first send to last commit, polled every 0.5 s) | 80.0 s | 1,250.1/s |" in (
        tables["pipeline"] or ""
    )
    assert "| codes + lookup / achieved time | 1.34 % |" in (tables["sid"] or "")
    assert "| codes + lookup / compute time | 1.58 % |" in (tables["sid"] or "")
    assert "encoder_ms" not in (tables["sid"] or "") and "request time per item (with queueing" in (tables["sid"] or "")


def test_reembed_and_fuzz_summaries_render(tmp_path: Path) -> None:
    from bench.reembed import Result

    fresh = {"p50_s": 0.31, "p99_s": 1.2, "n": 120}
    result = Result(
        items=5000,
        users_with_vectors=500,
        live_encoder="sail-tiny",
        new_encoder="sail-tiny-omni",
        catalogue_s=80.2,
        new_encoder_capacity_items_s=81.0,
        max_rate_items_s=40.0,
        baseline_freshness=fresh,
        backfill_freshness={"p50_s": 0.5, "p99_s": 2.4, "n": 300},
        after_swap_freshness=fresh,
        backfill_items_s=39.5,
        backfill_s=127.0,
        users_phase_s=12.0,
        followed_records=410,
        counts="complete",
        swap_write_ms=26.0,
        recall_switch_s=1.1,
        recall_queries=7594,
        recall_errors=0,
        recall_mixed=0,
        recall_mixed_refused=3,
        recall_empty=0,
        recall_by_version={},
        recall_error_examples=[],
        recall_mixed_examples=[],
        total_s=400.0,
    )
    _write(tmp_path, "reembed", {**dataclasses.asdict(result), "parameters": {}})
    table = report.render_table("reembed", "run", tmp_path)
    assert "| upload freshness during the backfill | p50 0.50 s, p99 2.40 s (n = 300); p99 2.00x the baseline |" in table
    assert "| answers served mixing versions (query vector or items) | 0 |" in table
    assert "| version mismatches refused (409) | 3 |" in table
    fuzz = {
        "generated": 100,
        "generated_by_topic": {"interactions": 50, "uploads": 50},
        "refused_by_decoder": 60,
        "refused_by_reason": {"schema.missing_field": 19},
        "accepted": 40,
        "uploads_stored": 19,
        "interactions_applied": 19,
        "accepted_dead_lettered_by_reason": {"media.unreadable": 1, "item.not_found": 1},
        "violations": 0,
    }
    _write(tmp_path, "fuzz", fuzz)
    table = report.render_table("fuzz", "run", tmp_path)
    assert "| generated (uploads / interactions) | 100 (50 / 50) |" in table
    assert "| accepted, then dead-lettered | media.unreadable 1, item.not_found 1 |" in table
    assert "| **violations** (lost, mangled, or stored against the contract) | **0** |" in table


def test_train_summary_is_plain_json_and_renders(tmp_path: Path) -> None:
    from bench.train import _figure, plain

    section = {
        "recipe": {"name": "vision-emoji", "matryoshka_weights": (1.0, 0.5)},
        "train": {
            "encoder_dir": Path("runs/x"),
            "model_version": "sail-tiny-vision-9fbfededadc8",
            "steps": 300,
            "resumed_from": 0,
            "seconds": 907.0,
            "items_per_s": 58.0,
            "device": "cpu",
            "losses": {"emoji": 2.41},
        },
        "held_out": 359,
        "rows": [
            {"encoder": "trained", "text_to_image_recall10": 0.401},
            {"encoder": "chance", "text_to_image_recall10": 0.0279},
        ],
    }
    assert _figure(float("nan")) is None and _figure(0.123456) == 0.1235
    data = plain(section)
    assert data["recipe"] == {"name": "vision-emoji", "matryoshka_weights": [1.0, 0.5]}
    _write(tmp_path, "train-vision", data)
    tables = _render_all(tmp_path, "train-vision")
    assert "| trained | 0.4010 |" in (tables["recall"] or "")
    assert "| vision-emoji | `sail-tiny-vision-9fbfededadc8` | 300 | 0 | 907.0 | 58.0 | cpu | emoji 2.41 |" in (
        tables["run"] or ""
    )
    assert tables["i2i"] is None and tables["protocol"] is None


def test_faults_summary_renders(tmp_path: Path) -> None:
    from bench.faults import SCENARIOS, Fault, Result, StreamPlan, result_name, summary

    fault = Fault("worker killed", 10.0, 12.0, frozenset({("up", 1), ("up", 0)}), 3.5, None)
    result = Result(
        "worker-kill",
        12_345,
        2000,
        10_000,
        345,
        2000,
        0,
        0,
        200,
        0,
        345,
        0,
        0,
        0,
        2,
        {"msgpack": 345},
        1,
        310.4,
        12.5,
        [fault],
        [],
        longest_commit_wait_s=7.2,
        longest_commit_wait_at="up[1]@40",
        repairs={"dedup": 1, "seek": 2},
    )
    assert result_name(list(SCENARIOS)) == "faults" and result_name(["hostile"]) == "faults-hostile"
    data: Any = summary([result], StreamPlan(), "static")
    assert data["results"][0]["faults"][0]["partitions"] == [["up", 0], ["up", 1]]
    _write(tmp_path, "faults", data)
    tables = _render_all(tmp_path, "faults")
    assert (
        "| worker-kill | 12,345 | 2,000 / 2,000 | 200 / 200 | 0 | 345 (345) | 0 "
        "| worker killed: 3.5 s / never | 12.5 s | 7 s | dedup 1, seek 2 | 310 MiB | pass |" in (tables["scenarios"] or "")
    )
    assert tables["hostile"] is None


def _overload_summary() -> dict[str, object]:
    from bench.overload import Overload, Row, lag_series, summary

    # 3 uploads in the first second, stored at 0.5 s, 1.5 s and 2.5 s; one more created at 1.2 s, stored at 1.8 s
    rows = [
        {"created_at_ms": 1000 + t, "encoded_at_ms": 1000 + e} for t, e in ((100, 500), (200, 1500), (300, 2500), (1200, 1800))
    ]
    series = lag_series(rows, 1000, 4000)
    overload = Overload(
        640.7, 213.6, 60.0, 351.4, 0.823, 0.82, None, None, 81.0, 0, "0.22 / 0.06 / 0.19 / 0.05 / 0.23", series, 0
    )
    table_rows = [
        Row("standin", "bare client", None, 0, 427.1, 1.0, None, None, None, 0.99, 0),
        Row("standin", "50% of capacity", 213.6, 6406, 212.8, 0.498, 0.19, 0.33, 0.43, 0.62, 0, "0.26 / 0.26 / 0.13 / 0.06"),
        Row("standin", "80% of capacity", 341.7, 10250, 330.5, 0.774, 0.58, 1.18, 1.3, 0.78, 0, "0.30 / 0.14 / 0.13 / 0.05"),
    ]
    args = _namespace(
        fixed_ms=20.0, per_item_ms=2.0, instances=2, phase_s=30.0, overload_s=60.0, skip_contention=True, overload_only=False
    )
    return summary(args, {"torch": "2.15", "device": "cpu"}, 427.1, table_rows, overload, {"recomputed": 0})


def test_lag_series_counts_uploads_sent_and_not_yet_stored_each_second() -> None:
    from bench.overload import lag_series

    rows = [
        {"created_at_ms": 1000 + t, "encoded_at_ms": 1000 + e} for t, e in ((100, 500), (200, 1500), (300, 2500), (1200, 1800))
    ]
    rows.append({"created_at_ms": 900, "encoded_at_ms": 1100})  # before the phase: not its upload
    assert lag_series(rows, 1000, 4000) == [
        {"t_s": 1.0, "lag": 2, "items_per_s": 1.0},  # 3 sent, 1 stored
        {"t_s": 2.0, "lag": 1, "items_per_s": 2.0},  # 4 sent, 3 stored
        {"t_s": 3.0, "lag": 0, "items_per_s": 1.0},
    ]


def test_overload_summary_renders_with_its_series(tmp_path: Path) -> None:
    data: Any = _overload_summary()
    assert data["overload"]["series"][0] == {"t_s": 1.0, "lag": 2, "items_per_s": 1.0}
    _write(tmp_path, "overload", data)
    tables = _render_all(tmp_path, "overload")
    assert "| standin | 80% of capacity | 341.7 | 10,250 | 330.5 | 0.77 | 0.58 / 1.18 / 1.30 | 0.78 | 0 |" in (
        tables["runs"] or ""
    )
    assert "| items/s stored during the overload | 351.4 |" in (tables["overload"] or "")
    assert "| freshness p99 back under 1 s after | not within the run |" in (tables["overload"] or "")


# ---------------------------------------------------------------------- charts


def test_charts_are_drawn_only_where_the_json_has_their_series_and_are_byte_stable(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    _write(tmp_path, "overload", _overload_summary())
    _write(tmp_path, "encoder-sail-tiny", ENCODER_SUMMARY)  # no chart of its own
    no_series = _overload_summary()
    no_series["overload"] = None
    _write(tmp_path, "overload-only", no_series)
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("<!-- chart: overload/lag -->\n<!-- /chart -->\n")
    problems, written = report.write(md, tmp_path)
    assert problems == []
    charts = tmp_path / "charts"
    # overload-only has rows (freshness) but no overload series: its lag chart is not drawn
    assert sorted(p.name for p in written) == ["overload-freshness.png", "overload-lag.png", "overload-only-freshness.png"]
    png = (charts / "overload-lag.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"Software" not in png
    assert report.chart_png("overload", "lag", tmp_path) == png  # the same JSON draws the same bytes
    assert md.read_text().startswith("<!-- chart: overload/lag -->\n![Consumer lag")
    assert "](charts/overload-lag.png)" in md.read_text()
    assert report.check(md, tmp_path) == []
    (charts / "overload-lag.png").unlink()
    assert "is missing: run --write" in report.check(md, tmp_path)[0]
    md.write_text("<!-- chart: overload-only/lag -->\n<!-- /chart -->\n")
    problems, _ = report.write(md, tmp_path)
    assert problems == ["BENCHMARKS.md: chart: overload-only/lag: overload-only.json has no series for it"]


def test_help_lists_every_renderer() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        report.main(["--help"])
    text = out.getvalue()
    assert "--write" in text and "--check" in text and "<!-- results: NAME/TABLE -->" in text
    for benchmark, name in [*report.TABLES, *report.CHARTS]:
        assert f"{benchmark:<10} {name}" in text
