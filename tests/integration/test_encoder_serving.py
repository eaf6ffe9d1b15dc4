"""The SAIL encoder through the real tritonserver: same vectors as in-process, per-item errors,
client micro-batching and how it reports a down server."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from encoders.client import EncoderClient, EncoderUnavailable
from encoders.model import load_encoder
from encoders.signature import SAIL_ENCODER
from tests.support.media import image_bytes, wav_bytes
from topology import reasons
from topology.messages import EncodeRequest
from topology.settings import Settings

pytestmark = pytest.mark.integration


def _requests() -> list[EncodeRequest]:
    return [
        EncodeRequest(title="kitten chases a laser pointer", tags=("cats",), cover=image_bytes(1), frames=(image_bytes(2),)),
        EncodeRequest(title="street food tour", ocr_text="noodles 5$", asr_text="so spicy"),
        EncodeRequest(title="drum solo", audio=wav_bytes(1.2)),
        EncodeRequest(role="query", title="funny cats"),
    ]


@pytest.fixture
async def client(settings: Settings):
    c = EncoderClient(settings.triton_grpc_address, timeout_s=30.0, max_batch=16)
    await c.start()
    yield c
    await c.close()


async def test_triton_output_equals_in_process_output(settings: Settings, client: EncoderClient) -> None:
    local = load_encoder(settings.encoder)
    requests = _requests()
    remote = await client.encode(requests)
    expected = local.encode(requests)
    assert {r.model_version for r in remote} == {local.model_version}
    np.testing.assert_allclose(np.stack([r.vector for r in remote]), np.stack([r.vector for r in expected]), atol=1e-5)  # type: ignore[misc]


async def test_corrupt_image_fails_only_that_item_across_the_wire(settings: Settings, client: EncoderClient) -> None:
    requests = _requests()
    results = await client.encode([requests[0], EncodeRequest(title="bad", cover=b"GIF89a broken"), requests[1]])
    assert [r.reason for r in results] == ["", reasons.MEDIA_UNREADABLE, ""]
    assert results[1].vector is None and "image" in results[1].error
    assert results[0].vector is not None and results[2].vector is not None


async def test_a_batch_over_the_max_is_sent_as_full_requests_with_results_in_order(client: EncoderClient) -> None:
    requests = [EncodeRequest(title=f"clip number {i}") for i in range(40)]
    before = client.stats
    results = await client.encode(requests)
    assert client.stats.requests - before.requests == 3 and client.stats.items - before.items == 40  # 16 + 16 + 8
    singles = await asyncio.gather(*(client.encode([r]) for r in (requests[0], requests[17], requests[39])))
    np.testing.assert_allclose(
        np.stack([results[i].vector for i in (0, 17, 39)]), np.stack([s[0].vector for s in singles]), atol=1e-5
    )  # type: ignore[misc]


async def test_a_request_blob_the_server_cannot_read_fails_only_its_row(settings: Settings) -> None:
    import tritonclient.grpc as grpcclient

    from topology.codec import encode_encoder_request

    client = grpcclient.InferenceServerClient(settings.triton_grpc_address)
    try:
        blobs = np.array([[encode_encoder_request(EncodeRequest(title="ok"))], [b"\x93 not a request"]], dtype=np.object_)
        tensor = grpcclient.InferInput("item", list(blobs.shape), "BYTES")
        tensor.set_data_from_numpy(blobs)
        out = client.infer(SAIL_ENCODER.name, [tensor], client_timeout=30)
        errors = [bytes(e[0]).decode() for e in out.as_numpy("error")]
    finally:
        client.close()
    assert errors[0] == "" and errors[1].startswith(reasons.DECODE_MSGPACK)
    assert np.linalg.norm(out.as_numpy("embedding")[0]) == pytest.approx(1.0, abs=1e-5)


async def test_down_server_is_reported_once_for_the_caller_to_retry() -> None:
    from deploy.local.stack import free_ports

    (port,) = free_ports(1)
    seen: list[str] = []
    client = EncoderClient(f"127.0.0.1:{port}", timeout_s=1.0, observe=lambda outcome, items, seconds: seen.append(outcome))
    await client.start()
    try:
        with pytest.raises(EncoderUnavailable, match=f"127.0.0.1:{port}") as raised:
            await client.encode([EncodeRequest(title="anyone there?")])
        assert not raised.value.busy and not raised.value.suspect
        assert seen == ["failed"]  # one attempt: the worker's retry loop is the only retry layer
        assert client.stats.failed == 1 and client.stats.abandoned == 0
    finally:
        await client.close()
