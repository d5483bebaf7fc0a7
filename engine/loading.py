"""Loading a model's parts the three ways users name a model: a Hub id, a local diffusers folder, or a
single ``.safetensors`` checkpoint.

Inpainting checkpoints (9-channel UNet) and regular ones (4-channel, diffusers blends the original back
outside the mask each step) both load into the matching diffusers inpainting pipeline, SD1.x/2.x and
SDXL alike; ControlNets and the SDXL VAE (``INPAINTBOT_SDXL_VAE``) are named the same ways. What comes
from the Hub is safetensors only, at the revision the operator pinned, in float16 where the repo has it.

These load weights: only the GPU worker thread calls them, through ``ModelManager``. The tokenizer is
the exception: a few hundred kB of vocabulary that ``prepare`` reads to count a prompt's chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    AutoPipelineForInpainting,
    ControlNetModel,
    StableDiffusionInpaintPipeline,
    StableDiffusionXLInpaintPipeline,
)
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from transformers import CLIPTokenizer, PreTrainedTokenizerBase

from engine.errors import ModelLoadError
from engine.load_errors import describe_load_failure
from engine.model_facts import is_sdxl_checkpoint, require_safetensors

log = logging.getLogger(__name__)

# The tokenizer single-file checkpoints are used with when no configs are named (diffusers' own choice).
_CLIP_TOKENIZER = "openai/clip-vit-large-patch14"
# The weights variant the Hub repos of SD models publish for float16 (``*.fp16.safetensors``).
_FP16 = "fp16"


def hub_kwargs(revision: str | None = None) -> dict[str, Any]:
    """What every download from the Hub is loaded with: safetensors only (a pickled ``.bin`` can run
    code when it is loaded), at the revision the operator pinned, if any. Local folders are the
    operator's own files and load as they are."""
    return {"use_safetensors": True} | ({"revision": revision} if revision else {})


def load_pipeline(
    name: str,
    dtype: torch.dtype,
    single_file_config: str | None,
    revision: str | None = None,
    components: Mapping[str, Any] | None = None,
) -> DiffusionPipeline:
    """``components``: models loaded already that replace the pipeline's own (the SDXL VAE)."""
    path = Path(name).expanduser()
    given = dict(components or {})
    try:
        if path.is_file():
            return _load_single_file(path, dtype, single_file_config, given)
        if path.is_dir():
            return _checked(
                AutoPipelineForInpainting.from_pretrained(path, **_pretrained_kwargs(dtype), **given),
                name,
            )
        if name.startswith((".", "/", "~")) or name.endswith((".safetensors", ".ckpt")):
            raise ModelLoadError(f"The model file or folder {name!r} does not exist.")
        hub = _pretrained_kwargs(dtype) | hub_kwargs(revision) | given
        return _checked(_from_hub(AutoPipelineForInpainting.from_pretrained, name, dtype, hub), name)
    except (ModelLoadError, torch.cuda.OutOfMemoryError):  # the caller frees memory and tries again
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("model %s failed to load", name, exc_info=True)
        raise ModelLoadError(describe_load_failure(name, exc)) from None


def load_controlnet(name: str, dtype: torch.dtype) -> Any:
    """A ``ControlNetModel``; typed Any as pipelines are (its ``config`` and ``to`` come at run time)."""
    path = Path(name).expanduser()
    try:
        if path.is_file():
            require_safetensors(path)
            return ControlNetModel.from_single_file(str(path), dtype=dtype)
        if not path.is_dir() and (
            name.startswith((".", "/", "~")) or name.endswith((".safetensors", ".ckpt"))
        ):
            raise ModelLoadError(f"The ControlNet file or folder {name!r} does not exist.")
        if path.is_dir():
            return ControlNetModel.from_pretrained(name, dtype=dtype)
        return _from_hub(ControlNetModel.from_pretrained, name, dtype, {"dtype": dtype} | hub_kwargs())
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("ControlNet %s failed to load", name, exc_info=True)
        raise ModelLoadError(describe_load_failure(name, exc, "a ControlNet", "ControlNet")) from None


