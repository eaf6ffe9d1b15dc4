"""TLS to Triton and to Milvus, on real servers with a certificate made here by openssl:
- a second Triton the local stack starts with `SAIL_TRITON_TLS_SERVER_CERT_FILE/_KEY_FILE`, reached
  at grpcs:// by the health probe and the encoder client (and refused in plaintext);
- the session's Milvus behind a TLS-terminating proxy (Milvus Lite speaks no TLS itself), reached at
  https:// with the CA file by the sink: a keyed upsert and read back cross TLS."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deploy.local.netns import pipe
from deploy.local.stack import Stack, free_ports
from encoders.client import EncoderClient, EncoderUnavailable
from encoders.model import load_encoder
from streams.sinks.milvus import MilvusSink
from topology.collections import VECTOR_FIELD, item_row
from topology.messages import EncodeRequest
from topology.settings import Settings, host_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert, key)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is missing (deploy/local/bootstrap.sh installs it)"
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _encode(client: EncoderClient, request: EncodeRequest) -> np.ndarray:
    async def go() -> np.ndarray:
        await client.start()
        try:
            (result,) = await client.encode([request])
            assert result.vector is not None
            return result.vector
        finally:
            await client.close()

    return asyncio.run(go())


def test_triton_over_tls(stack: Stack, certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = certificate
    grpc, http, metrics = free_ports(3)
    settings = stack.settings.model_copy(
        update={
            "triton_url": f"grpcs://127.0.0.1:{grpc}",
            "triton_http_port": http,
            "triton_metrics_port": metrics,
            "state_dir": tmp_path,
            "triton_tls_ca_file": cert,
            "triton_tls_server_cert_file": cert,
            "triton_tls_server_key_file": key,
            "encoder": "sail-tiny",
        }
    )
    secure = Stack(settings)
    try:
        (status,) = secure.up(["triton"])  # the health probe itself goes over TLS
        assert status.state == "running"
        request = EncodeRequest(title="a kitten chases a laser pointer", tags=("cats",))
        over_tls = _encode(EncoderClient.for_settings(settings), request)
        (local,) = load_encoder("sail-tiny", "cpu").encode([request])  # the same model, in this process
        assert local.vector is not None and float(over_tls @ local.vector) > 0.999
        with pytest.raises(EncoderUnavailable):
            _encode(EncoderClient(f"127.0.0.1:{grpc}", timeout_s=3.0), request)  # plaintext is refused
    finally:
        secure.down(["triton"])


class TlsProxy:
    """Terminates TLS (ALPN h2, for gRPC) on a free loopback port and forwards bytes to `target`."""

    def __init__(self, target: tuple[str, int], cert: Path, key: Path) -> None:
        self.target = target
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        self.context.set_alpn_protocols(["h2"])
        (self.port,) = free_ports(1)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.context))
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()

    def __enter__(self) -> TlsProxy:
        self.thread.start()
        self.ready.wait(10)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5):
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def milvus_tls(stack: Stack, certificate: tuple[Path, Path]) -> Iterator[Settings]:
    cert, key = certificate
    with TlsProxy(host_port(stack.settings.milvus_uri), cert, key) as proxy:
        yield stack.settings.model_copy(update={"milvus_uri": f"https://127.0.0.1:{proxy.port}", "milvus_tls_ca_file": cert})


def test_milvus_over_tls(milvus_tls: Settings, stack: Stack) -> None:
    items, _ = milvus_tls.collections()
    item_id = f"tls-{uuid.uuid4().hex[:8]}"
    vector = np.random.default_rng(5).standard_normal(items.dim).astype(np.float32)
    vector /= np.linalg.norm(vector)
    row = item_row(item_id, "tls", 1, 1, "tls", vector)

    async def roundtrip(settings: Settings, write: bool) -> list[dict]:
        sink = MilvusSink.for_settings(settings)
        await sink.start()
        try:
            if write:
                await sink.upsert(items.name, [row])
            return await sink.get(items.name, [item_id], fields=[VECTOR_FIELD])
        finally:
            await sink.close()

    assert milvus_tls.milvus_tls() is not None
    (written,) = asyncio.run(roundtrip(milvus_tls, write=True))
    np.testing.assert_allclose(written[VECTOR_FIELD], vector, atol=1e-6)
    (direct,) = asyncio.run(roundtrip(stack.settings, write=False))  # the same row, read without the proxy
    assert direct["item_id"] == item_id
