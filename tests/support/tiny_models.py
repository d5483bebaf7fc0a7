"""Tiny random-weight pipelines, built in code, for tests and benchmarks; not shipped in the wheel.

They have the real architecture (CLIP text encoder and tokenizer, UNet with 9 or 4 input channels,
an AutoencoderKL that downsamples 8x like the real one) at a size that runs on a laptop CPU in
milliseconds. They are saved with ``save_pretrained`` and loaded back through the engine's own loader,
so tests exercise the code path users run. The pictures they paint are noise, by design.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    EulerAncestralDiscreteScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionXLInpaintPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import load_file, save_file
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
    config: CLIPTextConfig,
    model_class: type[CLIPTextModel] | type[CLIPTextModelWithProjection] = CLIPTextModel,
) -> CLIPTextModel | CLIPTextModelWithProjection:
    """A random CLIP text encoder whose final LayerNorm has a bias, as trained ones do.

    With the default zero bias every token embedding has mean 0, and A1111's mean-restoring prompt
    weighting would have nothing to restore.
    """
    model = model_class(config)
    with torch.no_grad():
        # transformers 4 nests the layers under ``text_model``; 5 does not.
        layer_norm: Any = getattr(model, "text_model", model).final_layer_norm
        layer_norm.bias.normal_(0.1, 0.2)
    return model


def tiny_vae() -> AutoencoderKL:
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


def _tiny_unet(inpainting: bool, **architecture: Any) -> UNet2DConditionModel:
    """Two-level UNet, 9 input channels (latent + mask + masked-image latent) or 4."""
    return UNet2DConditionModel(
        sample_size=TINY_NATIVE_SIZE // 8,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **architecture,
    )


def build_tiny_sd(folder: Path, *, inpainting: bool = True, seed: int = 0) -> Path:
    """Save a tiny SD1.x-architecture pipeline: 9-channel (inpainting) or 4-channel (regular) UNet."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    unet = _tiny_unet(inpainting, cross_attention_dim=32, attention_head_dim=4)
    # Any: diffusers registers components at run time, so type checkers miss save_pretrained.
    pipe: Any = StableDiffusionInpaintPipeline(
        vae=tiny_vae(),
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
    # The second encoder is wider than the first, as in real SDXL (768 and 1280): diffusers tells the
    # two apart by width when it loads a single-file checkpoint.
    config_2 = _text_config(tokenizer, hidden_size=48)
    time_embed_dim = 8
    unet = _tiny_unet(
        inpainting,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=time_embed_dim * 6 + config_2.hidden_size,
        cross_attention_dim=config.hidden_size + config_2.hidden_size,
    )
    pipe: Any = StableDiffusionXLInpaintPipeline(
        vae=tiny_vae(),
        text_encoder=_text_encoder(config),
        text_encoder_2=_text_encoder(config_2, CLIPTextModelWithProjection),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
        requires_aesthetics_score=False,
        force_zeros_for_empty_prompt=False,
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_controlnet(folder: Path, base: Path, *, seed: int = 0) -> Path:
    """Save a tiny ControlNet for the (regular) tiny pipeline folder ``base``, as Tile and Inpaint are.

    ``from_unet`` copies the UNet's encoder and starts the layers that feed the UNet at zero, as
    training does; random ones here make the ControlNet change the picture, so tests can see it act.
    """
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    controlnet: Any = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8))
    zero_initialised = [
        controlnet.controlnet_cond_embedding.conv_out,
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
    ]
    with torch.no_grad():
        for layer in zero_initialised:
            layer.weight.normal_(0, 0.5)
            layer.bias.normal_(0, 0.1)
    controlnet.save_pretrained(folder)
    return folder


# Original-layout (LDM/A1111) names of diffusers sub-modules, for ``save_single_file``: the reverse of
# the converters in ``diffusers.loaders.single_file_utils``, sized to the tiny models above.
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def save_single_file(pipeline_folder: Path, checkpoint: Path) -> Path:
    """Save a tiny pipeline folder as one ``.safetensors`` file in the original (LDM/A1111) layout.

    Users load such checkpoints with ``from_single_file``; this lets tests exercise that path offline.
    diffusers converts the file back to exactly the folder's weights.
    """
    unet, unet_config = _read_component(pipeline_folder, "unet")
    vae, vae_config = _read_component(pipeline_folder, "vae")
    text_encoder, _ = _read_component(pipeline_folder, "text_encoder")
    state = _prefixed("model.diffusion_model.", _renamed(unet, _unet_table(unet_config)))
    state |= _prefixed("first_stage_model.", _ldm_vae(vae, vae_config))
    if (pipeline_folder / "text_encoder_2").is_dir():
        open_clip, open_clip_config = _read_component(pipeline_folder, "text_encoder_2")
        state |= _prefixed("conditioner.embedders.0.transformer.", _text_model(text_encoder))
        state |= _prefixed("conditioner.embedders.1.model.", _open_clip(open_clip, open_clip_config))
    else:
        state |= _prefixed("cond_stage_model.transformer.", _text_model(text_encoder))
    save_file(state, checkpoint)
    return checkpoint


