"""Benchmark summaries as JSON under `bench/results/`: the one source of BENCHMARKS.md's tables.

Each benchmark ends with `write_result(NAME, summary)`: the summary (plain JSON values: the figures
the tables show, the baseline measured in the same run, and the run's parameters) goes to
`bench/results/NAME.json` with the machine, the date and the command line, and is committed.
`python -m bench.report --write` then renders BENCHMARKS.md's tables from those files, and
`tests/bench/test_report.py` fails when a table and its file disagree.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, memory, OS and Python."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def _finite(value: Any, where: str) -> Any:
    """`value` with every float checked finite (JSON has no NaN): a NaN in a summary is a bug to see."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}: a summary holds finite numbers or null")
    if isinstance(value, Mapping):
        return {str(k): _finite(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def scratch_dir(prefix: str) -> Path:
    """A fresh folder for a benchmark's local stack (its services' data and logs, ~1 GB after a long
    run), removed when the benchmark's process exits; kept, and named on stderr, when it exits on an
    uncaught exception (the services' logs say what went wrong) or with SAIL_BENCH_KEEP=1."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(_clean, path)
    return path


def _clean(path: Path) -> None:
    # Python sets sys.last_value when it prints an uncaught exception, before the atexit handlers run
    # (a SystemExit, as from a missed goal's exit status, does not set it)
    if getattr(sys, "last_value", None) is not None or os.environ.get("SAIL_BENCH_KEEP") == "1":
        print(f"kept for inspection: {path}", file=sys.stderr)
    else:
        shutil.rmtree(path, ignore_errors=True)


def write_result(
    name: str, summary: Mapping[str, Any], *, results_dir: Path = RESULTS_DIR, now: dt.datetime | None = None
) -> Path:
    """Write `summary` as `results_dir/NAME.json` with the machine, the UTC date and the command line."""
    now = now or dt.datetime.now(dt.UTC)
    payload = {
        "benchmark": name,
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([f"python -m bench.{Path(sys.argv[0]).stem}", *sys.argv[1:]]),
        "machine": machine(),
        "summary": _finite(dict(summary), "summary"),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def read_result(name: str, results_dir: Path = RESULTS_DIR) -> dict[str, Any]:
    """The payload `write_result` wrote for `name`.

    Raises:
        FileNotFoundError: the benchmark has not written its summary yet.
    """
    data: dict[str, Any] = json.loads((results_dir / f"{name}.json").read_text())
    return data
