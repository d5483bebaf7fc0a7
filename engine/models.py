"""Loading inpainting pipelines and keeping them resident.

A model is named the way users know it: a Hub id (``stable-diffusion-v1-5/stable-diffusion-inpainting``),
a local diffusers folder, or a single ``.safetensors`` checkpoint. Inpainting checkpoints (9-channel
UNet) and regular ones (4-channel, diffusers blends the original back outside the mask each step) both
load into the matching diffusers inpainting pipeline, SD1.x/2.x and SDXL alike.

ControlNets are named the same ways. Each one is loaded when a job first asks for it and kept with the
base model it runs on, in a pipeline that shares that model's components, so it goes when the base does.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoPipelineForInpainting,
    ControlNetModel,
    StableDiffusionInpaintPipeline,
    StableDiffusionXLInpaintPipeline,
)
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
from safetensors import safe_open
from transformers.utils import logging as transformers_logging

from engine.controlnet import ControlNetInpaintPipeline, ControlNetInpaintXLPipeline
from engine.errors import ModelLoadError

log = logging.getLogger(__name__)

# A key only SDXL single-file checkpoints have (the second, OpenCLIP bigG text encoder).
_SDXL_KEY_PREFIX = "conditioner.embedders.1."


@dataclass(frozen=True)
class LoadedModel:
    """A resident pipeline and the facts the engine needs about it."""

    name: str
    # A StableDiffusion(XL)InpaintPipeline. Typed Any: diffusers registers its components at run time,
    # so static checkers cannot see ``vae``, ``unet`` or ``__call__`` on it.
    pipe: Any
    sdxl: bool
    inpainting: bool  # 9-channel UNet
    native_size: int  # the long side the model was trained at (512, 768, 1024)
    base_scheduler_config: Any
    # ControlNet pipelines built on ``pipe``, by ControlNet name (see ModelManager.controlnet_pipe).
    controlnet_pipes: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def device(self) -> torch.device:
        return self.pipe.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pipe.unet.dtype


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA on a machine without it is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("INPAINTBOT_DEVICE is 'cuda' but no CUDA GPU is available to PyTorch.")
    return torch.device(device)


class ModelManager:
    """Loads pipelines on first use and keeps the most recently used ones in memory."""

    def __init__(
        self, device: torch.device, *, max_loaded: int = 2, single_file_config: str | None = None
    ) -> None:
        self.device = device
        self.single_file_config = single_file_config
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> LoadedModel:
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            while len(self._loaded) >= self.max_loaded:
                evicted, _ = self._loaded.popitem(last=False)
                log.info("unloading model %s", evicted)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
            model = self._load(name)
            self._loaded[name] = model
            return model

    def controlnet_pipe(self, model: LoadedModel, name: str) -> Any:
        """The ControlNet inpainting pipeline on ``model``'s components, loading the ControlNet once."""
        with self._lock:
            if name not in model.controlnet_pipes:
                model.controlnet_pipes[name] = self._controlnet_pipe(model, name)
            return model.controlnet_pipes[name]

    def _controlnet_pipe(self, model: LoadedModel, name: str) -> Any:
        log.info("loading ControlNet %s for %s", name, model.name)
        controlnet = _load_controlnet(name, self.dtype)
        # The ControlNet's residuals enter the UNet's blocks: the widths of both must match.
        if controlnet.config.cross_attention_dim != model.pipe.unet.config.cross_attention_dim:
            raise ModelLoadError(
                f"The ControlNet {name!r} does not fit the model {model.name!r}: a ControlNet only "
                "works with the family it was trained for (SD 1.x, SD 2.x or SDXL)."
            )
        controlnet.to(self.device)
        pipeline_class = ControlNetInpaintXLPipeline if model.sdxl else ControlNetInpaintPipeline
        # from_pipe casts every component to its dtype (float32 unless told): the shared ones too.
        pipe = pipeline_class.from_pipe(model.pipe, controlnet=controlnet, dtype=self.dtype)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def native_size(self, name: str) -> int:
        """The long side the model was trained at, from its config files when it is not loaded yet.

        ``Engine.prepare`` runs beside the GPU worker: loading weights there would compete with the
        running job for GPU memory and CPU threads, so only small config files are read.
        """
        with self._lock:
            if name in self._loaded:
                return self._loaded[name].native_size
        path = Path(name).expanduser()
        try:
            if path.is_file():
                if self.single_file_config is not None:
                    return _native_size(self.single_file_config)
                # Without configs, the checkpoint's keys tell SDXL (1024 px) from SD1.x/2.x (512 px).
                return 1024 if _is_sdxl_checkpoint(path) else 512
            return _native_size(name)
        except ModelLoadError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(_describe_load_failure(name, exc)) from None

    def _load(self, name: str) -> LoadedModel:
        log.info("loading model %s on %s (%s)", name, self.device, self.dtype)
        # Loading bars would interleave with the CLI's own progress bar and the bot's log lines.
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        pipe = _load_pipeline(name, self.dtype, self.single_file_config)
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        return LoadedModel(
            name=name,
            pipe=pipe,
            sdxl=isinstance(pipe, StableDiffusionXLInpaintPipeline),
            inpainting=pipe.unet.config.in_channels == 9,
            native_size=_size_from_configs(pipe.unet.config, pipe.vae.config),
            base_scheduler_config=pipe.scheduler.config,
        )


