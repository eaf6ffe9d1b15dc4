"""The house style, checked: ruff's lint and format (pyproject [tool.ruff]) over the whole tree, mypy
over the product (pyproject [tool.mypy]: strict on the contracts, the codec and the pure maths), and
the escape hatches kept few and explained."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("topology", "encoders", "streams", "deploy")
MAX_TYPE_IGNORES = 30  # in product code; each one says why on its line or in the comment just above
IGNORE = re.compile(r"#\s*type:\s*ignore")


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name(tool)
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_lint_passes() -> None:
    done = _run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_ruff_format_leaves_every_file_as_it_is() -> None:
    done = _run("ruff", "format", "--check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_mypy_passes_on_the_product() -> None:
    done = _run("mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".mypy_cache"))
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def unexplained_ignores(text: str) -> list[int]:
    """Line numbers of `type: ignore`s with no reason: no comment after the ignore on its line, and no
    comment line just above it (or above the run of ignored lines it belongs to)."""
    lines = text.splitlines()
    bad = []
    for number, line in enumerate(lines, 1):
        match = IGNORE.search(line)
        if not match:
            continue
        if "#" in line[match.end() :]:
            continue
        above = number - 2
        while above >= 0 and IGNORE.search(lines[above]) and not lines[above].lstrip().startswith("#"):
            above -= 1
        if above < 0 or not lines[above].lstrip().startswith("#"):
            bad.append(number)
    return bad


def test_unexplained_ignore_finder() -> None:
    assert unexplained_ignores("x = f()  # type: ignore[misc]\n") == [1]
    assert unexplained_ignores("# Faust's private index\nx = f()  # type: ignore[misc]\ny = g()  # type: ignore[misc]\n") == []
    assert unexplained_ignores("x = f()  # type: ignore[misc]  # pydantic's own argument\n") == []


def test_type_ignores_in_the_product_are_few_and_explained() -> None:
    found = {path: path.read_text() for top in PRODUCT for path in sorted((ROOT / top).rglob("*.py"))}
    count = sum(len(IGNORE.findall(text)) for text in found.values())
    assert count <= MAX_TYPE_IGNORES, f"{count} type: ignore in product code, at most {MAX_TYPE_IGNORES}"
    unexplained = [f"{path.relative_to(ROOT)}:{n}" for path, text in found.items() for n in unexplained_ignores(text)]
    assert not unexplained, f"type: ignore without a reason (a comment on the line or just above): {unexplained}"


def test_no_formatter_escapes() -> None:
    """The formatter decides the layout everywhere: no `fmt: skip` / `fmt: off`."""
    escapes = [
        f"{path.relative_to(ROOT)}:{n}"
        for top in (*PRODUCT, "bench", "tests")
        for path in sorted((ROOT / top).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"#\s*fmt:\s*(skip|off)", line)
    ]
    assert not escapes, escapes
