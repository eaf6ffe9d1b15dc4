"""The benchmarks never gate CI, but they must stay runnable: their command lines parse and explain."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("module", "flags"), [("bench.encoder", ["--quick", "--cover", "--frames"]), ("bench.pipeline", ["--quick", "--json"]),
                                                         ("bench.overload", ["--fixed-ms", "--overload-s", "--skip-contention", "--json"]),
                                                         ("bench.interest", ["--interactions", "--workers", "--profile", "--paced-s", "--floor", "--json"]),
                                                         ("bench.quality", ["--ratings", "--encoder", "--json"]),
                                                         ("bench.train", ["--only", "--steps", "--runs", "--device", "--json"])])
def test_benchmark_help(module: str, flags: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(flag in done.stdout for flag in flags)
    assert "Never a test" in done.stdout or "never" in done.stdout.lower()
