"""The benchmarks never gate CI, but they must stay runnable and their `--help` must say what they are:
the usage names `python -m bench.X`, the description is the module's docstring, every option its
docstring, README.md and the scripts use is listed with the help it declares, and every command line
they give it parses.

The benchmarks are found in bench/ (every module that builds an argparse parser), so a new one, such as
bench/report.py once it is written, is checked without being listed here. Each `--help` runs once, in
this process (`runpy`, as `python -m` would): the benchmarks share heavy imports (torch, transformers),
and eight interpreters importing them cost about 45 s of the suite."""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import io
import re
import runpy
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"

# The benchmarks that measure: each must be found, and its docstring says it is never a test (STYLE.md, 10).
MEASURING = {
    "bench.encoder",
    "bench.faults",
    "bench.interest",
    "bench.overload",
    "bench.pipeline",
    "bench.quality",
    "bench.reembed",
    "bench.scale",
    "bench.train",
}
# README.md names it ahead of the file (issue 30); once bench/report.py exists it is found and checked like the rest.
PENDING = {"bench.report"}
# Modules run with `python -m` that take no options, so have no `--help` to check.
NO_OPTIONS = {"bench.floor": "positional MODE BROKER TOPIC COUNT, run by bench.interest unless --no-floor"}
# Options that scripts and BENCHMARKS.md rely on beyond the usage examples.
RELIED_ON = {
    "bench.encoder": ["--quick", "--cover", "--frames"],
    "bench.pipeline": ["--quick", "--json"],
    "bench.overload": ["--fixed-ms", "--overload-s", "--skip-contention", "--json"],
    "bench.interest": ["--interactions", "--workers", "--profile", "--paced-s", "--no-floor", "--batched", "--json"],
    "bench.quality": ["--ratings", "--encoder", "--json", "--sid", "--sid-fresh", "--only"],
    "bench.train": ["--only", "--steps", "--runs", "--device", "--json"],
    "bench.reembed": ["--json"],
}


def commands() -> list[str]:
    """The bench modules with a command line of their own (an argparse parser)."""
    return sorted(f"bench.{path.stem}" for path in BENCH.glob("*.py") if "argparse.ArgumentParser(" in path.read_text())


def docstring(module: str) -> str:
    return ast.get_docstring(ast.parse((BENCH / f"{module.split('.')[1]}.py").read_text()), clean=False) or ""


@dataclass(frozen=True)
class Help:
    parser: argparse.ArgumentParser
    text: str


@functools.cache
def run_help(module: str) -> Help:
    """`python -m MODULE --help`: the parser the benchmark built and what it printed (one line per help text)."""
    built: list[argparse.ArgumentParser] = []
    parse_known_args = argparse.ArgumentParser.parse_known_args

    def spy(self: argparse.ArgumentParser, args: list[str] | None = None, namespace: object = None) -> object:
        built.append(self)
        return parse_known_args(self, args, namespace)  # type: ignore[arg-type]

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_known_args", spy)
        patch.setattr(sys, "argv", [module, "--help"])
        patch.setenv("COLUMNS", "10000")  # argparse wraps to the terminal: unwrapped, a help text is compared whole
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
            runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert done.value.code in (0, None), out.getvalue()
    assert built, f"{module} --help parsed no command line"
    return Help(built[0], out.getvalue())


def listed_options(text: str) -> dict[str, str]:
    """The options a help text lists, each option string with its help (joined across lines)."""
    listed: dict[str, str] = {}
    names: list[str] = []
    for line in text.split("\noptions:\n", 1)[1].splitlines():
        if line.startswith("  -"):
            invocation, _, help_text = line.strip().partition("  ")
            names = [name.split(" ")[0] for name in invocation.split(", ")]  # "-h, --help", "--json JSON"
            listed.update({name: help_text.strip() for name in names})
        elif line.startswith("    ") and names:
            listed.update({name: f"{listed[name]} {line.strip()}".strip() for name in names})
        else:
            names = []  # a blank line or another section
    return listed


def expected_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """An option's declared help as its parser prints it (`%%`, `%(default)s` expanded), on one line."""
    if action.help is None:
        return ""
    return " ".join(parser._get_formatter()._expand_help(action).split())  # argparse's own expansion (private)