def load_vae(name: str, dtype: torch.dtype) -> Any:
    """The VAE ``INPAINTBOT_SDXL_VAE`` names: a Hub id (a repo of the VAE alone, like
    madebyollin/sdxl-vae-fp16-fix) or a local diffusers folder of one."""
    path = Path(name).expanduser()
    try:
        if path.is_dir():
            return AutoencoderKL.from_pretrained(path, torch_dtype=dtype)
        if name.startswith((".", "/", "~")):
            raise ModelLoadError(f"INPAINTBOT_SDXL_VAE: the folder {name!r} does not exist.")
        kwargs = {"torch_dtype": dtype} | hub_kwargs()
        return _from_hub(AutoencoderKL.from_pretrained, name, dtype, kwargs)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("VAE %s failed to load", name, exc_info=True)
        raise ModelLoadError(
            "INPAINTBOT_SDXL_VAE: " + describe_load_failure(name, exc, "a VAE (AutoencoderKL)", "VAE")
        ) from None


def load_tokenizer(
    name: str, single_file_config: str | None, revision: str | None
) -> PreTrainedTokenizerBase:
    """The tokenizer of the model ``name`` (``revision``: the one pinned for it). A single file has
    none of its own: its configs' (``INPAINTBOT_SINGLE_FILE_CONFIG``), or CLIP ViT-L's, whose
    vocabulary every Stable Diffusion family shares."""
    source = name
    if Path(name).expanduser().is_file():
        source = single_file_config or _CLIP_TOKENIZER
    if source == _CLIP_TOKENIZER:
        return CLIPTokenizer.from_pretrained(source)
    if source != name:
        revision = None  # the pin is the model's, not its configs'
    # A diffusers folder's or repo's first tokenizer (an SDXL refiner has only the second).
    path = Path(source).expanduser()
    if path.is_dir():
        has_first = (path / "tokenizer").is_dir()
    else:
        has_first = _in_repo(source, "tokenizer/tokenizer_config.json", revision)
    pinned: dict[str, Any] = {"revision": revision} if revision else {}
    folder = "tokenizer" if has_first else "tokenizer_2"
    return CLIPTokenizer.from_pretrained(source, subfolder=folder, **pinned)


def _in_repo(name: str, filename: str, revision: str | None) -> bool:
    try:
        hf_hub_download(name, filename, revision=revision)
    except EntryNotFoundError:
        return False
    return True


def _from_hub(load: Callable[..., Any], name: str, dtype: torch.dtype, kwargs: dict[str, Any]) -> Any:
    """Load from the Hub, taking a repo's float16 weights when the engine runs in float16 (half the
    download and no cast); a repo without them loads its default weights, which are cast."""
    if dtype != torch.float16:
        return load(name, **kwargs)
    try:
        return load(name, variant=_FP16, **kwargs)
    except (ValueError, OSError) as exc:
        # diffusers names the variant when a repo lacks it: "variant=fp16" for a pipeline, the file
        # "diffusion_pytorch_model.fp16.safetensors" for a model. Other failures are not retried.
        if f"variant={_FP16}" not in str(exc) and f".{_FP16}." not in str(exc):
            raise
    log.info("%s has no %s weights: loading its default ones", name, _FP16)
    return load(name, **kwargs)


def _pretrained_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    # The NSFW decision belongs to the server's policy, not to a checker that blacks out images.
    return {"torch_dtype": dtype, "safety_checker": None, "requires_safety_checker": False}


def _load_single_file(
    path: Path, dtype: torch.dtype, config: str | None, components: dict[str, Any]
) -> DiffusionPipeline:
    sdxl = is_sdxl_checkpoint(path)
    pipeline_class = StableDiffusionXLInpaintPipeline if sdxl else StableDiffusionInpaintPipeline
    kwargs: dict[str, Any] = {"torch_dtype": dtype, **components}
    if config is not None:
        kwargs |= {"config": config, "local_files_only": Path(config).is_dir()}
    if not sdxl:
        kwargs |= {"safety_checker": None, "requires_safety_checker": False}
    return _checked(pipeline_class.from_single_file(str(path), **kwargs), str(path))


def _checked(pipe: DiffusionPipeline, name: str) -> DiffusionPipeline:
    if not isinstance(pipe, (StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline)):
        raise ModelLoadError(
            f"The model {name!r} loads as {type(pipe).__name__}; only Stable Diffusion 1.x, 2.x and XL "
            "models are supported."
        )
    return pipe