def _read_component(folder: Path, name: str) -> tuple[dict[str, torch.Tensor], dict]:
    weights = next((folder / name).glob("*.safetensors"))
    return load_file(weights), json.loads((folder / name / "config.json").read_text(encoding="utf-8"))


def _prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in state.items()}


def _renamed(state: dict[str, torch.Tensor], table: dict[str, str]) -> dict[str, torch.Tensor]:
    """Rename each key's longest leading dotted part found in ``table``.

    An unknown key raises, so a tiny model that grows a new layer type cannot lose weights silently.
    """
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        head = next(end for end in range(len(parts), 0, -1) if ".".join(parts[:end]) in table)
        renamed[".".join([table[".".join(parts[:head])], *parts[head:]])] = value
    return renamed


def _module(table: dict[str, str], diffusers: str, ldm: str, inner: dict[str, str]) -> None:
    """Map one sub-module and the children whose names differ between the layouts."""
    table[diffusers] = ldm
    table |= {f"{diffusers}.{old}": f"{ldm}.{new}" for old, new in inner.items()}


def _unet_table(config: dict) -> dict[str, str]:
    """The UNet numbers its blocks flat: one per resnet(+attention) layer, one per down/upsampler."""
    layers = config["layers_per_block"]
    step = layers + 1
    table = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
        "mid_block.attentions.0": "middle_block.1",
    }
    for index in range(2):
        _module(table, f"mid_block.resnets.{index}", f"middle_block.{2 * index}", _UNET_RESNET)
    for block, up_type in enumerate(config["up_block_types"]):
        for layer in range(layers):
            ldm = f"input_blocks.{1 + block * step + layer}"
            _module(table, f"down_blocks.{block}.resnets.{layer}", f"{ldm}.0", _UNET_RESNET)
            table[f"down_blocks.{block}.attentions.{layer}"] = f"{ldm}.1"
        table[f"down_blocks.{block}.downsamplers.0.conv"] = f"input_blocks.{(block + 1) * step}.0.op"
        for layer in range(step):
            ldm = f"output_blocks.{block * step + layer}"
            _module(table, f"up_blocks.{block}.resnets.{layer}", f"{ldm}.0", _UNET_RESNET)
            table[f"up_blocks.{block}.attentions.{layer}"] = f"{ldm}.1"
        upsampler = 2 if up_type.startswith("CrossAttn") else 1  # after the attention, if any
        table[f"up_blocks.{block}.upsamplers.0.conv"] = (
            f"output_blocks.{block * step + layers}.{upsampler}.conv"
        )
    return table


def _ldm_vae(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """The decoder's up blocks count from the bottom; the mid attention's projections are 1x1 convs."""
    blocks = len(config["block_out_channels"])
    table = {"quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"}
    for part in ("encoder", "decoder"):
        table |= {f"{part}.conv_in": f"{part}.conv_in", f"{part}.conv_out": f"{part}.conv_out"}
        table[f"{part}.conv_norm_out"] = f"{part}.norm_out"
        _module(table, f"{part}.mid_block.attentions.0", f"{part}.mid.attn_1", _VAE_ATTENTION)
        for index in range(2):
            _module(
                table, f"{part}.mid_block.resnets.{index}", f"{part}.mid.block_{index + 1}", _VAE_RESNET
            )
    for block in range(blocks):
        up = blocks - 1 - block
        table[f"encoder.down_blocks.{block}.downsamplers.0.conv"] = (
            f"encoder.down.{block}.downsample.conv"
        )
        table[f"decoder.up_blocks.{block}.upsamplers.0.conv"] = f"decoder.up.{up}.upsample.conv"
        for layer in range(config["layers_per_block"] + 1):
            _module(
                table,
                f"encoder.down_blocks.{block}.resnets.{layer}",
                f"encoder.down.{block}.block.{layer}",
                _VAE_RESNET,
            )
            _module(
                table,
                f"decoder.up_blocks.{block}.resnets.{layer}",
                f"decoder.up.{up}.block.{layer}",
                _VAE_RESNET,
            )
    return {
        key: value[:, :, None, None] if ".mid.attn_1." in key and value.ndim == 2 else value
        for key, value in _renamed(state, table).items()
    }


def _text_model(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original checkpoints keep transformers' ``text_model.`` level, which transformers 5 drops."""
    return {
        key if key.startswith(("text_model.", "text_projection")) else f"text_model.{key}": value
        for key, value in state.items()
    }


def _open_clip(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """OpenCLIP fuses q/k/v into one ``in_proj`` and stores the text projection transposed."""
    state = _text_model(state)
    ldm = {"text_projection": state.pop("text_projection.weight").T.contiguous()}
    table = {
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.embeddings.token_embedding": "token_embedding",
        "text_model.final_layer_norm": "ln_final",
    }
    for index in range(config["num_hidden_layers"]):
        attention = f"text_model.encoder.layers.{index}.self_attn"
        for kind in ("weight", "bias"):
            fused = [state.pop(f"{attention}.{name}_proj.{kind}") for name in "qkv"]
            ldm[f"transformer.resblocks.{index}.attn.in_proj_{kind}"] = torch.cat(fused)
        _module(
            table,
            f"text_model.encoder.layers.{index}",
            f"transformer.resblocks.{index}",
            _OPEN_CLIP_LAYER,
        )
    return ldm | _renamed(state, table)
