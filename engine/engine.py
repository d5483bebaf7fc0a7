"""The inpainting engine: AUTOMATIC1111's inpainting semantics on diffusers pipelines.

This module keeps the flow of a job, so that it reads top to bottom, and the decisions that join the
parts (which model a job runs on, which area a pass repaints, what is batched together); the parts
live in the modules named below. A job goes through two stages:

1. ``prepare`` (CPU, cheap): decode the upload and find its masks (``engine.mask_finding``: uploaded,
   words, faces, or transparency), then each pass's mask, crop box and processing size
   (``engine.passes.mask_passes``: invert/grow/blur at full resolution, and only the part of the
   mask inside the box is kept).
   It runs in its own thread beside the GPU worker, so it loads no inpainting weights: what it needs
   to know about models and ControlNets comes from their config files (``ModelManager.describe``).
   Masks from words are the exception: their small models run here (see ``engine.masks.words``).
   The passes' crops are made here too where they can be (``engine.passes``): resized to the
   processing size, filled for ``fill``, with the ControlNet's control image.
2. ``run`` (GPU): for each pass, denoise with the pipeline. The outputs are pasted back over the
   full-resolution original through the blurred mask, so every pixel outside the mask is
   bit-identical to the input, when the result's picture is first read (``engine.passes.Composite``),
   so the queue does it off the GPU thread.

An outpainting is prepared the same way on a larger canvas (``engine.outpaint``): its passes are the
windows along the new border, which ``run`` paints one after another like a picture's faces.

Several prepared jobs with the same ``batch_key`` can run as one pipeline call, one generator per image.

A job with a ControlNet (Tile or Inpaint) runs on a regular checkpoint through diffusers' ControlNet
inpainting pipeline that shares the base model's weights (see ``engine.controlnet``); everything else,
crops, masks and the composite, is the same.

What a pass hands the pipeline is built in ``engine.pass_inputs``; steps, previews and cancelling are
counted by ``engine.progress``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from engine import controlnet, faces, images, latents, mask_preview, masking, outpaint, prompts
from engine.config import EngineConfig
from engine.errors import MaskError, OutOfMemoryError, SettingsError
from engine.gpu_memory import release_memory
from engine.job import (
    GeneratedImage,
    InpaintRequest,
    InpaintResult,
    MaskSource,
    ProgressCallback,
)
from engine.mask_finding import find_masks, kept_mask
from engine.mask_preview import MaskPreview
from engine.masks import points, words
from engine.metadata import a1111_parameters
from engine.model_facts import ModelFacts
from engine.models import LoadedModel, ModelManager, resolve_device
from engine.pass_inputs import control_inputs, denoising_steps, latent_inputs, scheduled_steps
from engine.passes import Composite, MaskPass, mask_passes, stage_ahead
from engine.progress import StepTracker
from engine.samplers import make_scheduler
from engine.settings import Area, ControlNet, InpaintSettings, MaskedContent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedJob:
    """A validated job, ready for the GPU."""

    settings: InpaintSettings
    model: str
    image: Image.Image
    mask_source: MaskSource
    passes: tuple[MaskPass, ...]
    prepare_seconds: float = 0.0
    controlnet: str | None = None  # the ControlNet model the job's settings asked for
    prompt_chunks: int = 1  # 75-token chunks of its conditioning (engine.prompts.chunk_count)
    found_mask: bytes | None = None  # PNG of the mask mask_prompt found, to store with the job

    @property
    def processing_size(self) -> tuple[int, int]:
        return self.passes[0].size

    @property
    def total_steps(self) -> int:
        return denoising_steps(self.settings) * len(self.passes)

    @property
    def batch_key(self) -> Hashable | None:
        """Jobs with equal keys can share one pipeline call; face jobs run pass by pass, alone."""
        if len(self.passes) != 1:
            return None
        s = self.settings
        key: tuple[Hashable, ...] = (
            self.model,
            self.processing_size,
            self.prompt_chunks,  # a batch pads every prompt to its longest: the picture would change
            s.steps,
            s.strength,
            s.guidance,
            s.sampler,
            s.masked_content,
        )
        if s.controlnet is ControlNet.NONE:
            return key
        # The rest applies to the whole call; each image's control image (its tile_downsample) is its own.
        return (*key, self.controlnet, s.controlnet, s.control_weight, s.control_start, s.control_end)


@dataclass
class _Row:
    """One output image of a batch: its job, seed and its passes' outputs, pasted into the picture by
    ``Composite`` after the GPU's work."""

    job: PreparedJob
    seed: int
    painted: list[masking.Patch] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class Engine:
    """Owns the resident pipelines and runs jobs. Not thread-safe: call from one worker thread."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.models = ModelManager(
            resolve_device(config.device),
            max_loaded=config.max_loaded_models,
            single_file_config=config.single_file_config,
            revisions={config.model: config.model_revision} if config.model_revision else None,
            sdxl_vae=config.sdxl_vae,
            compile_unet=config.compile,
        )
        self.face_detector = faces.FaceDetector(config.face_detector_model)
        self.word_finder: words.Finder | None = None  # None: the operator turned mask_prompt off
        if config.mask_detector is not None and config.mask_segmenter is not None:
            self.word_finder = words.WordModels(
                config.mask_detector, config.mask_segmenter, self.models.device
            )

    def load(self, model: str | None = None) -> LoadedModel:
        """Load (or fetch the resident) pipeline; the bot calls it at start-up to fail early."""
        self.face_detector.load()
        return self.models.get(model or self.config.model)

    def select_object(self, image: bytes, point: tuple[float, float]) -> bytes:
        """The painter's Select tool: the outline of the thing at ``point`` in the picture, as a
        mask PNG of the picture's size; SAM 2 of masks from words does it (off with them)."""
        if not isinstance(self.word_finder, points.PointSegmenter):
            raise MaskError(points.OFF_MESSAGE)
        picture = images.flatten(images.load_image(image, max_pixels=self.config.max_pixels))
        return words.mask_png(points.object_at(self.word_finder, picture, point))

    # -- stage 1 ------------------------------------------------------------------------------------

    def prepare(self, request: InpaintRequest) -> PreparedJob:
        started = time.perf_counter()
        settings = request.settings.with_seed()
        if settings.outpaints:
            return self._prepare_outpaint(request, settings, started)
        image, found, source, mask_pick = find_masks(
            request, settings, self.config, self.face_detector, self.word_finder
        )
        masks = mask_preview.picked(found, source, mask_pick)
        original = images.flatten(image)
        model, control, chunks = self._model_for(settings)
        long_side = settings.resolution or model.native_size
        area = Area.MASKED if source is MaskSource.FACE else settings.area
        passes = mask_passes(masks, original, settings, long_side, area)
        if denoising_steps(settings) > 0:  # strength 0 runs no pass
            passes = list(stage_ahead(passes, original, settings))
        return PreparedJob(
            settings=settings,
            model=model.name,
            image=original,
            mask_source=source,
            passes=tuple(passes),
            prepare_seconds=time.perf_counter() - started,
            controlnet=control,
            prompt_chunks=chunks,
            found_mask=kept_mask(masks, source, request.found_mask),
        )

    def _prepare_outpaint(
        self, request: InpaintRequest, settings: InpaintSettings, started: float
    ) -> PreparedJob:
        """The picture on its larger canvas (``engine.outpaint``, which refuses a canvas over
        ``max_pixels``), one pass per window along the new border, each painted at the model's size."""
        if request.mask is not None:
            raise MaskError("Outpainting repaints the new border: it takes no mask picture.")
        picture = images.flatten(images.load_image(request.image, max_pixels=self.config.max_pixels))
        model, control, chunks = self._model_for(settings)
        long_side = settings.resolution or model.native_size
        planned = outpaint.plan(picture, settings, long_side, self.config.max_pixels)
        passes = tuple(
            MaskPass(
                mask=window.mask,
                box=window.box,
                size=masking.processing_size(window.box.width, window.box.height, long_side),
            )
            for window in planned.windows
        )
        return PreparedJob(
            settings=settings,
            model=model.name,
            image=planned.canvas,
            mask_source=MaskSource.BORDER,
            passes=passes,
            prepare_seconds=time.perf_counter() - started,
            controlnet=control,
            prompt_chunks=chunks,
        )

    def _model_for(self, settings: InpaintSettings) -> tuple[ModelFacts, str | None, int]:
        """The model a job runs on (the operator's regular one under a ControlNet), its ControlNet,
        and its prompts' 75-token chunks; from config files only."""
        model = self.models.describe(settings.model or self.config.model)
        control = None
        if settings.controlnet is not ControlNet.NONE:
            model = self.controlnet_base(model)
            control = controlnet.model_name(self.config, settings.controlnet, sdxl=model.sdxl)
            with controlnet.operator_setting(settings.controlnet, sdxl=model.sdxl):
                self.models.check_controlnet(control, model)  # a missing one fails at submission
        tokenizer = self.models.tokenizer(model.name)
        chunks = prompts.chunk_count(tokenizer, settings.prompt, settings.negative_prompt)
        return model, control, chunks

    def mask_preview(self, request: InpaintRequest) -> MaskPreview:
        """The mask the job would repaint, over its picture, and how many matches its source found:
        the CPU half of ``prepare`` (no model weights, no tokenizer), so it runs beside it."""
        settings = request.settings
        image, found, source, mask_pick = find_masks(
            request, settings, self.config, self.face_detector, self.word_finder
        )
        return mask_preview.preview(image, found, source, settings, mask_pick)

    def controlnet_base(self, model: ModelFacts) -> ModelFacts:
        """ControlNets are trained on regular checkpoints: swap an inpainting one for the operator's,
        of the same family (a job asked of an SDXL model must not quietly run on SD 1.5)."""
        if not model.inpainting:
            return model
        base = self.config.controlnet_base_model
        if base is None:
            raise SettingsError(
                f"ControlNets do not work with inpainting (9-channel) checkpoints like {model.name!r}. "
                "Choose a regular model, or ask the operator to set INPAINTBOT_CONTROLNET_BASE_MODEL."
            )
        regular = self.models.describe(base)
        if regular.inpainting:
            raise SettingsError(
                f"INPAINTBOT_CONTROLNET_BASE_MODEL ({base!r}) is an inpainting checkpoint too; "
                "ControlNets need a regular one."
            )
        if regular.family != model.family:
            raise SettingsError(
                f"ControlNets do not work with inpainting (9-channel) checkpoints like {model.name!r}, "
                f"and this server's INPAINTBOT_CONTROLNET_BASE_MODEL ({base!r}) is {regular.family}, not "
                f"{model.family}. Choose a regular {model.family} model."
            )
        return regular

    # -- stage 2 ------------------------------------------------------------------------------------

    def run(
        self,
        jobs: Sequence[PreparedJob],
        *,
        on_progress: Sequence[ProgressCallback | None] | None = None,
        cancel: threading.Event | None = None,
        previews: bool = False,
        preview_interval: float = 0.0,
    ) -> list[InpaintResult]:
        """Run prepared jobs as one batch (they must share a ``batch_key`` when there are several).

        ``on_progress`` has one callback (or ``None``) per job, in order: each hears of every step,
        with a preview of its own job's picture only, made anew at most every ``preview_interval``
        seconds (in between, the last one made). The pictures of the results are composited when
        first read (``GeneratedImage.image``), so a caller can do that off this thread.
        """
        if not jobs:
            return []
        if len(jobs) > 1 and (
            jobs[0].batch_key is None or any(j.batch_key != jobs[0].batch_key for j in jobs)
        ):
            raise ValueError("only jobs with the same batch_key can run together")
        callbacks = on_progress if on_progress is not None else [None] * len(jobs)
        if len(callbacks) != len(jobs):
            raise ValueError(f"{len(callbacks)} progress callbacks for {len(jobs)} jobs")
        started = time.perf_counter()
        model = self.models.get(jobs[0].model)
        rows = [_Row(job, seed) for job in jobs for seed in job.settings.seeds()]
        first_rows = [next(i for i, row in enumerate(rows) if row.job is job) for job in jobs]
        listeners = list(zip(callbacks, first_rows, strict=True))
        tracker = StepTracker(
            jobs[0].total_steps, listeners, cancel, previews, model.sdxl, interval=preview_interval
        )
        try:
            for index in range(len(jobs[0].passes)):
                tracker.check_cancel()
                self._denoise_pass(model, rows, index, tracker)
        except torch.cuda.OutOfMemoryError as exc:
            # Only the message: a logged traceback (exc_info) would keep the failed call's tensors.
            log.warning("CUDA out of memory: %s", str(exc).splitlines()[0] if str(exc) else "")
        else:
            return self._results(model, jobs, rows, time.perf_counter() - started)
        # Outside the except block the traceback, and with it the failed call's frames and their
        # activations, is gone; only then can emptying the cache give that memory back.
        del rows, tracker
        release_memory()
        raise OutOfMemoryError(
            "The GPU ran out of memory on this job. Try a smaller resolution or fewer images."
        )

    def inpaint(
        self,
        request: InpaintRequest,
        *,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        previews: bool = False,
    ) -> InpaintResult:
        """Prepare and run one job."""
        job = self.prepare(request)
        return self.run([job], on_progress=[on_progress], cancel=cancel, previews=previews)[0]

    def _denoise_pass(
        self, model: LoadedModel, rows: list[_Row], index: int, tracker: StepTracker
    ) -> None:
        job = rows[0].job
        settings = job.settings
        if denoising_steps(settings) == 0:
            return  # strength 0: the masked area stays as it is
        mask_pass = [row.job.passes[index] for row in rows]
        width, height = mask_pass[0].size
        staged = [  # made by prepare, or from face-sized crops when an earlier pass paints into it
            p.staged_for(row.job.image, row.painted, row.job.settings)
            for row, p in zip(rows, mask_pass, strict=True)
        ]
        crops = [crop.picture for crop in staged]
        crop_masks = [crop.mask for crop in staged]
        each = [row.job.settings for row in rows]
        control = control_inputs(each, [crop.control for crop in staged]) if job.controlnet else None
        if settings.masked_content is MaskedContent.FILL:
            crops = [crop.filled or crop.picture for crop in staged]

        pipe = model.pipe
        if job.controlnet is not None:
            with controlnet.operator_setting(settings.controlnet, sdxl=model.sdxl):
                pipe = self.models.controlnet_pipe(model, job.controlnet)
        pipe.scheduler = make_scheduler(settings.sampler, model.base_scheduler_config)
        generators = [torch.Generator("cpu").manual_seed(row.seed + index) for row in rows]
        embeds = prompts.PromptEncoder(pipe).encode(
            [row.job.settings.prompt for row in rows], [row.job.settings.negative_prompt for row in rows]
        )
        mask = pipe.mask_processor.preprocess(crop_masks, height=height, width=width).to(
            model.device, model.dtype
        )
        latents.tile_if_large(pipe.vae, width * height, sdxl=model.sdxl)  # before the encode
        inputs: dict[str, Any]
        encoding: contextlib.AbstractContextManager[None]
        if control is None:
            inputs = latent_inputs(model, crops, mask, settings, generators)
            inputs["mask_image"] = mask
            encoding = contextlib.nullcontext()
        else:
            # The ControlNet pipelines encode the crops themselves (engine.controlnet), on the CPU
            # first: the mask goes with them as pictures too, or they would meet on two devices.
            inputs = {"image": crops, "mask_image": crop_masks, **control}
            encoding = pipe.start_latents_edited(
                lambda start: latents.apply_masked_content(
                    start, mask, settings.masked_content, generators
                )
            )

        started = time.perf_counter()
        with (
            encoding,
            latents.vae_dtype_kept(pipe.vae),
            latents.nan_checked_decode(pipe.vae),
        ):
            output = pipe(
                **embeds.as_kwargs(),
                **inputs,
                height=height,
                width=width,
                strength=settings.strength,
                num_inference_steps=scheduled_steps(settings),
                guidance_scale=settings.guidance,
                generator=generators,
                callback_on_step_end=tracker.on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
            )
        denoise_seconds = time.perf_counter() - started
        for row, p, generated in zip(rows, mask_pass, output.images, strict=True):
            row.painted.append(masking.Patch(generated, p.mask, p.box))  # pasted by Composite
            row.timings["denoise"] = row.timings.get("denoise", 0.0) + denoise_seconds

    def _results(
        self, model: LoadedModel, jobs: Sequence[PreparedJob], rows: list[_Row], seconds: float
    ) -> list[InpaintResult]:
        results = []
        for job in jobs:
            outputs = [
                GeneratedImage(
                    Composite(row.job.image, row.painted),
                    seed=row.seed,
                    parameters=a1111_parameters(
                        job.settings,
                        seed=row.seed,
                        # An outpainting's windows differ in size: A1111's Size is then its canvas.
                        size=job.image.size if job.settings.outpaints else job.processing_size,
                        model=model.name,
                        mask_source=job.mask_source.value,
                        controlnet=job.controlnet,
                    ),
                )
                for row in rows
                if row.job is job
            ]
            results.append(
                InpaintResult(
                    images=outputs,
                    settings=job.settings,
                    mask_source=job.mask_source,
                    model=model.name,
                    seconds=seconds,
                    timings={
                        "prepare": job.prepare_seconds,
                        "denoise": rows[0].timings.get("denoise", 0.0),
                    },
                    repainted=tuple(p.box for p in job.passes),
                )
            )
        return results
