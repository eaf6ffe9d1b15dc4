"""Run the stand-alone `tritonserver` binary (shipped in nvidia-pytriton) on a model repository,
the way a production Triton node serves `deploy/triton/model_repository`.

PyTriton keeps the binary, its libraries and per-Python-version backend stubs in its package; this
lays them out as a server installation once per state folder and returns the command and environment.
"""

from __future__ import annotations

import os
import shutil
import site
import sys
import sysconfig
from pathlib import Path

MODEL_REPOSITORY = Path(__file__).resolve().parents[1] / "triton" / "model_repository"


def server_command(
    install_dir: Path, repository: Path, host: str, grpc_port: int, http_port: int, metrics_port: int
) -> tuple[list[str], dict[str, str]]:
    """The `tritonserver` command line and environment for `repository`.

    Raises:
        ToolMissing: nvidia-pytriton is not installed.
    """
    from deploy.local.kafka import ToolMissing

    try:
        from pytriton.utils.distribution import get_libs_path, get_root_module_path, get_stub_path
    except ImportError as exc:
        raise ToolMissing("nvidia-pytriton is not installed: it ships the tritonserver binary") from exc
    server_dir = install_dir / "tritonserver"
    if not (server_dir / "bin" / "tritonserver").exists():
        shutil.copytree(
            get_root_module_path() / "tritonserver",
            server_dir,
            ignore=shutil.ignore_patterns("python_backend_stubs"),
            dirs_exist_ok=True,
        )
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        shutil.copy(get_stub_path(version), server_dir / "backends" / "python" / "triton_python_backend_stub")
    env = dict(os.environ)
    # The stub embeds libpython: this interpreter's own first (shared FACTS), then PyTriton's libs.
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, str(get_libs_path()), env.get("LD_LIBRARY_PATH", "")) if p)
    # The backend's embedded Python ignores PYTHONPATH; 1/model.py reads this instead.
    project_root = str(Path(__file__).resolve().parents[2])
    env["SAIL_BACKEND_PYTHONPATH"] = ":".join([project_root, *site.getsitepackages()])
    command = [
        str(server_dir / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={server_dir / 'backends'}",
        f"--grpc-address={host}",
        f"--grpc-port={grpc_port}",
        f"--http-address={host}",
        f"--http-port={http_port}",
        f"--metrics-address={host}",
        f"--metrics-port={metrics_port}",
        "--log-verbose=0",
    ]
    return command, env
