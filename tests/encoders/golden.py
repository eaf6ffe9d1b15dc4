"""Golden vectors of the default encoder: `python -m tests.encoders.golden` rewrites
tests/data/golden_sail_tiny.json after a deliberate change (which also changes model_version)."""

from __future__ import annotations

import json
from pathlib import Path

from encoders.model import load_encoder
from topology.messages import EncodeRequest

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_sail_tiny.json"
REQUESTS = [
    EncodeRequest(title="kitten chases a laser pointer", tags=("cats", "funny")),
    EncodeRequest(title="Best pasta recipe", ocr_text="Boil water. Add salt.", asr_text="today we cook", author_nickname="chef_anna"),
    EncodeRequest(role="query", title="football highlights"),
]


def main() -> None:
    encoder = load_encoder("sail-tiny")
    vectors = [r.vector.round(6).tolist() for r in encoder.encode(REQUESTS)]  # type: ignore[union-attr]
    GOLDEN.write_text(json.dumps({"model_version": encoder.model_version, "vectors": vectors}))
    print(f"wrote {GOLDEN} for {encoder.model_version}")


if __name__ == "__main__":
    main()
