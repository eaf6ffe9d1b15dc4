"""Golden vectors of the default encoder and of a tiny trained one: `python -m tests.encoders.golden`
rewrites tests/data/golden_sail_tiny.json after a deliberate change (which also changes model_version);
`--trained` rewrites tests/data/golden_trained_tiny.json, the vectors of `tests.support.training`'s
4-step run (a change to the training loop or its losses moves them)."""

from __future__ import annotations

import json
from pathlib import Path

from encoders.model import load_encoder
from topology.messages import EncodeRequest

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_sail_tiny.json"
GOLDEN_TRAINED = GOLDEN.with_name("golden_trained_tiny.json")
REQUESTS = [
    EncodeRequest(title="kitten chases a laser pointer", tags=("cats", "funny")),
    EncodeRequest(
        title="Best pasta recipe", ocr_text="Boil water. Add salt.", asr_text="today we cook", author_nickname="chef_anna"
    ),
    EncodeRequest(role="query", title="football highlights"),
]


def main() -> None:
    import sys

    if "--trained" in sys.argv:
        import tempfile

        from encoders.train.loop import train
        from tests.support.training import tiny_data, tiny_recipe

        with tempfile.TemporaryDirectory() as out:
            result = train(tiny_recipe(), tiny_data(), Path(out), device="cpu")
            encoder, target = load_encoder(str(result.encoder_dir)), GOLDEN_TRAINED
    else:
        encoder, target = load_encoder("sail-tiny"), GOLDEN
    vectors = [r.vector.round(6).tolist() for r in encoder.encode(REQUESTS)]  # type: ignore[union-attr]
    target.write_text(json.dumps({"model_version": encoder.model_version, "vectors": vectors}))
    print(f"wrote {target} for {encoder.model_version}")


if __name__ == "__main__":
    main()
