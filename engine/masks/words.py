"""Masks from words (``mask_prompt``): Grounding DINO finds boxes for the words, SAM 2 makes them masks.

Syntax: ``a | b`` masks both; a part starting with ``not `` is removed from the mask
(``person | not face``). Each match of the parts that add is its own mask (less the ``not`` parts),
and ``mask_pick`` chooses among them as it does among faces (all of them, the largest, the leftmost
... or the n-th most confident; ``engine.mask_preview.picked``), so the mask preview's ⏭ steps
through them. The parsing, picking and subtracting are plain functions over a ``Finder``, so tests
give them one whose boxes are known.

The models (``WordModels``) load once, on first use, on the engine's device. They run where the
engine's ``prepare`` runs, in the queue's prepare thread at submission, not in the GPU worker: a
member hears at once that nothing was found, with nothing queued, and the found mask is stored with
the job, so a re-roll or a restart reuses it instead of searching again. On a GPU the two threads
share the device, so a search slows the running job for a moment (a fraction of a second with the
default models) instead of waiting behind the whole queue. A lock serialises loading and searching,
so one instance may be shared by threads (the start-up check, tests).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
from PIL import Image

from engine.errors import MaskError, ModelLoadError

log = logging.getLogger(__name__)

# Grounding DINO's usual thresholds (Grounded-SAM's): box confidence, and the words' share of it.
BOX_THRESHOLD = 0.35
TEXT_THRESHOLD = 0.25
# SAM 2 was trained on pictures normalised with ImageNet's mean and deviation (its image processor's).
_SAM_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_SAM_STD = np.array([0.229, 0.224, 0.225], np.float32)

# Each phrase is one detector call in the prepare thread, ahead of every other member's submission.
MAX_PHRASES = 8

OFF_MESSAGE = (
    "Masks from words (mask_prompt) are turned off on this bot. Upload a mask picture instead, or use "
    "auto_mask: face."
)


@dataclass(frozen=True)
class Match:
    """One thing found: its box in picture pixels (``x1``/``y1`` exclusive) and the finder's confidence."""

    box: tuple[float, float, float, float]
    score: float

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


class Finder(Protocol):
    """What ``find_matches`` needs: boxes for a phrase, and a mask (bool, the picture's size) per box."""

    def detect(self, image: Image.Image, phrase: str) -> list[Match]: ...

    def segment(self, image: Image.Image, boxes: Sequence[Match]) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class Query:
    """A parsed ``mask_prompt``: the phrases whose matches are masked and those removed again."""

    add: tuple[str, ...]
    remove: tuple[str, ...]


def parse(mask_prompt: str) -> Query:
    """Split ``a | b | not c`` into what to add and what to remove; blank parts are ignored."""
    add: list[str] = []
    remove: list[str] = []
    for part in (p.strip() for p in mask_prompt.split("|")):
        if part.lower().startswith("not "):
            if phrase := part[4:].strip():
                remove.append(phrase)
        elif part:
            add.append(part)
    if not add:
        raise MaskError(
            f"mask_prompt {mask_prompt!r} only removes ('not …'): name something to mask too, "
            "e.g. 'person | not face'."
        )
    if len(add) + len(remove) > MAX_PHRASES:
        raise MaskError(
            f"mask_prompt names {len(add) + len(remove)} things; this bot looks for at most "
            f"{MAX_PHRASES} per job. Name fewer, or upload a mask."
        )
    return Query(tuple(add), tuple(remove))


def pick(matches: Sequence[Match], mask_pick: str, looked_for: str) -> list[Match]:
    """The matches ``mask_pick`` chooses (``engine.settings.PICK_WORDS`` or a rank by confidence)."""
    if mask_pick == "all":
        return list(matches)
    if mask_pick.isdecimal():
        rank = int(mask_pick)
        if rank > len(matches):
            found = f"{len(matches)} match" + ("" if len(matches) == 1 else "es")
            raise MaskError(
                f"mask_pick {rank} asks for match number {rank} of {looked_for}, but only {found} "
                "were found. Choose a smaller number, or all."
            )
        return [sorted(matches, key=lambda m: -m.score)[rank - 1]]
    choose = {
        "largest": lambda m: -m.area,
        "left": lambda m: m.centre[0],
        "right": lambda m: -m.centre[0],
        "top": lambda m: m.centre[1],
        "bottom": lambda m: -m.centre[1],
    }[mask_pick]
    return [min(matches, key=choose)]


def find_matches(
    finder: Finder, image: Image.Image, mask_prompt: str
) -> list[tuple[Match, Image.Image]]:
    """Every match of what ``mask_prompt`` adds, most confident first (the order ``pick``'s numbers
    count in), each with its mask (mode "L", 255 = repaint) less what the ``not`` parts name; a match
    left empty is dropped. ``mask_pick`` chooses among them later, so the mask preview can show each."""
    query = parse(mask_prompt)
    looked_for = " or ".join(repr(phrase) for phrase in query.add)
    found = [match for phrase in query.add for match in finder.detect(image, phrase)]
    if not found:
        raise MaskError(
            f"Nothing matching {looked_for} was found in the picture, so nothing was queued. Try "
            "other words (a plain noun like 'shirt' or 'dog' works best), or upload a mask."
        )
    found.sort(key=lambda m: -m.score)  # stable: equals keep the order they were found in
    removed = [match for phrase in query.remove for match in finder.detect(image, phrase)]
    masks = finder.segment(image, [*found, *removed])
    kept = masks[: len(found)]
    if removed:
        outside = ~np.logical_or.reduce(masks[len(found) :])
        kept = [mask & outside for mask in kept]
    matches = [
        (match, Image.fromarray(mask.astype(np.uint8) * 255))
        for match, mask in zip(found, kept, strict=True)
        if mask.any()
    ]
    if not matches:
        without = " or ".join(repr(phrase) for phrase in query.remove)
        raise MaskError(
            f"Removing {without} from {looked_for} left nothing to repaint. Leave out the 'not' part "
            "or name something larger."
        )
    return matches


