"""The image `make image` builds (deploy/image) against what runs it: the Kubernetes export's image name,
user and commands, and the packages pyproject.toml installs. Building it takes minutes and GBs (its
figures are in README.md); this checks the recipe without building."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from deploy.k8s.manifests import MILVUS_VALUES_FILE, RUN_AS, DeployOptions, render
from topology.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = (ROOT / "deploy/image/Containerfile").read_text()
BUILD = (ROOT / "deploy/image/build.sh").read_text()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Containerfile, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n\s*", " ", "\n".join(line for line in CONTAINERFILE.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def test_the_image_is_tagged_and_run_as_the_kubernetes_export_expects() -> None:
    default_tag = re.search(r"tag=\$\{SAIL_IMAGE:-([^}]+)\}", BUILD)
    assert default_tag and default_tag.group(1) == DeployOptions().image
    users = [args for op, args in _instructions() if op == "USER"]
    assert users == [f"{RUN_AS}:{RUN_AS}"]  # the pods' runAsUser / runAsGroup
    run = " ".join(args for op, args in _instructions() if op == "RUN")
    assert f"useradd --uid {RUN_AS}" in run


def test_every_command_the_manifests_run_is_on_the_images_path() -> None:
    env = " ".join(args for op, args in _instructions() if op == "ENV")
    path = re.search(r"PATH=(\S+)", env)
    assert path and path.group(1).split(":")[0] == "/opt/sail/bin"  # the venv the RUN creates
    assert "python3 -m venv /opt/sail" in " ".join(args for op, args in _instructions() if op == "RUN")
    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
    commands = {
        container["command"][0]
        for name, docs in render(Settings(state_dir=Path("/tmp")), DeployOptions()).items()
        if name != MILVUS_VALUES_FILE
        for resource in docs
        if resource.get("kind") in ("StatefulSet", "Deployment")
        for container in resource["spec"]["template"]["spec"]["containers"]
        if container.get("image") == DeployOptions().image
    }
    assert commands == {"sail-stream", "python"}  # the console script and the venv's interpreter
    assert "sail-stream" in scripts
    entry = [args for op, args in _instructions() if op == "ENTRYPOINT"]
    assert entry == ['["sail-stream"]']


def test_the_image_holds_every_package_pyproject_installs_and_the_model_repository() -> None:
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {shlex.split(args)[0] for op, args in _instructions() if op == "COPY"}
    assert {p.rstrip("*") for p in found} <= copied, "a package the install needs is not copied into the build"
    for name in shlex.split(next(args for op, args in _instructions() if op == "COPY"))[:-1]:
        assert (ROOT / name).is_file(), name
    assert "/src/deploy/triton/model_repository /opt/sail/model_repository" in " ".join(
        args for op, args in _instructions() if op == "RUN"
    )
    assert (ROOT / "deploy/triton/model_repository/sail_encoder/config.pbtxt").is_file()
