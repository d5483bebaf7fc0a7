"""A model's facts, read from its config files or its checkpoint's header, without loading weights.

``Engine.prepare`` runs beside the GPU worker and decides on these facts (inpainting or not, SD or
SDXL, the size it was trained at, the width a ControlNet must share): loading weights there would
compete with the running job for GPU memory and CPU threads. A diffusers folder or Hub repository is
read from its UNet's and VAE's ``config.json`` (a few hundred bytes), a single ``.safetensors`` file
from its header's tensor names and shapes.

What is read here must predict what ``engine.loading`` loads for the same name: a loaded pipeline's
facts come from ``facts_from_configs`` too (``ModelManager``), and the tests compare both ways.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import hf_hub_download
from safetensors import safe_open

from engine.errors import ModelLoadError
from engine.load_errors import first_line

# A key only SDXL single-file checkpoints have (the second, OpenCLIP bigG text encoder).
_SDXL_KEY_PREFIX = "conditioner.embedders.1."
# The UNet's first convolution in single-file checkpoints: its input channels are 9 for inpainting ones.
_CONV_IN_KEY = "model.diffusion_model.input_blocks.0.0.weight"
# Cross-attention key projections, in both layouts: their input width is the text embeddings' width.
_CROSS_ATTENTION_KEY_SUFFIX = "attn2.to_k.weight"
# Keys only ControlNets have: diffusers' layout, then the original one.
_CONTROLNET_KEY_PARTS = ("controlnet_cond_embedding.", "input_hint_block.")
_SD2_CROSS_ATTENTION_DIM = 1024
_INPAINTING_CHANNELS = 9  # latents, mask and masked-image latents


@dataclass(frozen=True)
class ModelFacts:
    """What the engine needs to know about a model, whether it is loaded or only described."""

    name: str
    sdxl: bool
    inpainting: bool  # 9-channel UNet
    native_size: int  # the long side the model was trained at (512, 768, 1024)
    cross_attention_dim: int  # the text embeddings' width, which a ControlNet must share

    @property
    def family(self) -> str:
        """A ControlNet works with the family it was trained for; SD 2.x is told by its wider text."""
        if self.sdxl:
            return "SDXL"
        return "SD 2.x" if self.cross_attention_dim == _SD2_CROSS_ATTENTION_DIM else "SD 1.x"


def facts_from_configs(
    name: str, unet: Mapping[str, Any], vae: Mapping[str, Any], *, sdxl: bool
) -> ModelFacts:
    """The facts a UNet's and a VAE's configs tell, read from files or from a loaded pipeline."""
    return ModelFacts(
        name=name,
        sdxl=sdxl,
        inpainting=unet["in_channels"] == _INPAINTING_CHANNELS,
        native_size=_size_from_configs(unet, vae),
        cross_attention_dim=_width(unet["cross_attention_dim"]),
    )


def config_facts(name: str, revision: str | None = None) -> ModelFacts:
    """Facts from a diffusers folder's or Hub repo's UNet and VAE configs (a few hundred bytes)."""
    unet, vae = (
        _read_config(name, f"{component}/config.json", revision=revision)
        for component in ("unet", "vae")
    )
    # SDXL's UNet takes the picture's size and crop as extra conditioning.
    return facts_from_configs(name, unet, vae, sdxl=unet.get("addition_embed_type") == "text_time")


def checkpoint_facts(name: str, path: Path, single_file_config: str | None) -> ModelFacts:
    """Facts from a single file's header; its size from the configs it loads with, if named."""
    header = _read_header(path)
    conv_in = header.get(_CONV_IN_KEY)
    cross_attention = _cross_attention_dim(header)
    if conv_in is None or cross_attention is None:
        raise ModelLoadError(f"{path.name} is not a Stable Diffusion checkpoint (it has no UNet).")
    sdxl = _has_sdxl_keys(header)
    if single_file_config is not None:
        native_size = config_facts(single_file_config).native_size
    else:  # diffusers picks the configs by family: SDXL 1024 px, SD 2.x 768 (but 512 to inpaint)
        sd2 = cross_attention == _SD2_CROSS_ATTENTION_DIM and not sdxl
        native_size = 1024 if sdxl else 768 if sd2 and conv_in[1] != _INPAINTING_CHANNELS else 512
    return ModelFacts(
        name=name,
        sdxl=sdxl,
        inpainting=conv_in[1] == _INPAINTING_CHANNELS,
        native_size=native_size,
        cross_attention_dim=cross_attention,
    )


