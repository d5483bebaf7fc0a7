"""Loading inpainting pipelines and keeping them resident.

A model is named the way users know it: a Hub id (``stable-diffusion-v1-5/stable-diffusion-inpainting``),
a local diffusers folder, or a single ``.safetensors`` checkpoint. Inpainting checkpoints (9-channel
UNet) and regular ones (4-channel, diffusers blends the original back outside the mask each step) both
load into the matching diffusers inpainting pipeline, SD1.x/2.x and SDXL alike.

ControlNets are named the same ways. Each one is loaded when a job first asks for it and kept with the
base model it runs on, in a pipeline that shares that model's components, so it goes when the base does.

Weights are loaded only by the GPU worker thread (``get``, ``controlnet_pipe``). ``Engine.prepare`` runs
beside it and learns what it needs from config files and checkpoint headers (``describe``,
``check_controlnet``): loading there would compete with the running job for GPU memory and CPU threads.

One module on purpose, though over 400 lines: what ``describe`` reads must predict what ``get`` loads
for the same name (Hub id, folder or single file; SD or SDXL; inpainting or not), so the readers and the
loaders stay side by side and change together.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from diffusers.utils import logging as diffusers_logging
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)
from safetensors import safe_open
from transformers import CLIPTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from engine import compiled
from engine.controlnet import ControlNetInpaintPipeline, ControlNetInpaintXLPipeline
from engine.errors import ModelLoadError
from engine.gpu_memory import release_memory

log = logging.getLogger(__name__)

# A key only SDXL single-file checkpoints have (the second, OpenCLIP bigG text encoder).
_SDXL_KEY_PREFIX = "conditioner.embedders.1."
# The UNet's first convolution in single-file checkpoints: its input channels are 9 for inpainting ones.
_CONV_IN_KEY = "model.diffusion_model.input_blocks.0.0.weight"
# Cross-attention key projections, in both layouts: their input width is the text embeddings' width.
_CROSS_ATTENTION_KEY_SUFFIX = "attn2.to_k.weight"
# Keys only ControlNets have: diffusers' layout, then the original one.
_CONTROLNET_KEY_PARTS = ("controlnet_cond_embedding.", "input_hint_block.")
_SD2_CROSS_ATTENTION_DIM = 1024
# The tokenizer single-file checkpoints are used with when no configs are named (diffusers' own choice).
_CLIP_TOKENIZER = "openai/clip-vit-large-patch14"
_INPAINTING_CHANNELS = 9  # latents, mask and masked-image latents
# The weights variant the Hub repos of SD models publish for float16 (``*.fp16.safetensors``).
_FP16 = "fp16"


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
                facts = self._checkpoint_facts(name, path)
            else:
                facts = _config_facts(name, self.revisions.get(name))
        except ModelLoadError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(_describe_load_failure(name, exc)) from None
        with self._lock:
            self._described[name] = facts
        return facts

    def tokenizer(self, name: str) -> PreTrainedTokenizerBase:
        """The tokenizer that splits the model's prompts into chunks, without loading weights: the
        resident pipeline's, or else read from the model's folder or Hub repo (a few hundred kB). A
        single file has none of its own: its configs' (``INPAINTBOT_SINGLE_FILE_CONFIG``), or CLIP
        ViT-L's, whose vocabulary every Stable Diffusion family shares."""
        with self._lock:
            loaded = self._loaded.get(name)
            known = self._tokenizers.get(name)
        if loaded is not None:
            return loaded.pipe.tokenizer or loaded.pipe.tokenizer_2  # SDXL refiners: the second only
        if known is not None:
            return known
        path = Path(name).expanduser()
        source = name
        if path.is_file():
            source = self.single_file_config or _CLIP_TOKENIZER
        revision = self.revisions.get(name) if source == name else None
        try:
            tokenizer = _load_tokenizer(source, revision)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(_describe_load_failure(name, exc)) from None
        with self._lock:
            self._tokenizers[name] = tokenizer
        return tokenizer

    def native_size(self, name: str) -> int:
        """The long side the model was trained at, without loading it (see ``describe``)."""
        return self.describe(name).native_size

    def _checkpoint_facts(self, name: str, path: Path) -> ModelFacts:
        header = _read_header(path)
        conv_in = header.get(_CONV_IN_KEY)
        cross_attention = _cross_attention_dim(header)
        if conv_in is None or cross_attention is None:
            raise ModelLoadError(f"{path.name} is not a Stable Diffusion checkpoint (it has no UNet).")
        sdxl = any(key.startswith(_SDXL_KEY_PREFIX) for key in header)
        if self.single_file_config is not None:
            native_size = _config_facts(self.single_file_config).native_size
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

    def check_controlnet(self, name: str, model: ModelFacts) -> None:
        """Find the ControlNet and check it fits ``model``'s family, reading only its config file (or
        a single file's header); its weights are loaded by ``controlnet_pipe``, in the GPU thread."""
        width = self.controlnet_width(name)
        if width is not None and width != model.cross_attention_dim:
            raise ModelLoadError(_misfit(name, model))

    def controlnet_width(self, name: str) -> int | None:
        """The cross-attention width of a ControlNet, which must be its model's; None when a single
        file does not show it. Finds missing files and things that are not ControlNets."""
        path = Path(name).expanduser()
        try:
            if path.is_file():
                return _controlnet_checkpoint_width(path)
            return _controlnet_config_width(name, path)
        except ModelLoadError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(
                _describe_load_failure(name, exc, "a ControlNet", "ControlNet")
            ) from None

    def controlnet_pipe(self, model: LoadedModel, name: str) -> Any:
        """The ControlNet inpainting pipeline on ``model``'s components, loading the ControlNet once.
        Only the GPU worker thread calls this: ``from_pipe`` casts the shared components."""
        if name not in model.controlnet_pipes:
            model.controlnet_pipes[name] = self._controlnet_pipe(model, name)
        return model.controlnet_pipes[name]

    def _controlnet_pipe(self, model: LoadedModel, name: str) -> Any:
        log.info("loading ControlNet %s for %s", name, model.name)
        controlnet = _load_controlnet(name, self.dtype)
        # The ControlNet's residuals enter the UNet's blocks: the widths of both must match.
        if controlnet.config.cross_attention_dim != model.cross_attention_dim:
            raise ModelLoadError(_misfit(name, model))
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
            components["vae"] = _load_vae(self.sdxl_vae, self.dtype)
        pipe = _load_pipeline(
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
        return LoadedModel(
            name=name,
            pipe=pipe,
            sdxl=isinstance(pipe, StableDiffusionXLInpaintPipeline),
            inpainting=pipe.unet.config.in_channels == _INPAINTING_CHANNELS,
            native_size=_size_from_configs(pipe.unet.config, pipe.vae.config),
            cross_attention_dim=_width(pipe.unet.config.cross_attention_dim),
            base_scheduler_config=pipe.scheduler.config,
        )


def _load_tokenizer(source: str, revision: str | None) -> PreTrainedTokenizerBase:
    """A diffusers folder's or repo's first tokenizer (an SDXL refiner has only the second); a plain
    tokenizer repo (CLIP ViT-L) has it at its root."""
    if source == _CLIP_TOKENIZER:
        return CLIPTokenizer.from_pretrained(source)
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


def _config_facts(name: str, revision: str | None = None) -> ModelFacts:
    """Facts from a diffusers folder's or Hub repo's UNet and VAE configs (a few hundred bytes)."""
    unet, vae = (
        _read_config(name, f"{component}/config.json", revision=revision)
        for component in ("unet", "vae")
    )
    return ModelFacts(
        name=name,
        sdxl=unet.get("addition_embed_type") == "text_time",  # SDXL's size and crop conditioning
        inpainting=unet["in_channels"] == _INPAINTING_CHANNELS,
        native_size=_size_from_configs(unet, vae),
        cross_attention_dim=_width(unet["cross_attention_dim"]),
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


def _read_header(path: Path) -> dict[str, list[int]]:
    """Each tensor's shape, from the .safetensors header only."""
    _require_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as checkpoint:
            return {key: checkpoint.get_slice(key).get_shape() for key in checkpoint.keys()}  # noqa: SIM118
    except Exception as exc:
        raise ModelLoadError(
            f"{path.name} is not a readable .safetensors file: {_first_line(exc)}"
        ) from None


def _cross_attention_dim(header: Mapping[str, list[int]]) -> int | None:
    key = next((key for key in header if key.endswith(_CROSS_ATTENTION_KEY_SUFFIX)), None)
    return header[key][-1] if key is not None else None


def _controlnet_checkpoint_width(path: Path) -> int | None:
    """A lone ControlNet file's width; diffusers fetches its config only when it is loaded."""
    header = _read_header(path)
    if not any(part in key for key in header for part in _CONTROLNET_KEY_PARTS):
        raise ModelLoadError(f"{path.name} is not a ControlNet checkpoint.")
    return _cross_attention_dim(header)


def _controlnet_config_width(name: str, path: Path) -> int:
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


def _misfit(name: str, model: ModelFacts) -> str:
    return (
        f"The ControlNet {name!r} does not fit the model {model.name!r} ({model.family}): a ControlNet "
        "only works with the family it was trained for (SD 1.x, SD 2.x or SDXL)."
    )


def _size_from_configs(unet: Mapping[str, Any], vae: Mapping[str, Any]) -> int:
    sample_size = unet["sample_size"]
    if isinstance(sample_size, (list, tuple)):
        sample_size = max(sample_size)
    return int(sample_size) * 2 ** (len(vae["block_out_channels"]) - 1)


def _load_pipeline(
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
        if path.is_dir():
            return ControlNetModel.from_pretrained(name, dtype=dtype)
        return _from_hub(ControlNetModel.from_pretrained, name, dtype, {"dtype": dtype} | hub_kwargs())
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("ControlNet %s failed to load", name, exc_info=True)
        raise ModelLoadError(_describe_load_failure(name, exc, "a ControlNet", "ControlNet")) from None


def _load_vae(name: str, dtype: torch.dtype) -> Any:
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
            "INPAINTBOT_SDXL_VAE: " + _describe_load_failure(name, exc, "a VAE (AutoencoderKL)", "VAE")
        ) from None


def _describe_load_failure(
    name: str,
    exc: BaseException,
    expected: str = "a Stable Diffusion (1.x, 2.x or XL) inpainting model",
    what: str = "model",
) -> str:
    """diffusers wraps Hub errors in generic ones; the original cause says what the user must fix."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, RepositoryNotFoundError):
            return f"The {what} {name!r} was not found on the Hugging Face Hub (or it is private)."
        if isinstance(cause, LocalEntryNotFoundError):
            return (
                f"The {what} {name!r} is not in the local Hugging Face cache and the Hub cannot be "
                "reached (offline?). Download it once with network access, or use a local folder."
            )
        if isinstance(cause, HfHubHTTPError):
            return f"The {what} {name!r} could not be downloaded: {_first_line(cause)}"
        cause = cause.__cause__ or cause.__context__
    return f"The {what} {name!r} could not be loaded as {expected}: {_first_line(exc)}"


def hub_kwargs(revision: str | None = None) -> dict[str, Any]:
    """What every download from the Hub is loaded with: safetensors only (a pickled ``.bin`` can run
    code when it is loaded), at the revision the operator pinned, if any. Local folders are the
    operator's own files and load as they are."""
    return {"use_safetensors": True} | ({"revision": revision} if revision else {})


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
    sdxl = _is_sdxl_checkpoint(path)
    pipeline_class = StableDiffusionXLInpaintPipeline if sdxl else StableDiffusionInpaintPipeline
    kwargs: dict[str, Any] = {"torch_dtype": dtype, **components}
    if config is not None:
        kwargs |= {"config": config, "local_files_only": Path(config).is_dir()}
    if not sdxl:
        kwargs |= {"safety_checker": None, "requires_safety_checker": False}
    return _checked(pipeline_class.from_single_file(str(path), **kwargs), str(path))


def _is_sdxl_checkpoint(path: Path) -> bool:
    """Reads only the .safetensors header: SDXL checkpoints have a second text encoder."""
    return any(key.startswith(_SDXL_KEY_PREFIX) for key in _read_header(path))


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
