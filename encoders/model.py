"""The SAIL-style omni-modal encoder (after the SAIL-Embedding technical report).

    cover + frames --ViT (patch 14)--> patch tokens --perceiver (16 latents)--> visual tokens --adapter--+
    audio --log-mel, 10 s chunks--> conv encoder --mean over chunks--> 1 token --adapter-----------------+
    instruction + text fields --tokenizer--> text tokens -------------------------------------------------+
                                                                                                          v
            fusion transformer, bidirectional attention over [audio; vision; text]
                 -> mean over tokens of tanh(hidden) -> Matryoshka prefixes, L2-normalised

Each modality's tokens are scaled by tanh(gate); a gate of exactly 0 closes the modality and its
tokens are left out, so `sail-tiny` (gates at 0, real MiniLM weights) is exactly a text embedder.
Token positions do not depend on which modalities are present (text at 0..T-1, audio and visual
tokens after the text budget), so an item embeds the same alone or in any batch.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from encoders.config import CONFIG_FILE, AudioConfig, EncoderConfig, VisionConfig
from encoders.preprocess import MediaError, PreparedItem, prepare
from encoders.signature import EncodeResult
from topology.messages import EncodeRequest

if TYPE_CHECKING:  # transformers is imported when a model is built, not when this module is
    from transformers import BertModel, Qwen2Model

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"


def resolve_dir(spec: str) -> Path:
    """`package:<module>` -> the model folder shipped inside that installed package; else a path."""
    if spec.startswith("package:"):
        module = importlib.import_module(spec.removeprefix("package:"))
        return Path(module.get_model_path())
    return Path(spec)


# --------------------------------------------------------------------------- vision


class PerceiverResampler(nn.Module):
    """`num_latents` learned queries cross-attend to all patch tokens of an item's images."""

    def __init__(self, dim: int, num_latents: int, layers: int, heads: int, max_images: int) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
        self.image_pos = nn.Parameter(torch.zeros(max_images, 1, dim))  # which image (cover, frame i) a patch is from
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    "norm_q": nn.LayerNorm(dim),
                    "norm_kv": nn.LayerNorm(dim),
                    "attn": nn.MultiheadAttention(dim, heads, batch_first=True),
                    "ffn": nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)),
                }
            )
            for _ in range(layers)
        )

    def forward(self, patches: torch.Tensor, image_mask: torch.Tensor) -> torch.Tensor:
        """patches (B, I, P, D), image_mask (B, I) True where the image exists -> (B, num_latents, D)."""
        b, i, p, d = patches.shape
        tokens = (patches + self.image_pos[:i]).reshape(b, i * p, d)  # (B, I*P, D)
        pad = ~image_mask.repeat_interleave(p, dim=1)  # (B, I*P), True = ignore
        x = self.latents.expand(b, -1, -1)
        for block in self.blocks:
            assert isinstance(block, nn.ModuleDict)  # (ModuleList's items are typed as any Module)
            q = block["norm_q"](x)
            kv = torch.cat([block["norm_kv"](tokens), q], dim=1)  # latents also attend to themselves (Flamingo)
            kv_pad = torch.cat([pad, torch.zeros(b, q.shape[1], dtype=torch.bool, device=pad.device)], dim=1)
            x = x + block["attn"](q, kv, kv, key_padding_mask=kv_pad, need_weights=False)[0]
            x = x + block["ffn"](x)
        return x


