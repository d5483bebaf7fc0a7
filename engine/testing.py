"""Tiny random-weight pipelines, built in code, for tests, benchmarks and offline smoke checks.

They have the real architecture (CLIP text encoder and tokenizer, UNet with 9 or 4 input channels,
an AutoencoderKL that downsamples 8x like the real one) at a size that runs on a laptop CPU in
milliseconds. They are saved with ``save_pretrained`` and loaded back through the engine's own loader,
so tests exercise the code path users run. The pictures they paint are noise, by design.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerAncestralDiscreteScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionXLInpaintPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

# Native size of the tiny models: UNet sample size 8 x VAE scale factor 8.
TINY_NATIVE_SIZE = 64


def _bytes_to_unicode() -> list[str]:
    """The byte-to-character table of GPT-2/CLIP byte-level BPE."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def tiny_tokenizer() -> CLIPTokenizer:
    """A real CLIP BPE tokenizer over single characters (no merges): every character is one token."""
    with tempfile.TemporaryDirectory() as tmp:
        return _write_tokenizer(Path(tmp))


def _write_tokenizer(folder: Path) -> CLIPTokenizer:
    chars = _bytes_to_unicode()
    vocab_tokens = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(vocab_tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=77)


def _text_config(tokenizer: CLIPTokenizer, hidden_size: int = 32) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        projection_dim=hidden_size,
        max_position_embeddings=77,
    )


def _text_encoder(
    config: CLIPTextConfig, model_class: type[CLIPTextModel] = CLIPTextModel
) -> CLIPTextModel:
    """A random CLIP text encoder whose final LayerNorm has a bias, as trained ones do.

    With the default zero bias every token embedding has mean 0, and A1111's mean-restoring prompt
    weighting would have nothing to restore.
    """
    model = model_class(config)
    with torch.no_grad():
        getattr(model, "text_model", model).final_layer_norm.bias.normal_(
            0.1, 0.2
        )  # transformers 4 and 5
    return model


def _tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 16, 16],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=TINY_NATIVE_SIZE,
    )


def _scheduler() -> EulerAncestralDiscreteScheduler:
    """The scheduler configuration real SD checkpoints ship."""
    return EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )


def build_tiny_sd(folder: Path, *, inpainting: bool = True, seed: int = 0) -> Path:
    """Save a tiny SD1.x-architecture pipeline: 9-channel (inpainting) or 4-channel (regular) UNet."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=TINY_NATIVE_SIZE // 8,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    pipe = StableDiffusionInpaintPipeline(
        vae=_tiny_vae(),
        text_encoder=_text_encoder(_text_config(tokenizer)),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_sdxl(folder: Path, *, inpainting: bool = False, seed: int = 0) -> Path:
    """Save a tiny SDXL-architecture pipeline (two text encoders, pooled and time embeddings)."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    config = _text_config(tokenizer)
    time_embed_dim = 8
    unet = UNet2DConditionModel(
        sample_size=TINY_NATIVE_SIZE // 8,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=time_embed_dim * 6 + config.projection_dim,
        cross_attention_dim=config.hidden_size * 2,
    )
    pipe = StableDiffusionXLInpaintPipeline(
        vae=_tiny_vae(),
        text_encoder=_text_encoder(config),
        text_encoder_2=_text_encoder(config, CLIPTextModelWithProjection),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
        requires_aesthetics_score=False,
        force_zeros_for_empty_prompt=False,
    )
    pipe.save_pretrained(folder)
    return folder
