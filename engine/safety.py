"""Telling whether a result picture is NSFW, so a server's policy can hide it behind a spoiler or
withhold it (``bot.guards``).

``SafetyChecker`` is the seam; the queue calls ``screen`` on each job's outputs in the GPU thread, right
after the engine. ``DiffusersSafetyChecker`` is Stable Diffusion's own checker (CLIP image embeddings
compared with fixed concept embeddings); ``INPAINTBOT_SAFETY_CHECKER`` names its weights, or turns
checking off.

CLIP sees 224 px, centre-cropped: a small repainted area in a big photo is a few pixels there, and the
edges of a wide picture are cut off. So ``screen`` shows the checker the whole picture and each
repainted crop, each padded to a square rather than cropped.

Making those views is picture work on photos of up to 40 MP: ``views`` does it (off the GPU thread,
shrinking by whole factors first, so the checker's processor only ever sees small copies), and
``judge`` gives the checker the views.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from PIL import Image, ImageOps

from engine.config import EngineConfig
from engine.errors import ModelLoadError
from engine.masking import Box

log = logging.getLogger(__name__)


class SafetyChecker(Protocol):
    def load(self) -> None:
        """Make ready now (at start-up), so the first job does not wait for a download. May raise."""
        ...

    def flags(self, images: Sequence[Image.Image]) -> list[bool]:
        """One verdict per picture, in order: ``True`` means flagged as NSFW. May raise; the caller
        decides what an unchecked picture becomes."""
        ...


VIEW_SIDE = 224
"""The side of what the checker is shown: CLIP ViT-L/14's input, so its processor has nothing to crop."""


def screen(checker: SafetyChecker, pictures: Sequence[tuple[Image.Image, Sequence[Box]]]) -> list[bool]:
    """One verdict per picture, given with the boxes repainted in it: flagged when the whole picture
    or any repainted crop is. One ``flags`` call for everything; raises what the checker raises, and
    ``ValueError`` when it miscounts."""
    return judge(checker, views(pictures))


def views(pictures: Sequence[tuple[Image.Image, Sequence[Box]]]) -> list[list[Image.Image]]:
    """What the checker is shown of each picture: the whole and each repainted crop, as
    ``VIEW_SIDE`` px squares."""
    return [_views(image, boxes) for image, boxes in pictures]


def judge(checker: SafetyChecker, shown_each: Sequence[Sequence[Image.Image]]) -> list[bool]:
    """One verdict per picture from its ``views``, in one ``flags`` call."""
    shown = [view for each in shown_each for view in each]
    flags = list(checker.flags(shown)) if shown else []
    if len(flags) != len(shown):
        raise ValueError(f"{len(flags)} verdicts for {len(shown)} pictures")
    verdicts = iter(flags)
    return [any([next(verdicts) for _ in each]) for each in shown_each]


def _views(image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
    whole = Box(0, 0, image.width, image.height)
    crops = [image.crop(box.as_tuple()) for box in dict.fromkeys(boxes) if box != whole]
    return [_padded_square(view) for view in [image, *crops]]


def _padded_square(image: Image.Image) -> Image.Image:
    """The picture shrunk (or enlarged) to fit ``VIEW_SIDE`` px, centred on black: nothing cut off.
    A big picture is first reduced by a whole factor (a box average, a fraction of a resize's cost on
    a 40 MP photo) to no less than twice the side, then resized."""
    factor = max(image.size) // (2 * VIEW_SIDE)
    small = image.reduce(factor) if factor > 1 else image
    return ImageOps.pad(small.convert("RGB"), (VIEW_SIDE, VIEW_SIDE), color=(0, 0, 0))


class DiffusersSafetyChecker:
    """``StableDiffusionSafetyChecker`` with its ``CLIPImageProcessor``, both read from ``source`` (a
    Hub id or a folder holding ``config.json``, the weights and ``preprocessor_config.json``).

    Loaded on first use, in the thread that calls ``flags`` (the GPU thread), on the engine's device
    and dtype. Not thread-safe, like the engine.
    """

    def __init__(self, source: str, device: torch.device, dtype: torch.dtype) -> None:
        self.source = source
        self.device = device
        self.dtype = dtype
        self._model: Any = None
        self._processor: Any = None

    def flags(self, images: Sequence[Image.Image]) -> list[bool]:
        if not images:
            return []
        model, processor = self._load()
        pictures = [image.convert("RGB") for image in images]
        pixels = processor(images=pictures, return_tensors="pt").pixel_values
        pixels = pixels.to(self.device, self.dtype)
        with torch.inference_mode():
            # ``images`` is only blacked out where flagged; the pixels are a throwaway stand-in.
            _, flagged = model(clip_input=pixels, images=pixels.clone())
        return [bool(verdict) for verdict in flagged]

    def load(self) -> None:
        """Load now; a checker that cannot load is a ``ModelLoadError`` naming the setting, as the
        bot must not start without it (every result would count as flagged, silently)."""
        try:
            self._load()
        except Exception as exc:
            raise ModelLoadError(unavailable(self.source, exc)) from exc

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            from diffusers.pipelines.stable_diffusion.safety_checker import (
                StableDiffusionSafetyChecker,
            )
            from transformers import CLIPImageProcessor

            log.info("loading the safety checker %s on %s (%s)", self.source, self.device, self.dtype)
            self._processor = CLIPImageProcessor.from_pretrained(self.source)
            # Typed Any: transformers' ``to`` overloads confuse static checkers on this subclass.
            # Not use_safetensors=True: the default checker's repo may hold only a pickled .bin, which
            # transformers prefers a .safetensors over and loads with torch's weights_only anyway.
            model: Any = StableDiffusionSafetyChecker.from_pretrained(
                self.source, torch_dtype=self.dtype
            )
            self._model = model.to(self.device).eval()
        return self._model, self._processor


def unavailable(source: str, exc: BaseException) -> str:
    """One line for the operator: which setting, what it names, why it failed, what to do."""
    lines = str(exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    return (
        f"INPAINTBOT_SAFETY_CHECKER={source} could not be loaded ({reason}). Fix it (a Hub id, or a "
        "folder with the checker's config.json, weights and preprocessor_config.json), or set "
        "INPAINTBOT_SAFETY_CHECKER=none to turn checking off."
    )


def safety_checker(
    config: EngineConfig, device: torch.device, dtype: torch.dtype
) -> SafetyChecker | None:
    """The checker ``INPAINTBOT_SAFETY_CHECKER`` asks for, on the engine's device and dtype; ``None``
    when the operator turned checking off."""
    if config.safety_checker is None:
        return None
    return DiffusersSafetyChecker(config.safety_checker, device, dtype)
