"""Triton Python-backend entry for the SAIL encoder: the same code path as the PyTriton binding
(encoders.serving.encoder_infer_fn), so both servers return identical vectors.

The backend's embedded Python ignores PYTHONPATH, so the folders holding sail-stream and its
dependencies come in SAIL_BACKEND_PYTHONPATH (colon-separated; `deploy/local/tritonserver.py` sets
it), or use the Python backend's packed EXECUTION_ENV_PATH.
"""

import json
import os
import sys

sys.path[:0] = [p for p in os.environ.get("SAIL_BACKEND_PYTHONPATH", "").split(":") if p and p not in sys.path]

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from encoders.model import load_encoder  # noqa: E402
from encoders.serving import encoder_infer_fn  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        name = config.get("parameters", {}).get("encoder", {}).get("string_value", "sail-tiny")
        self.encoder = load_encoder(name)
        self.infer = encoder_infer_fn(self.encoder)

    def execute(self, requests):
        # The dynamic batcher hands over several requests: encode them as one batch, then split.
        items = [pb_utils.get_input_tensor_by_name(r, "item").as_numpy() for r in requests]
        sizes = [len(i) for i in items]
        out = self.infer(np.concatenate(items, axis=0))
        responses, start = [], 0
        for size in sizes:
            part = {name: value[start : start + size] for name, value in out.items()}
            start += size
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("embedding", part["embedding"]),
                        pb_utils.Tensor("error", part["error"]),
                        pb_utils.Tensor("model_version", part["model_version"]),
                    ]
                )
            )
        return responses
