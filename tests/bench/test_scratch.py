"""A benchmark's scratch folder (`bench.results.scratch_dir`): gone after the run, kept after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RUN = (
    "import sys; from bench.results import scratch_dir; p = scratch_dir('sail-test-scratch-'); "
    "(p / 'log').write_text('x'); print(p, flush=True)"
)


def _run(tail: str, **env: str) -> tuple[Path, str]:
    done = subprocess.run(
        [sys.executable, "-c", RUN + tail], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )
    return Path(done.stdout.split()[0]), done.stderr


def test_the_folder_is_removed_when_the_benchmark_ends() -> None:
    path, _ = _run("")
    assert not path.exists()
    path, _ = _run("; sys.exit(1)")  # a goal missed is an exit status, not a crash
    assert not path.exists()


def test_the_folder_is_kept_and_named_after_a_crash_or_when_asked() -> None:
    for tail, env in (("; raise RuntimeError('broker died')", {}), ("", {"SAIL_BENCH_KEEP": "1"})):
        path, err = _run(tail, **env)
        try:
            assert (path / "log").read_text() == "x"
            assert f"kept for inspection: {path}" in err
        finally:
            subprocess.run(["rm", "-rf", str(path)], check=True)
