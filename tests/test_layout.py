"""README.md's "Layout" against the tree: every path it names exists, and every package of the
product is named there, so a newcomer's map cannot drift from the territory."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTION_COLUMN = 26  # names stand left of it; a line indented this far continues a description
PRODUCT = ("topology", "encoders", "streams", "deploy")


def layout_paths(readme: str) -> list[str]:
    """The paths the Layout block names, from its indentation (two spaces a level)."""
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    parents: list[tuple[int, str]] = []
    paths = []
    for line in block.splitlines()[1:]:
        indent = len(line) - len(line.lstrip())
        if not line.strip() or indent >= DESCRIPTION_COLUMN:
            continue
        name = line.split()[0]
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = "".join(p for _, p in parents) + name
        paths.append(path)
        if name.endswith("/"):
            parents.append((indent, name))
    return paths


def test_layout_parser_reads_nesting() -> None:
    readme = "\n".join(
        [
            "x",
            "## Layout",
            "```",
            "a/                        d",
            "  b/                      d",
            "    c.py                  d",
            "                          more",
            "  e.py                    d",
            "f.py",
            "```",
            "## Next",
            "",
        ]
    )
    assert layout_paths(readme) == ["a/", "a/b/", "a/b/c.py", "a/e.py", "f.py"]


def test_every_path_the_layout_names_exists() -> None:
    paths = layout_paths((ROOT / "README.md").read_text())
    assert len(paths) > 50
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"README.md's Layout names paths that do not exist: {missing}"


def test_every_product_package_is_in_the_layout() -> None:
    named = set(layout_paths((ROOT / "README.md").read_text()))
    packages = sorted(
        f"{init.parent.relative_to(ROOT).as_posix()}/" for top in PRODUCT for init in (ROOT / top).rglob("__init__.py")
    )
    unnamed = [p for p in packages if p not in named]
    assert not unnamed, f"packages missing from README.md's Layout: {unnamed}"
