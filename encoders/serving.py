"""Serve the encoder models with the real `tritonserver` through PyTriton (CPU or GPU).

Run as `python -m encoders.serving --grpc-port ...`; `deploy.local` starts it for the local stack.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from encoders.signature import PROBE, ModelSignature

logger = logging.getLogger(__name__)


def normalise_rows(vector: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
    """The probe model: (batch, dim) -> (batch, dim) rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(vector, axis=1, keepdims=True)
    return {"normalised": (vector / np.maximum(norms, 1e-12)).astype(np.float32)}


def _tensors(specs: Sequence[object]) -> list[object]:
    from pytriton.model_config import Tensor

    return [Tensor(name=s.name, dtype=s.numpy_dtype, shape=s.shape) for s in specs]  # type: ignore[attr-defined]


def serve(
    host: str,
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    max_batch_size: int,
    queue_delay_us: int,
    instances: int,
) -> None:
    """Start tritonserver with the models bound and block until SIGINT/SIGTERM."""
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig
    from pytriton.triton import Triton, TritonConfig

    config = TritonConfig(
        grpc_address=host,
        http_address=host,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        allow_metrics=True,
        log_verbose=0,
    )
    models: list[tuple[ModelSignature, object]] = [(PROBE, batch(normalise_rows))]
    with Triton(config=config) as triton:
        for signature, infer in models:
            triton.bind(
                model_name=signature.name,
                infer_func=[infer] * instances,  # one Python instance per entry
                inputs=_tensors(signature.inputs),
                outputs=_tensors(signature.outputs),
                config=ModelConfig(
                    max_batch_size=max_batch_size,
                    batcher=DynamicBatcher(max_queue_delay_microseconds=queue_delay_us),
                ),
                strict=True,
            )
            logger.info("bound model=%s instances=%d max_batch_size=%d", signature.name, instances, max_batch_size)
        logger.info("triton serving grpc=%s:%d http=%s:%d metrics=%d", host, grpc_port, host, http_port, metrics_port)
        triton.serve()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m encoders.serving", description="Serve sail-stream's encoder models with Triton.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--max-batch-size", type=int, default=64, help="dynamic batcher's largest batch")
    parser.add_argument("--queue-delay-us", type=int, default=2000, help="how long a request may wait to be batched")
    parser.add_argument("--instances", type=int, default=1, help="model instances (Python processes) per model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve(args.host, args.grpc_port, args.http_port, args.metrics_port, args.max_batch_size, args.queue_delay_us, args.instances)


if __name__ == "__main__":
    main()
