"""deploy/triton/model_repository served by the stand-alone tritonserver (Python backend), as in
production: same vectors as the in-process encoder and the PyTriton binding. The model served is
a freshly trained encoder folder (`sail-stream train`'s export, a few steps on a tiny slice), so
this also proves an exported model serves through Triton like the presets (issue 16)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from deploy.local.process import ManagedProcess, group_members
from deploy.local.stack import free_ports
from deploy.local.tritonserver import MODEL_REPOSITORY, server_command
from encoders.client import EncoderClient, check_triton
from encoders.model import load_encoder
from encoders.signature import SAIL_ENCODER
from encoders.train.loop import train
from tests.support.media import image_bytes
from tests.support.training import tiny_data, tiny_recipe
from topology import reasons
from topology.messages import EncodeRequest

pytestmark = pytest.mark.integration


async def test_model_repository_serves_the_same_vectors_as_in_process(tmp_path: Path) -> None:
    trained = train(tiny_recipe(steps=2), tiny_data(), tmp_path / "run", device="cpu")
    repository = tmp_path / "repository"
    shutil.copytree(MODEL_REPOSITORY, repository)
    config = repository / SAIL_ENCODER.name / "config.pbtxt"
    shipped = 'string_value: "sail-tiny"'
    assert shipped in config.read_text()
    config.write_text(config.read_text().replace(shipped, f'string_value: "{trained.encoder_dir}"'))
    grpc, http, metrics = free_ports(3)
    command, env = server_command(tmp_path, repository, "127.0.0.1", grpc, http, metrics)
    proc = ManagedProcess("tritonserver", tmp_path)
    record = proc.start(command, env)
    address = f"127.0.0.1:{grpc}"
    try:
        deadline = time.monotonic() + 180
        while True:
            proc.ensure_alive()
            try:
                if check_triton(address, (SAIL_ENCODER.name,), timeout_s=2.0).models_ready[SAIL_ENCODER.name]:
                    break
            except Exception:
                pass
            assert time.monotonic() < deadline, proc.log_tail(40)
            time.sleep(0.5)
        requests = [
            EncodeRequest(title="kitten chases a laser pointer", cover=image_bytes(1)),
            EncodeRequest(title="x", cover=b"broken"),
        ]
        client = EncoderClient(address, timeout_s=60.0)
        await client.start()
        try:
            remote = await client.encode(requests)
        finally:
            await client.close()
        local = load_encoder(str(trained.encoder_dir)).encode(requests[:1])[0]
        assert remote[0].model_version == local.model_version == trained.model_version
        np.testing.assert_allclose(remote[0].vector, local.vector, atol=1e-5)  # type: ignore[arg-type]
        assert remote[1].reason == reasons.MEDIA_UNREADABLE
    finally:
        proc.stop()
    assert group_members(record.pgid) == []
