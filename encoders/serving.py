"""Serve the encoder models with the real `tritonserver` through PyTriton (CPU or GPU).

Run as `python -m encoders.serving --grpc-port ...`; `deploy.local` starts it for the local stack.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from encoders.bench_double import NAME as STANDIN
from encoders.signature import PROBE, SAIL_ENCODER, ModelSignature, TensorSpec
from topology.codec import BadInput, decode_encoder_request

logger = logging.getLogger(__name__)


def normalise_rows(vector: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
    """The probe model: (batch, dim) -> (batch, dim) rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(vector, axis=1, keepdims=True)
    return {"normalised": (vector / np.maximum(norms, 1e-12)).astype(np.float32)}


def encoder_infer_fn(encoder: object) -> object:
    """The batched Triton function of the SAIL encoder: (B, 1) request blobs -> embedding (B, D),
    error (B, 1), model_version (B, 1). A blob that is not a request fails only its own row."""
    from encoders.model import SailEncoder
    from topology.messages import EncodeRequest

    assert isinstance(encoder, SailEncoder)
    dim = encoder.config.output_dim
    version = encoder.model_version.encode()

    def infer(item: NDArray[np.object_]) -> dict[str, NDArray]:
        requests: list[EncodeRequest | None] = []
        errors = [b""] * len(item)
        for row, blob in enumerate(item[:, 0]):
            try:
                requests.append(decode_encoder_request(bytes(blob)))
            except BadInput as exc:
                requests.append(None)
                errors[row] = f"{exc.reason}: {exc.detail}"[:300].encode()
        rows = [r for r, req in enumerate(requests) if req is not None]
        decoded = [req for req in requests if req is not None]
        embedding = np.zeros((len(item), dim), dtype=np.float32)
        for row, result in zip(rows, encoder.encode(decoded)):
            if result.vector is not None:
                embedding[row] = result.vector
            else:
                errors[row] = result.error.encode()
        return {
            "embedding": embedding,
            "error": np.array([[e] for e in errors], dtype=np.object_),
            "model_version": np.array([[version]] * len(item), dtype=np.object_),
        }

    return infer


def _tensors(specs: Sequence[TensorSpec]) -> list[Any]:
    from pytriton.model_config import Tensor

    return [Tensor(name=s.name, dtype=s.numpy_dtype, shape=s.shape) for s in specs]


def serve(
    encoder_name: str,
    device: str,
    host: str,
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    max_batch_size: int,
    queue_delay_us: int,
    instances: int,
    tls: tuple[Path, Path] | None = None,
    max_queue_size: int = 0,
    standin_control: Path | None = None,
) -> None:
    """Start tritonserver with the models bound and block until SIGINT/SIGTERM; with `tls`
    (certificate, key) its gRPC endpoint speaks TLS only. `max_queue_size` > 0 bounds each model's
    queue (requests beyond it are refused at once, never computed); `encoder_name` "standin" serves
    `encoders.bench_double` with the service time in `standin_control`."""
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy
    from pytriton.triton import Triton, TritonConfig

    config = TritonConfig(
        grpc_address=host,
        http_address=host,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        allow_metrics=True,
        log_verbose=0,
        **({"grpc_use_ssl": True, "grpc_server_cert": tls[0], "grpc_server_key": tls[1]} if tls else {}),
    )
    models: list[tuple[ModelSignature, list[object]]] = [(PROBE, [batch(normalise_rows)] * instances)]
    if encoder_name == STANDIN:
        if standin_control is None:
            raise ValueError("the stand-in encoder needs --standin-control")
        from encoders.bench_double import read_control, standin_infer_fn

        logger.info("encoder=standin service time %s (control file %s)", read_control(standin_control), standin_control)
        models.append((SAIL_ENCODER, [batch(standin_infer_fn(standin_control)) for _ in range(instances)]))
    else:
        from encoders.model import load_encoder

        # Start-up, not import: weights load here, one copy per instance (tokenizers are not thread-safe).
        encoders = [load_encoder(encoder_name, device) for _ in range(instances)]
        logger.info(
            "loaded encoder=%s model_version=%s dim=%d", encoder_name, encoders[0].model_version, encoders[0].config.output_dim
        )
        models.append((SAIL_ENCODER, [batch(encoder_infer_fn(e)) for e in encoders]))
    # The queue bound refuses the excess before it is computed (a refused request costs nothing);
    # nothing times out in the queue: a request admitted is a request computed.
    queue = QueuePolicy(max_queue_size=max_queue_size) if max_queue_size > 0 else None
    with Triton(config=config) as triton:
        for signature, infer_funcs in models:
            triton.bind(
                model_name=signature.name,
                infer_func=infer_funcs,  # one model instance per function
                inputs=_tensors(signature.inputs),
                outputs=_tensors(signature.outputs),
                config=ModelConfig(
                    max_batch_size=max_batch_size,
                    batcher=DynamicBatcher(max_queue_delay_microseconds=queue_delay_us, default_queue_policy=queue),
                ),
                strict=True,
            )
            logger.info("bound model=%s instances=%d max_batch_size=%d", signature.name, instances, max_batch_size)
        logger.info("triton serving grpc=%s:%d http=%s:%d metrics=%d", host, grpc_port, host, http_port, metrics_port)
        triton.serve()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m encoders.serving", description="Serve sail-stream's encoder models with Triton."
    )
    parser.add_argument(
        "--encoder",
        default="sail-tiny",
        help="preset name (sail-tiny, sail-tiny-omni, sail-qwen2-tiny, sail-large), a saved encoder folder, or 'standin' "
        "(encoders.bench_double: sleeps a configured service time per batch, for measuring the pipeline)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (the GPU when there is one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--max-batch-size", type=int, default=64, help="dynamic batcher's largest batch")
    parser.add_argument("--queue-delay-us", type=int, default=2000, help="how long a request may wait to be batched")
    parser.add_argument("--instances", type=int, default=1, help="model instances (Python processes) per model")
    parser.add_argument(
        "--max-queue-size", type=int, default=0, help="requests a model may queue; beyond, refused at once (0: unbounded)"
    )
    parser.add_argument(
        "--standin-control", type=Path, help="with --encoder standin: the JSON file holding its service time (re-read on change)"
    )
    parser.add_argument("--tls-cert", type=Path, help="serve gRPC over TLS with this PEM certificate (with --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="the PEM key of --tls-cert")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.encoder == STANDIN and args.standin_control is None:
        parser.error("--encoder standin needs --standin-control")
    serve(
        args.encoder,
        args.device,
        args.host,
        args.grpc_port,
        args.http_port,
        args.metrics_port,
        args.max_batch_size,
        args.queue_delay_us,
        args.instances,
        (args.tls_cert, args.tls_key) if args.tls_cert else None,
        args.max_queue_size,
        args.standin_control,
    )


if __name__ == "__main__":
    main()