def documented_lines(module: str) -> list[str]:
    """The arguments of every `python -m MODULE ...` line of its docstring (comments dropped)."""
    pattern = re.compile(rf"^\s*python -m {re.escape(module)}(?: (.*))?$")
    return [
        (match.group(1) or "").split("#")[0].strip() for line in docstring(module).splitlines() if (match := pattern.match(line))
    ]


def readme_lines() -> dict[str, list[str]]:
    """Per benchmark, the arguments README.md gives it: every `python -m bench.X ...` or `bench.X ...`
    span, and in "## Benchmarks" every `--option ...` span, which belongs to the benchmark named last."""
    readme = (ROOT / "README.md").read_text()
    named = re.compile(r"(?:python -m )?(bench\.\w+)(?: (.*))?")
    lines: dict[str, list[str]] = {}
    for span in re.findall(r"`([^`\n]+)`", readme):
        if match := named.fullmatch(span):
            lines.setdefault(match.group(1), []).append(match.group(2) or "")
    section = readme.split("\n## Benchmarks\n", 1)[1].split("\n## ", 1)[0]
    last = None
    for span in re.findall(r"`([^`\n]+)`", section):
        if match := named.fullmatch(span):
            last = match.group(1)
        elif span.startswith("--"):
            assert last, f"README.md's Benchmarks: `{span}` before any benchmark is named"
            lines[last].append(span)
    return lines


def flags(line: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][\w-]*", line))


def test_the_benchmarks_are_found() -> None:
    assert set(commands()) >= MEASURING
    mains = {f"bench.{path.stem}" for path in BENCH.glob("*.py") if 'if __name__ == "__main__":' in path.read_text()}
    assert mains - set(commands()) == set(NO_OPTIONS), "a module run with `python -m` has no --help checked here"


def test_the_readme_is_read_for_the_options_it_names() -> None:
    """The reader of README.md finds the claims it is known to make (so the next test cannot pass on nothing)."""
    claims = {module: set().union(*map(flags, lines)) for module, lines in readme_lines().items()}
    assert claims["bench.interest"] >= {"--kafka-brokers"}
    assert claims["bench.quality"] >= {"--sid"}
    assert claims["bench.pipeline"] >= {"--quick"}
    assert claims["bench.faults"] >= {"--scenarios"}
    assert claims["bench.report"] >= {"--write"}


def test_every_benchmark_the_readme_names_has_a_command_line() -> None:
    missing = sorted(set(readme_lines()) - set(commands()) - PENDING)
    assert not missing, f"README.md names benchmarks without a command line in bench/: {missing}"


@pytest.mark.filterwarnings(
    "ignore:.*found in sys.modules:RuntimeWarning"
)  # a benchmark another test imported: run again as __main__, as intended
@pytest.mark.parametrize("module", commands())
def test_the_help_names_the_module_and_describes_it_with_its_docstring(module: str) -> None:
    text = run_help(module).text
    assert text.startswith(f"usage: python -m {module} "), text.splitlines()[0]
    doc = docstring(module).strip()
    assert doc and f"\n\n{doc}\n\n" in text, "the description is not the module docstring"
    if module in MEASURING:
        assert "never a test" in doc.lower()


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", commands())
def test_every_documented_option_is_listed_with_its_help_and_the_examples_parse(module: str) -> None:
    """The options the docstring's examples, README.md and the scripts use are options of the command,
    listed as such with the help they declare, and the documented command lines parse."""
    parser, text = run_help(module).parser, run_help(module).text
    listed = listed_options(text)
    documented = documented_lines(module) + readme_lines().get(module, [])
    declared = parser._option_string_actions  # argparse has no public index of its options
    for flag in sorted(set(RELIED_ON.get(module, [])).union(*map(flags, documented))):
        assert flag in declared, f"{module} has no option {flag}"
        assert flag in listed, f"{module} --help does not list {flag}"  # hidden (help=SUPPRESS), or only named in prose
        assert listed[flag] == expected_help(parser, declared[flag]), f"{module} --help: {flag} without its help"
        assert declared[flag].help, f"{module}: {flag} declares no help text"
    for line in documented:
        if "[" in line:  # a synopsis (`[--frames N]`): its options are checked above, its placeholders do not parse
            continue
        try:
            args = parser.parse_args(shlex.split(line))
        except SystemExit:
            pytest.fail(f"`python -m {module} {line}`, as documented, does not parse")
        if module == "bench.faults":  # --scenarios is checked after parsing: the documented names must be offered
            offered = listed["--scenarios"]
            assert all(name in offered for name in args.scenarios.split(",")), (line, offered)
