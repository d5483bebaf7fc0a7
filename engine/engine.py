"""The inpainting engine: AUTOMATIC1111's inpainting semantics on diffusers pipelines.

A job goes through two stages:

1. ``prepare`` (CPU, cheap): decode the upload, find the mask (uploaded, words, faces, or transparency),
   invert/grow/blur it at full resolution and work out the crop box and processing size of each pass;
   each pass keeps only the part of its mask inside its crop box.
   It runs in its own thread beside the GPU worker, so it loads no inpainting weights: what it needs
   to know about models and ControlNets comes from their config files (``ModelManager.describe``).
   Masks from words are the exception: their small models run here (see ``engine.masks.words``).
2. ``run`` (GPU): for each pass, crop and resize, apply the masked-content mode, denoise with the
   pipeline, and paste the result back over the full-resolution original through the blurred mask, so
   every pixel outside the mask is bit-identical to the input.

Several prepared jobs with the same ``batch_key`` can run as one pipeline call, one generator per image.

A job with a ControlNet (Tile or Inpaint) runs on a regular checkpoint through diffusers' ControlNet
inpainting pipeline that shares the base model's weights (see ``engine.controlnet``); everything else,
crops, masks and the composite, is the same.

What a pass hands the pipeline is built in ``engine.pass_inputs``; steps, previews and cancelling are
counted by ``engine.progress``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image, ImageChops

from engine import controlnet, faces, images, latents, mask_preview, masking, prompts
from engine.config import EngineConfig
from engine.errors import MaskError, OutOfMemoryError, SettingsError
from engine.job import (
    GeneratedImage,
    InpaintRequest,
    InpaintResult,
    MaskSource,
    ProgressCallback,
)
from engine.mask_preview import MaskPreview, RawMask
from engine.masks import points, words
from engine.metadata import a1111_parameters
from engine.models import LoadedModel, ModelFacts, ModelManager, resolve_device
from engine.pass_inputs import control_inputs, denoising_steps, latent_inputs, scheduled_steps
from engine.progress import StepTracker
from engine.samplers import make_scheduler
from engine.settings import Area, AutoMask, ControlNet, InpaintSettings, MaskedContent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskPass:
    """One denoising pass: its crop box in the picture, the prepared mask over that box (of the box's
    size, so a crowd of small faces keeps small masks) and the processing size."""

    mask: Image.Image
    box: masking.Box
    size: tuple[int, int]


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
    """One output image of a batch: its job, seed and the canvas its passes paint on."""

    job: PreparedJob
    seed: int
    canvas: Image.Image
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
        image, uploaded = images.load_pictures(
            request.image,
            request.mask,
            find_faces=settings.finds_mask,
            max_pixels=self.config.max_pixels,
        )
        found, source, mask_pick = self._find_masks(settings, image, uploaded, request.found_mask)
        masks = mask_preview.picked(found, source, mask_pick)
        found_mask = None  # what words found is kept with the job, so a re-run does not search again
        if source is MaskSource.WORDS:
            painted = [raw.mask for raw in masks]  # the union of the picked matches
            found_mask = request.found_mask or words.mask_png(
                functools.reduce(ImageChops.lighter, painted)
            )
        original = images.flatten(image)
        model = self.models.describe(settings.model or self.config.model)
        control = None
        if settings.controlnet is not ControlNet.NONE:
            model = self.controlnet_base(model)
            control = controlnet.model_name(self.config, settings.controlnet, sdxl=model.sdxl)
            with controlnet.operator_setting(settings.controlnet, sdxl=model.sdxl):
                self.models.check_controlnet(control, model)  # a missing one fails at submission
        tokenizer = self.models.tokenizer(model.name)
        chunks = prompts.chunk_count(tokenizer, settings.prompt, settings.negative_prompt)
        long_side = settings.resolution or model.native_size
        area = Area.MASKED if source is MaskSource.FACE else settings.area
        passes = []
        for raw in masks:
            mask = masking.prepare_mask(
                raw.mask, invert=settings.invert_mask, grow=settings.mask_grow, blur=settings.mask_blur
            )
            if area is Area.MASKED:
                box, size = masking.masked_region(
                    mask,
                    padding=settings.padding,
                    long_side=long_side,
                    within=(raw.at, original.width, original.height),
                )
            else:
                box = masking.Box(0, 0, original.width, original.height)
                size = masking.processing_size(original.width, original.height, long_side)
            # Outside its patch a face's mask is black; Pillow's crop fills what it has not with 0.
            kept = mask.crop(box.moved(-raw.at.x0, -raw.at.y0).as_tuple())
            passes.append(MaskPass(mask=kept, box=box, size=size))
        return PreparedJob(
            settings=settings,
            model=model.name,
            image=original,
            mask_source=source,
            passes=tuple(passes),
            prepare_seconds=time.perf_counter() - started,
            controlnet=control,
            prompt_chunks=chunks,
            found_mask=found_mask,
        )

    def mask_preview(self, request: InpaintRequest) -> MaskPreview:
        """The mask the job would repaint, over its picture, and how many matches its source found:
        the CPU half of ``prepare`` (no model weights, no tokenizer), so it runs beside it."""
        image, uploaded = images.load_pictures(
            request.image,
            request.mask,
            find_faces=request.settings.finds_mask,
            max_pixels=self.config.max_pixels,
        )
        settings = request.settings
        found, source, mask_pick = self._find_masks(settings, image, uploaded, request.found_mask)
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

    def _find_masks(
        self,
        settings: InpaintSettings,
        image: Image.Image,
        uploaded: images.UploadedMask | None,
        found_mask: bytes | None,
    ) -> tuple[list[RawMask], MaskSource, str]:
        """Mask source order: uploaded mask (or marked-up copy), then words (``found_mask``: what they
        found before), then the automatic face mask, then the image's transparency
        (``images.load_pictures`` made sure there is one). Every match, and the ``mask_pick`` still to
        apply: the settings', or "all" for a stored found mask, which is what the first run picked
        (picking again among its one mask would fail for "2"). A mask picture and words together are
        refused: which one the member meant is a guess."""
        if uploaded is not None and settings.mask_prompt is not None:
            raise MaskError(
                "Give either a mask picture or mask_prompt, not both: both say what to repaint. "
                "(A mask_prompt can come from a preset: choose another preset then.)"
            )
        whole = masking.Box(0, 0, image.width, image.height)
        if settings.mask_prompt is not None and found_mask is not None:
            stored = images.load_mask(found_mask, size=image.size, max_pixels=self.config.max_pixels)
            return [RawMask(stored, whole)], MaskSource.WORDS, "all"
        if settings.mask_prompt is not None:
            if self.word_finder is None:
                raise MaskError(words.OFF_MESSAGE)
            matches = words.find_matches(self.word_finder, images.flatten(image), settings.mask_prompt)
            return (
                [RawMask(mask, whole, match) for match, mask in matches],
                MaskSource.WORDS,
                settings.mask_pick,
            )
        if uploaded is None and settings.auto_mask is AutoMask.FACE:
            found = faces.detect_faces_or_raise(
                self.face_detector,
                images.flatten(image),
                settings.max_faces,
                limit=self.config.max_faces_per_job,
            )
            # Grow and blur reach this far; an inverted face mask is all the rest of the picture.
            margin = masking.mask_reach(settings.mask_grow, settings.mask_blur)
            if settings.invert_mask:
                margin = max(image.size)
            patches = [faces.face_mask(face, image.width, image.height, margin) for face in found]
            return [RawMask(mask, at) for mask, at in patches], MaskSource.FACE, settings.mask_pick
        return *mask_preview.plain_masks(image, uploaded), settings.mask_pick

    # -- stage 2 ------------------------------------------------------------------------------------

    def run(
        self,
        jobs: Sequence[PreparedJob],
        *,
        on_progress: Sequence[ProgressCallback | None] | None = None,
        cancel: threading.Event | None = None,
        previews: bool = False,
    ) -> list[InpaintResult]:
        """Run prepared jobs as one batch (they must share a ``batch_key`` when there are several).

        ``on_progress`` has one callback (or ``None``) per job, in order: each hears of every step,
        with a preview of its own job's picture only.
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
        rows = [_Row(job, seed, job.image) for job in jobs for seed in job.settings.seeds()]
        first_rows = [next(i for i, row in enumerate(rows) if row.job is job) for job in jobs]
        listeners = list(zip(callbacks, first_rows, strict=True))
        tracker = StepTracker(jobs[0].total_steps, listeners, cancel, previews, model.sdxl)
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
        gc.collect()
        torch.cuda.empty_cache()
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
        crops = [
            row.canvas.crop(p.box.as_tuple()).resize((width, height), Image.Resampling.LANCZOS)
            for row, p in zip(rows, mask_pass, strict=True)
        ]
        crop_masks = [p.mask.resize((width, height), Image.Resampling.BILINEAR) for p in mask_pass]
        # The control image follows the picture as it is, before any fill.
        each = [row.job.settings for row in rows]
        control = control_inputs(each, crops, crop_masks) if job.controlnet else None
        if settings.masked_content is MaskedContent.FILL:
            crops = [
                masking.fill_masked(crop, mask) for crop, mask in zip(crops, crop_masks, strict=True)
            ]

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
        with encoding, latents.vae_dtype_kept(pipe.vae), latents.nan_checked_decode(pipe.vae):
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
            row.canvas = masking.composite(row.canvas, generated, p.mask, p.box)
            row.timings["denoise"] = row.timings.get("denoise", 0.0) + denoise_seconds

    def _results(
        self, model: LoadedModel, jobs: Sequence[PreparedJob], rows: list[_Row], seconds: float
    ) -> list[InpaintResult]:
        results = []
        for job in jobs:
            outputs = [
                GeneratedImage(
                    image=row.canvas,
                    seed=row.seed,
                    parameters=a1111_parameters(
                        job.settings,
                        seed=row.seed,
                        size=job.processing_size,
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
