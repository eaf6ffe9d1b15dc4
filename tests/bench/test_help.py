"""The benchmarks never gate CI, but they must stay runnable: their command lines parse and explain.

Each `--help` runs in this process (`runpy`, as `python -m` would): the benchmarks share heavy imports
(torch, transformers), and six interpreters importing them cost about 45 s of the suite."""

import contextlib
import io
import runpy
import sys

import pytest


@pytest.mark.filterwarnings(
    "ignore:.*found in sys.modules:RuntimeWarning"
)  # a benchmark another test imported: run again as __main__, as intended
@pytest.mark.parametrize(
    ("module", "flags"),
    [
        ("bench.encoder", ["--quick", "--cover", "--frames"]),
        ("bench.pipeline", ["--quick", "--json"]),
        ("bench.overload", ["--fixed-ms", "--overload-s", "--skip-contention", "--json"]),
        ("bench.interest", ["--interactions", "--workers", "--profile", "--paced-s", "--floor", "--json"]),
        ("bench.quality", ["--ratings", "--encoder", "--json", "--sid", "--sid-fresh", "--only"]),
        ("bench.train", ["--only", "--steps", "--runs", "--device", "--json"]),
        ("bench.reembed", ["--json"]),
    ],
)
def test_benchmark_help(module: str, flags: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert done.value.code in (0, None)
    text = out.getvalue()
    assert all(flag in text for flag in flags), text
    assert "Never a test" in text or "never" in text.lower()