class VisionTower(nn.Module):
    """ViT over every image, then the perceiver: (B, I, 3, S, S) -> (B, num_latents, D_vision)."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        from transformers import ViTConfig, ViTModel

        vit_config = ViTConfig(
            image_size=config.image_size,
            patch_size=config.patch_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=config.intermediate_size,
        )
        self.vit = ViTModel(vit_config, add_pooling_layer=False)
        self.perceiver = PerceiverResampler(
            config.hidden_size, config.num_latents, config.perceiver_layers, config.perceiver_heads, config.max_frames + 1
        )

    def forward(self, images: torch.Tensor, image_mask: torch.Tensor) -> torch.Tensor:
        b, i = images.shape[:2]
        present = image_mask.reshape(-1)
        flat = images.reshape(b * i, *images.shape[2:])  # (B*I, 3, S, S)
        patches = torch.zeros(b * i, 0, 0, device=images.device)
        hidden = self.vit(pixel_values=flat[present]).last_hidden_state[:, 1:]  # drop [CLS]: (N, P, D)
        patches = hidden.new_zeros(b * i, *hidden.shape[1:])
        patches[present] = hidden
        return self.perceiver(patches.reshape(b, i, *hidden.shape[1:]), image_mask)


# --------------------------------------------------------------------------- audio


class AudioTower(nn.Module):
    """CLAP-style: a conv encoder per 10 s log-mel chunk, chunks mean-pooled -> (B, 1, D_audio)."""

    def __init__(self, config: AudioConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.convs = nn.Sequential(
            nn.Conv2d(1, h // 4, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(h // 4, h // 2, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(h // 2, h, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.norm = nn.LayerNorm(h)

    def forward(self, mel: torch.Tensor, chunk_mask: torch.Tensor) -> torch.Tensor:
        """mel (B, C, M, T), chunk_mask (B, C) -> (B, 1, D)."""
        b, c = mel.shape[:2]
        x = self.convs(mel.reshape(b * c, 1, *mel.shape[2:]))  # (B*C, D, M', T')
        x = self.norm(x.mean(dim=(2, 3))).reshape(b, c, -1)  # (B, C, D)
        weights = chunk_mask.float().unsqueeze(-1)
        return ((x * weights).sum(1) / weights.sum(1).clamp(min=1.0)).unsqueeze(1)  # mean over real chunks


# --------------------------------------------------------------------------- fusion backbones


class Fusion(nn.Module):
    """The fusion transformer with bidirectional attention over given embeddings."""

    hidden_size: int

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, modal: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BertFusion(Fusion):
    """BERT-family backbone (all-MiniLM-L6-v2 by default): bidirectional by nature."""

    def __init__(self, model: BertModel) -> None:
        super().__init__()
        self.model = model
        self.hidden_size = int(model.config.hidden_size)

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        embedded: torch.Tensor = self.model.embeddings.word_embeddings(input_ids)
        return embedded

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, modal: torch.Tensor) -> torch.Tensor:
        # token type 1 marks audio/visual tokens; text keeps type 0 as in pre-training
        out = self.model(inputs_embeds=embeds, attention_mask=mask.long(), position_ids=positions, token_type_ids=modal.long())
        return out.last_hidden_state


class Qwen2Fusion(Fusion):
    """Qwen2-family LLM as an encoder: the causal mask replaced by a bidirectional padding mask."""

    def __init__(self, model: Qwen2Model) -> None:
        super().__init__()
        self.model = model
        self.hidden_size = int(model.config.hidden_size)
        for module in model.modules():
            if hasattr(module, "is_causal"):
                # a plain bool on the attention modules; nn.Module's attribute types cover tensors and modules only
                module.is_causal = False  # type: ignore[assignment]

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        embedded: torch.Tensor = self.model.embed_tokens(input_ids)
        return embedded

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, modal: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        full = create_bidirectional_mask(config=self.model.config, inputs_embeds=embeds, attention_mask=mask)
        out = self.model(inputs_embeds=embeds, attention_mask={"full_attention": full}, position_ids=positions, use_cache=False)
        return out.last_hidden_state


def build_fusion(config: EncoderConfig) -> Fusion:
    from transformers import BertConfig, BertModel, Qwen2Config, Qwen2Model
    from transformers.utils import logging as hf_logging

    # The MiniLM checkpoint carries a pooler we do not build; its "unexpected keys" report is noise.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    directory = resolve_dir(config.fusion_weights_dir) if config.fusion_weights_dir else None
    if config.fusion == "bert":  # the pooler is unused: pooling is mean(tanh(hidden))
        if directory is not None:
            return BertFusion(BertModel.from_pretrained(directory, add_pooling_layer=False, local_files_only=True))
        return BertFusion(BertModel(BertConfig(**config.fusion_config), add_pooling_layer=False))
    if directory is not None:
        return Qwen2Fusion(Qwen2Model.from_pretrained(directory, local_files_only=True))
    return Qwen2Fusion(Qwen2Model(Qwen2Config(**config.fusion_config)))


# --------------------------------------------------------------------------- the encoder


class SailEncoder(nn.Module):
    """Omni-modal encoder; `encode()` takes requests and returns per-item results."""

    def __init__(self, config: EncoderConfig, fusion: Fusion | None = None, root: Path | None = None) -> None:
        """`root`: the saved folder a relative `tokenizer_dir` is read from (`from_pretrained`)."""
        super().__init__()
        from transformers import AutoTokenizer

        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # random-init parts are the same in every process
            self.fusion = fusion or build_fusion(config)
            h = self.fusion.hidden_size
            if config.output_dim > h:
                raise ValueError(f"matryoshka_dims[0]={config.output_dim} exceeds the fusion width {h}")
            self.vision = VisionTower(config.vision)
            self.vision_adapter = nn.Sequential(nn.LayerNorm(config.vision.hidden_size), nn.Linear(config.vision.hidden_size, h))
            self.audio = AudioTower(config.audio)
            self.audio_adapter = nn.Sequential(nn.LayerNorm(config.audio.hidden_size), nn.Linear(config.audio.hidden_size, h))
        self.vision_gate = nn.Parameter(torch.tensor(float(config.vision_gate_init)))
        self.audio_gate = nn.Parameter(torch.tensor(float(config.audio_gate_init)))
        tokenizer_dir = (
            root / config.tokenizer_dir
            if root is not None and not config.tokenizer_dir.startswith("package:")
            else resolve_dir(config.tokenizer_dir)
        )
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        self.eval()
        self._model_version: str | None = None

    # ------------------------------------------------------------------ persistence

    @classmethod
    def from_config(cls, config: EncoderConfig) -> SailEncoder:
        return cls(config)

    def save_pretrained(self, directory: Path) -> None:
        """Write `sail_config.json`, the weights (safetensors) and the tokenizer: a self-contained,
        Hugging Face-style folder that `from_pretrained` loads offline."""
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        local = _local_config(self.config)
        (directory / CONFIG_FILE).write_text(local.to_json())
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory: Path) -> SailEncoder:
        from safetensors.torch import load_file

        config = EncoderConfig.load(directory)
        encoder = cls(config, root=directory)
        missing, unexpected = encoder.load_state_dict(load_file(str(directory / WEIGHTS_FILE)), strict=False)
        if missing or unexpected:
            raise ValueError(f"weights in {directory} do not match the config: missing={missing[:5]} unexpected={unexpected[:5]}")
        return encoder

    @property
    def model_version(self) -> str:
        """`<name>-<12 hex>` from the config and every weight: equal versions embed identically."""
        if self._model_version is None:
            digest = hashlib.sha256(self.config.to_json().encode())
            for key, tensor in sorted(self.state_dict().items()):
                digest.update(key.encode())
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            self._model_version = f"{self.config.name}-{digest.hexdigest()[:12]}"
        return self._model_version

    # ------------------------------------------------------------------ inference

    def prepare_all(self, requests: Sequence[EncodeRequest]) -> list[PreparedItem | str]:
        """Preprocess each request; a media failure becomes that item's error string."""
        prepared: list[PreparedItem | str] = []
        for request in requests:
            try:
                prepared.append(prepare(request, self.config))
            except MediaError as exc:
                prepared.append(f"{exc.reason}: {exc}")
        return prepared

    @torch.inference_mode()
    def encode(self, requests: Sequence[EncodeRequest]) -> list[EncodeResult]:
        """Embed a batch; items whose media cannot be decoded get an error, the rest a vector."""
        prepared = self.prepare_all(requests)
        version = self.model_version
        items = [p for p in prepared if isinstance(p, PreparedItem)]
        vectors = iter(self.forward_prepared(items)) if items else iter(())
        return [
            EncodeResult(vector=None, error=p, model_version=version)
            if isinstance(p, str)
            else EncodeResult(vector=next(vectors), model_version=version)
            for p in prepared
        ]

    def forward_prepared(self, items: Sequence[PreparedItem]) -> NDArray[np.float32]:
        """(B,) prepared items -> (B, output_dim) unit vectors."""
        return nn.functional.normalize(self.embed(items), dim=-1).cpu().numpy()

    def embed(self, items: Sequence[PreparedItem]) -> torch.Tensor:
        """(B,) prepared items -> (B, output_dim) pooled embeddings, float32 and not normalised (the
        Matryoshka prefixes are normalised by whoever reads them). Differentiable: the training loop
        (`encoders.train`) calls this same path, so a trained encoder serves what it learned."""
        device = next(self.parameters()).device
        cfg = self.config
        tokens = self.tokenizer(
            [item.text for item in items], padding=True, truncation=True, max_length=cfg.max_text_tokens, return_tensors="pt"
        )
        input_ids = tokens["input_ids"].to(device)
        text_mask = tokens["attention_mask"].to(device).bool()  # (B, T)
        b, t = input_ids.shape
        text_embeds = self.fusion.embed_tokens(input_ids)  # (B, T, H)
        text_pos = torch.arange(t, device=device).expand(b, t)

        embeds, masks, positions, modal = [], [], [], []
        next_pos = cfg.max_text_tokens  # modal tokens sit after the text budget, whatever is present
        dtype = text_embeds.dtype
        if float(self.audio_gate.detach()) != 0.0:
            audio_tokens, audio_present = self._audio_tokens(items, device, dtype)  # (B, 1, H), (B,)
            embeds.append(torch.tanh(self.audio_gate) * audio_tokens)
            masks.append(audio_present.unsqueeze(1))
            positions.append(torch.full((b, 1), next_pos, device=device))
            modal.append(torch.ones(b, 1, dtype=torch.bool, device=device))
        next_pos += 1
        if float(self.vision_gate.detach()) != 0.0:
            visual_tokens, vision_present = self._visual_tokens(items, device, dtype)  # (B, L, H), (B,)
            n = visual_tokens.shape[1]
            embeds.append(torch.tanh(self.vision_gate) * visual_tokens)
            masks.append(vision_present.unsqueeze(1).expand(b, n))
            positions.append((next_pos + torch.arange(n, device=device)).expand(b, n))
            modal.append(torch.ones(b, n, dtype=torch.bool, device=device))
        embeds.append(text_embeds)
        masks.append(text_mask)
        positions.append(text_pos)
        modal.append(torch.zeros(b, t, dtype=torch.bool, device=device))

        mask = torch.cat(masks, dim=1)  # (B, S) with S = [audio; vision; text]
        hidden = self.fusion(torch.cat(embeds, dim=1), mask, torch.cat(positions, dim=1), torch.cat(modal, dim=1))
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (torch.tanh(hidden) * weights).sum(1) / weights.sum(1)  # (B, S, H) -> (B, H)
        return pooled[:, : cfg.output_dim].float()

    def _visual_tokens(
        self, items: Sequence[PreparedItem], device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        vision = self.config.vision
        max_images = vision.max_frames + 1
        b = len(items)
        images = torch.zeros(b, max_images, 3, vision.image_size, vision.image_size)
        image_mask = torch.zeros(b, max_images, dtype=torch.bool)
        for row, item in enumerate(items):
            if item.images is not None:
                n = min(len(item.images), max_images)
                images[row, :n] = torch.from_numpy(item.images[:n])
                image_mask[row, :n] = True
        present = image_mask.any(dim=1)
        tokens = torch.zeros(b, vision.num_latents, self.fusion.hidden_size, device=device, dtype=dtype)
        if present.any():
            rows = present.nonzero().squeeze(1)
            latents = self.vision(images[rows].to(device), image_mask[rows].to(device))  # (N, L, Dv)
            tokens[rows.to(device)] = self.vision_adapter(latents).to(dtype)
        return tokens, present.to(device)

    def _audio_tokens(
        self, items: Sequence[PreparedItem], device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = len(items)
        present = torch.tensor([item.audio is not None for item in items], dtype=torch.bool)
        tokens = torch.zeros(b, 1, self.fusion.hidden_size, device=device, dtype=dtype)
        if present.any():
            rows = present.nonzero().squeeze(1).tolist()
            audios = [items[r].audio for r in rows]
            chunks = max(a.shape[0] for a in audios if a is not None)
            first = audios[0]
            assert first is not None
            mel = torch.zeros(len(rows), chunks, *first.shape[1:])
            chunk_mask = torch.zeros(len(rows), chunks, dtype=torch.bool)
            for k, r in enumerate(rows):
                audio = items[r].audio
                assert audio is not None
                mel[k, : len(audio)] = torch.from_numpy(audio)
                chunk_mask[k, : len(audio)] = True
            token = self.audio(mel.to(device), chunk_mask.to(device))  # (N, 1, Da)
            tokens[torch.tensor(rows, device=device)] = self.audio_adapter(token).to(dtype)
        return tokens, present.to(device)


def _local_config(config: EncoderConfig) -> EncoderConfig:
    """The config as saved: weights and tokenizer come from the folder itself from now on (the
    tokenizer path is relative, so the folder can move and keeps its `model_version`)."""
    import dataclasses

    return dataclasses.replace(config, fusion_weights_dir="", tokenizer_dir=".", fusion_config=_fusion_config(config))


def _fusion_config(config: EncoderConfig) -> dict[str, object]:
    if config.fusion_config:
        return dict(config.fusion_config)
    from transformers import AutoConfig

    raw = AutoConfig.from_pretrained(resolve_dir(config.fusion_weights_dir), local_files_only=True).to_dict()
    keep = (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "hidden_act",
        "max_position_embeddings",
        "type_vocab_size",
        "layer_norm_eps",
        "pad_token_id",
    )
    return {k: raw[k] for k in keep if k in raw}


def load_encoder(name_or_path: str, device: str = "cpu") -> SailEncoder:
    """A preset (`sail-tiny`, ...) built offline, or a folder written by `save_pretrained`, on
    `device` ("cpu", "cuda", "cuda:1", or "auto": the GPU when there is one)."""
    from encoders.config import resolve_config

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    path = Path(name_or_path)
    encoder = SailEncoder.from_pretrained(path) if (path / WEIGHTS_FILE).exists() else SailEncoder(resolve_config(name_or_path))
    return encoder.to(device)