def mask_png(mask: Image.Image) -> bytes:
    """The found mask as it is stored with the job (re-runs load it like an uploaded one)."""
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class WordModels:
    """Grounding DINO and SAM 2 through ``transformers``, loaded on first use.

    SAM 2's own image processor needs torchvision, which nothing else here does, so its few
    preprocessing steps are done here: resize to the model's square input, normalise, scale the boxes.
    Hub models load as transformers prefers: a ``.safetensors`` file when the repository has one, a
    ``.bin`` otherwise (read with torch's ``weights_only``); ``use_safetensors`` is not forced because
    not every repository of these models is known to have one.
    """

    def __init__(self, detector: str, segmenter: str, device: Any) -> None:
        self.detector = detector
        self.segmenter = segmenter
        self.device = device
        self._lock = threading.Lock()
        self._models: tuple[Any, Any, Any] | None = None

    def load(self) -> None:
        """Load both models now (``inpaintbot check``; otherwise the first mask_prompt does)."""
        with self._lock:
            self._load()

    def detect(self, image: Image.Image, phrase: str) -> list[Match]:
        import torch

        rgb = image.convert("RGB")
        with self._lock:
            processor, detector, _ = self._load()
            # Grounding DINO expects lower-case phrases that end with a full stop.
            inputs = processor(images=rgb, text=phrase.lower().rstrip(".") + ".", return_tensors="pt")
            with torch.inference_mode():
                outputs = detector(**inputs.to(self.device))
            (found,) = processor.post_process_grounded_object_detection(
                outputs,
                inputs["input_ids"],
                threshold=BOX_THRESHOLD,
                text_threshold=TEXT_THRESHOLD,
                target_sizes=[(rgb.height, rgb.width)],
            )
        return [
            Match(tuple(float(v) for v in box), float(score))  # type: ignore[arg-type]
            for box, score in zip(found["boxes"].tolist(), found["scores"].tolist(), strict=True)
        ]

    def segment(self, image: Image.Image, boxes: Sequence[Match]) -> list[np.ndarray]:
        import torch

        corners = np.array([m.box for m in boxes], np.float32).reshape(-1, 2, 2)
        low = self._sam(
            image, lambda scale: {"input_boxes": torch.from_numpy(corners * scale).flatten(1)[None]}
        )
        # Upscaled one at a time: a full-size float map of a 40 MP picture takes 160 MB.
        return [cv2.resize(logits, image.size, interpolation=cv2.INTER_LINEAR) > 0 for logits in low]

    def segment_point(self, image: Image.Image, point: tuple[float, float]) -> np.ndarray:
        """The thing under ``point`` (picture pixels): SAM 2's answer to one positive click."""
        import torch

        def prompt(scale: np.ndarray) -> dict[str, Any]:
            points = np.array([[[point]]], np.float32) * scale  # image, object, click, xy
            return {
                "input_points": torch.from_numpy(points),
                "input_labels": torch.ones((1, 1, 1), dtype=torch.long),
            }

        (low,) = self._sam(image, prompt)
        return cv2.resize(low, image.size, interpolation=cv2.INTER_LINEAR) > 0

    def _sam(self, image: Image.Image, prompts: Callable[[np.ndarray], dict[str, Any]]) -> np.ndarray:
        """SAM 2 on ``image`` with the prompts ``prompts`` makes for its square input (given the scale
        from picture pixels to it): one low-resolution logit map per prompted object."""
        import torch

        rgb = image.convert("RGB")
        with self._lock:
            _, _, sam = self._load()
            side = sam.config.prompt_encoder_config.image_size
            square = np.asarray(rgb.resize((side, side), Image.Resampling.BILINEAR), np.float32) / 255
            pixels = torch.from_numpy((square - _SAM_MEAN) / _SAM_STD).permute(2, 0, 1)[None]
            scale = np.array([side / rgb.width, side / rgb.height], np.float32)
            inputs = {key: value.to(self.device) for key, value in prompts(scale).items()}
            with torch.inference_mode():
                outputs = sam(pixel_values=pixels.to(self.device), multimask_output=False, **inputs)
            low: np.ndarray = outputs.pred_masks[0, :, 0].float().cpu().numpy()
        return low

    def _load(self) -> tuple[Any, Any, Any]:
        if self._models is None:
            from transformers import AutoProcessor, GroundingDinoForObjectDetection, Sam2Model

            try:
                log.info("loading %s and %s on %s", self.detector, self.segmenter, self.device)
                processor = AutoProcessor.from_pretrained(self.detector)
                detector: Any = GroundingDinoForObjectDetection.from_pretrained(self.detector)
                sam: Any = Sam2Model.from_pretrained(self.segmenter)
            except Exception as exc:
                raise ModelLoadError(_unavailable(self.detector, self.segmenter, exc)) from exc
            self._models = (processor, detector.to(self.device).eval(), sam.to(self.device).eval())
        return self._models


def _unavailable(detector: str, segmenter: str, exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    return (
        f"The models for masks from words could not be loaded: INPAINTBOT_MASK_DETECTOR={detector}, "
        f"INPAINTBOT_MASK_SEGMENTER={segmenter} ({reason}). Fix them, or set either to none to turn "
        "mask_prompt off."
    )