def is_sdxl_checkpoint(path: Path) -> bool:
    """Reads only the .safetensors header: SDXL checkpoints have a second text encoder."""
    return _has_sdxl_keys(_read_header(path))


def controlnet_checkpoint_width(path: Path) -> int | None:
    """A lone ControlNet file's width; diffusers fetches its config only when it is loaded."""
    header = _read_header(path)
    if not any(part in key for key in header for part in _CONTROLNET_KEY_PARTS):
        raise ModelLoadError(f"{path.name} is not a ControlNet checkpoint.")
    return _cross_attention_dim(header)


def controlnet_config_width(name: str, path: Path) -> int:
    """A diffusers ControlNet's width, from its folder's or Hub repo's config.json."""
    if path.is_dir() and not (path / "config.json").is_file():
        raise ModelLoadError(
            f"The ControlNet folder {name!r} has no config.json: it is not a diffusers ControlNet."
        )
    config = _read_config(name, "config.json", "ControlNet")
    if config.get("_class_name") != "ControlNetModel":
        raise ModelLoadError(
            f"{name!r} is not a ControlNet: its config.json describes a {config.get('_class_name')}."
        )
    return _width(config["cross_attention_dim"])


def misfit(name: str, model: ModelFacts) -> str:
    """The message for a ControlNet whose width is not ``model``'s."""
    return (
        f"The ControlNet {name!r} does not fit the model {model.name!r} ({model.family}): a ControlNet "
        "only works with the family it was trained for (SD 1.x, SD 2.x or SDXL)."
    )


def require_safetensors(path: Path) -> None:
    """A pickled checkpoint can run code when it is loaded: only .safetensors files are read."""
    if path.suffix != ".safetensors":
        raise ModelLoadError(
            f"{path.name}: only .safetensors checkpoints are accepted (.ckpt pickle files can run code)."
        )


def _read_config(
    name: str, filename: str, what: str = "model", revision: str | None = None
) -> dict[str, Any]:
    path = Path(name).expanduser()
    if path.is_dir():
        config_file = path / filename
    elif name.startswith((".", "/", "~")) or name.endswith((".safetensors", ".ckpt")):
        raise ModelLoadError(f"The {what} file or folder {name!r} does not exist.")
    else:
        config_file = Path(hf_hub_download(name, filename, revision=revision))
    config: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
    return config


def _width(cross_attention_dim: int | list[int]) -> int:
    """Some configs give the width per block; it is the same for all of them in SD models."""
    return cross_attention_dim[0] if isinstance(cross_attention_dim, list) else cross_attention_dim


def _size_from_configs(unet: Mapping[str, Any], vae: Mapping[str, Any]) -> int:
    sample_size = unet["sample_size"]
    if isinstance(sample_size, (list, tuple)):
        sample_size = max(sample_size)
    return int(sample_size) * 2 ** (len(vae["block_out_channels"]) - 1)


def _read_header(path: Path) -> dict[str, list[int]]:
    """Each tensor's shape, from the .safetensors header only."""
    require_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as checkpoint:
            return {key: checkpoint.get_slice(key).get_shape() for key in checkpoint.keys()}  # noqa: SIM118
    except Exception as exc:
        raise ModelLoadError(
            f"{path.name} is not a readable .safetensors file: {first_line(exc)}"
        ) from None


def _has_sdxl_keys(header: Mapping[str, list[int]]) -> bool:
    return any(key.startswith(_SDXL_KEY_PREFIX) for key in header)


def _cross_attention_dim(header: Mapping[str, list[int]]) -> int | None:
    key = next((key for key in header if key.endswith(_CROSS_ATTENTION_KEY_SUFFIX)), None)
    return header[key][-1] if key is not None else None