def _native_size(name: str) -> int:
    """Native size from a diffusers folder's or Hub repo's UNet and VAE configs (a few hundred bytes)."""
    path = Path(name).expanduser()
    configs = []
    for component in ("unet", "vae"):
        if path.is_dir():
            config_file = path / component / "config.json"
        elif name.startswith((".", "/", "~")):
            raise ModelLoadError(f"The model file or folder {name!r} does not exist.")
        else:
            config_file = Path(hf_hub_download(name, f"{component}/config.json"))
        configs.append(json.loads(config_file.read_text(encoding="utf-8")))
    return _size_from_configs(*configs)


def _size_from_configs(unet: Mapping[str, Any], vae: Mapping[str, Any]) -> int:
    sample_size = unet["sample_size"]
    if isinstance(sample_size, (list, tuple)):
        sample_size = max(sample_size)
    return int(sample_size) * 2 ** (len(vae["block_out_channels"]) - 1)


def _load_pipeline(name: str, dtype: torch.dtype, single_file_config: str | None) -> DiffusionPipeline:
    path = Path(name).expanduser()
    try:
        if path.is_file():
            return _load_single_file(path, dtype, single_file_config)
        if path.is_dir():
            return _checked(
                AutoPipelineForInpainting.from_pretrained(path, **_pretrained_kwargs(dtype)), name
            )
        if name.startswith((".", "/", "~")) or name.endswith((".safetensors", ".ckpt")):
            raise ModelLoadError(f"The model file or folder {name!r} does not exist.")
        return _checked(
            AutoPipelineForInpainting.from_pretrained(name, **_pretrained_kwargs(dtype)), name
        )
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("model %s failed to load", name, exc_info=True)
        raise ModelLoadError(_describe_load_failure(name, exc)) from None


def _load_controlnet(name: str, dtype: torch.dtype) -> Any:
    """A ``ControlNetModel``; typed Any as pipelines are (its ``config`` and ``to`` come at run time)."""
    path = Path(name).expanduser()
    try:
        if path.is_file():
            _require_safetensors(path)
            return ControlNetModel.from_single_file(str(path), dtype=dtype)
        if not path.is_dir() and (
            name.startswith((".", "/", "~")) or name.endswith((".safetensors", ".ckpt"))
        ):
            raise ModelLoadError(f"The ControlNet file or folder {name!r} does not exist.")
        return ControlNetModel.from_pretrained(name, dtype=dtype)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("ControlNet %s failed to load", name, exc_info=True)
        raise ModelLoadError(_describe_load_failure(name, exc, "a ControlNet")) from None


def _describe_load_failure(
    name: str,
    exc: BaseException,
    expected: str = "a Stable Diffusion (1.x, 2.x or XL) inpainting model",
) -> str:
    """diffusers wraps Hub errors in generic ones; the original cause says what the user must fix."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, RepositoryNotFoundError):
            return f"The model {name!r} was not found on the Hugging Face Hub (or it is private)."
        if isinstance(cause, LocalEntryNotFoundError):
            return (
                f"The model {name!r} is not in the local Hugging Face cache and the Hub cannot be "
                "reached (offline?). Download it once with network access, or use a local folder."
            )
        if isinstance(cause, HfHubHTTPError):
            return f"The model {name!r} could not be downloaded: {_first_line(cause)}"
        cause = cause.__cause__ or cause.__context__
    return f"The model {name!r} could not be loaded as {expected}: {_first_line(exc)}"


def _pretrained_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    # The NSFW decision belongs to the server's policy, not to a checker that blacks out images.
    return {"torch_dtype": dtype, "safety_checker": None, "requires_safety_checker": False}


def _load_single_file(path: Path, dtype: torch.dtype, config: str | None) -> DiffusionPipeline:
    sdxl = _is_sdxl_checkpoint(path)
    pipeline_class = StableDiffusionXLInpaintPipeline if sdxl else StableDiffusionInpaintPipeline
    kwargs: dict[str, Any] = {"torch_dtype": dtype}
    if config is not None:
        kwargs |= {"config": config, "local_files_only": Path(config).is_dir()}
    if not sdxl:
        kwargs |= {"safety_checker": None, "requires_safety_checker": False}
    return _checked(pipeline_class.from_single_file(str(path), **kwargs), str(path))


def _is_sdxl_checkpoint(path: Path) -> bool:
    """Reads only the .safetensors header: SDXL checkpoints have a second text encoder."""
    _require_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as checkpoint:
            return any(key.startswith(_SDXL_KEY_PREFIX) for key in checkpoint.keys())  # noqa: SIM118
    except Exception as exc:
        raise ModelLoadError(
            f"{path.name} is not a readable .safetensors file: {_first_line(exc)}"
        ) from None


def _require_safetensors(path: Path) -> None:
    if path.suffix != ".safetensors":
        raise ModelLoadError(
            f"{path.name}: only .safetensors checkpoints are accepted (.ckpt pickle files can run code)."
        )


def _checked(pipe: DiffusionPipeline, name: str) -> DiffusionPipeline:
    if not isinstance(pipe, (StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline)):
        raise ModelLoadError(
            f"The model {name!r} loads as {type(pipe).__name__}; only Stable Diffusion 1.x, 2.x and XL "
            "models are supported."
        )
    return pipe


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
