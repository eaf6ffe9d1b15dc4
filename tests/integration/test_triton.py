"""The real tritonserver (from nvidia-pytriton) on CPU: health and inference through tritonclient gRPC."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from encoders.client import EncoderClient, EncoderUnavailable, check_triton
from encoders.signature import PROBE
from topology.settings import Settings

pytestmark = pytest.mark.integration


def test_server_is_live_and_ready_with_the_probe_model(settings: Settings) -> None:
    health = check_triton(settings.triton_grpc_address, (PROBE.name,))
    assert health.live and health.ready
    assert health.models_ready == {PROBE.name: True}
    assert health.server_version  # a real tritonserver reports its version


async def test_inference_over_grpc_returns_the_models_result(settings: Settings) -> None:
    client = EncoderClient(settings.triton_grpc_address, timeout_s=10.0)
    await client.start()
    try:
        x = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], dtype=np.float32)
        np.testing.assert_allclose(await client.normalise(x), [[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], atol=1e-6)

        # Concurrent requests go through the dynamic batcher; each must get its own rows back.
        rng = np.random.default_rng(0)
        batches = [rng.standard_normal((int(rng.integers(1, 5)), 16)).astype(np.float32) for _ in range(40)]
        results = await asyncio.gather(*(client.normalise(b) for b in batches))
        for batch, result in zip(batches, results):
            np.testing.assert_allclose(result, batch / np.linalg.norm(batch, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    finally:
        await client.close()


async def test_down_server_raises_encoder_unavailable() -> None:
    from deploy.local.stack import free_ports

    (port,) = free_ports(1)
    client = EncoderClient(f"127.0.0.1:{port}", timeout_s=1.0)
    await client.start()
    try:
        with pytest.raises(EncoderUnavailable, match=f"127.0.0.1:{port}"):
            await client.normalise(np.ones((1, 4), dtype=np.float32))
    finally:
        await client.close()
    with pytest.raises(EncoderUnavailable):
        check_triton(f"127.0.0.1:{port}", (PROBE.name,), timeout_s=1.0)
