"""Keeping inpainting pipelines resident: the ``ModelManager`` the engine asks for models.

Weights are loaded only by the GPU worker thread (``get``, ``controlnet_pipe``), through
``engine.loading``; the least recently used pipeline is unloaded, and its memory given back, before the
next one loads. ``Engine.prepare`` runs beside it and asks the same manager what it needs to know
(``describe``, ``check_controlnet``, ``tokenizer``), which ``engine.model_facts`` reads from config
files and checkpoint headers: loading there would compete with the running job for GPU memory and CPU
threads.

ControlNets are loaded when a job first asks for one and kept with the base model they run on, in a
pipeline that shares that model's components, so they go when the base does.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionXLInpaintPipeline
from diffusers.utils import logging as diffusers_logging
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from engine import compiled, model_facts
from engine.controlnet import ControlNetInpaintPipeline, ControlNetInpaintXLPipeline
from engine.errors import ModelLoadError
from engine.gpu_memory import release_memory
from engine.load_errors import describe_load_failure
from engine.loading import load_controlnet, load_pipeline, load_tokenizer, load_vae
from engine.model_facts import ModelFacts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel(ModelFacts):
    """A resident pipeline and the facts the engine needs about it."""

    # A StableDiffusion(XL)InpaintPipeline. Typed Any: diffusers registers its components at run time,
    # so static checkers cannot see ``vae``, ``unet`` or ``__call__`` on it.
    pipe: Any
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
        self,
        device: torch.device,
        *,
        max_loaded: int = 2,
        single_file_config: str | None = None,
        revisions: Mapping[str, str] | None = None,
        sdxl_vae: str | None = None,
        compile_unet: bool = False,
    ) -> None:
        self.device = device
        self.single_file_config = single_file_config
        # Hub revisions (commit, tag or branch) the operator pinned, by model name.
        self.revisions = dict(revisions or {})
        self.sdxl_vae = sdxl_vae  # the VAE SDXL models load with instead of their own (fp16-fix)
        self.compile_unet = compile_unet
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._described: dict[str, ModelFacts] = {}  # config reads of models not loaded (tiny)
        self._tokenizers: dict[str, PreTrainedTokenizerBase] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> LoadedModel:
        """The resident pipeline, loading it first if needed. Only the GPU worker thread calls this.

        The least recently used pipeline goes first, and its memory is given back before the new one
        loads, so the two never both hold the GPU. A load that runs out of memory is tried once more
        with no other model resident, then fails as a ``ModelLoadError``; the engine goes on."""
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            while len(self._loaded) >= self.max_loaded:
                log.info("unloading model %s", self._loaded.popitem(last=False)[0])
        release_memory()  # after the evicted pipeline's last reference went with popitem's pair
        model = self._load_fitting(name)
        with self._lock:
            self._loaded[name] = model
        return model

    def adopt(self, name: str, pipe: Any) -> LoadedModel:
        """Keep a pipeline built in code (``bench.gpu``'s full-size random-weight ones) as the resident
        model ``name``, set up as a loaded one is."""
        model = self._resident(name, pipe)
        with self._lock:
            self._loaded[name] = model
        return model

    def _load_fitting(self, name: str) -> LoadedModel:
        try:
            return self._load(name)
        except torch.cuda.OutOfMemoryError:
            log.warning("the GPU ran out of memory loading %s; unloading every model to try again", name)
        # Out of the except block: the failed load's frames (and its half-moved pipeline) are gone.
        with self._lock:
            self._loaded.clear()
        release_memory()
        try:
            return self._load(name)
        except torch.cuda.OutOfMemoryError:
            pass
        release_memory()
        raise ModelLoadError(
            f"The GPU ran out of memory loading the model {name!r}, even with no other model loaded. "
            "The operator can use a smaller model or a GPU with more memory."
        )

    def describe(self, name: str) -> ModelFacts:
        """The model's facts without loading it: from the resident pipeline, or else from its config
        files (a diffusers folder or Hub repository) or its checkpoint's header (a single file)."""
        with self._lock:
            known = self._loaded.get(name) or self._described.get(name)
        if known is not None:
            return known
        path = Path(name).expanduser()
        try:
            if path.is_file():
                facts = model_facts.checkpoint_facts(name, path, self.single_file_config)
            else:
                facts = model_facts.config_facts(name, self.revisions.get(name))
        except ModelLoadError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(describe_load_failure(name, exc)) from None
        with self._lock:
            self._described[name] = facts
        return facts

    def tokenizer(self, name: str) -> PreTrainedTokenizerBase:
        """The tokenizer that splits the model's prompts into chunks, without loading weights: the
        resident pipeline's, or else read from the model's folder or Hub repo (a few hundred kB; a
        single file's: see ``engine.loading.load_tokenizer``)."""
        with self._lock:
            loaded = self._loaded.get(name)
            known = self._tokenizers.get(name)
        if loaded is not None:
            return loaded.pipe.tokenizer or loaded.pipe.tokenizer_2  # SDXL refiners: the second only
        if known is not None:
            return known
        try:
            tokenizer = load_tokenizer(name, self.single_file_config, self.revisions.get(name))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(describe_load_failure(name, exc)) from None
        with self._lock:
            self._tokenizers[name] = tokenizer
        return tokenizer

    def native_size(self, name: str) -> int:
        """The long side the model was trained at, without loading it (see ``describe``)."""
        return self.describe(name).native_size

    def check_controlnet(self, name: str, model: ModelFacts) -> None:
        """Find the ControlNet and check it fits ``model``'s family, reading only its config file (or
        a single file's header); its weights are loaded by ``controlnet_pipe``, in the GPU thread."""
        width = self.controlnet_width(name)
        if width is not None and width != model.cross_attention_dim:
            raise ModelLoadError(model_facts.misfit(name, model))

    def controlnet_width(self, name: str) -> int | None:
        """The cross-attention width of a ControlNet, which must be its model's; None when a single
        file does not show it. Finds missing files and things that are not ControlNets."""
        path = Path(name).expanduser()
        try:
            if path.is_file():
                return model_facts.controlnet_checkpoint_width(path)
            return model_facts.controlnet_config_width(name, path)
        except ModelLoadError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(
                describe_load_failure(name, exc, "a ControlNet", "ControlNet")
            ) from None

    def controlnet_pipe(self, model: LoadedModel, name: str) -> Any:
        """The ControlNet inpainting pipeline on ``model``'s components, loading the ControlNet once.
        Only the GPU worker thread calls this: ``from_pipe`` casts the shared components."""
        if name not in model.controlnet_pipes:
            model.controlnet_pipes[name] = self._controlnet_pipe(model, name)
        return model.controlnet_pipes[name]

    def _controlnet_pipe(self, model: LoadedModel, name: str) -> Any:
        log.info("loading ControlNet %s for %s", name, model.name)
        controlnet = load_controlnet(name, self.dtype)
        # The ControlNet's residuals enter the UNet's blocks: the widths of both must match.
        if controlnet.config.cross_attention_dim != model.cross_attention_dim:
            raise ModelLoadError(model_facts.misfit(name, model))
        controlnet.to(self.device)
        pipeline_class = ControlNetInpaintXLPipeline if model.sdxl else ControlNetInpaintPipeline
        # from_pipe casts every component to its dtype (float32 unless told): the shared ones too.
        pipe = pipeline_class.from_pipe(model.pipe, controlnet=controlnet, dtype=self.dtype)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _load(self, name: str) -> LoadedModel:
        log.info("loading model %s on %s (%s)", name, self.device, self.dtype)
        # Loading bars would interleave with the CLI's own progress bar and the bot's log lines.
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        components = {}
        if self.sdxl_vae is not None and self.describe(name).sdxl:
            components["vae"] = load_vae(self.sdxl_vae, self.dtype)
        pipe = load_pipeline(
            name, self.dtype, self.single_file_config, self.revisions.get(name), components
        )
        return self._resident(name, pipe)

    def _resident(self, name: str, pipe: Any) -> LoadedModel:
        """Move a pipeline to the device and set it up for jobs: VAE slicing (a batch's pictures are
        encoded and decoded one by one, so the VAE's peak is one picture's whatever the batch) and,
        when the operator asks (``INPAINTBOT_COMPILE``), the UNet compiled."""
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        pipe.vae.enable_slicing()
        if self.compile_unet:
            compiled.compile_unet(pipe.unet)
        sdxl = isinstance(pipe, StableDiffusionXLInpaintPipeline)
        facts = model_facts.facts_from_configs(name, pipe.unet.config, pipe.vae.config, sdxl=sdxl)
        return LoadedModel(**vars(facts), pipe=pipe, base_scheduler_config=pipe.scheduler.config)
