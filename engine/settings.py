"""The settings of one inpainting job, validated once at the edge.

Names, ranges and defaults follow AUTOMATIC1111 (see README, "Settings"). The object is immutable and
serialisable (``model_dump``/``model_validate``) so the queue, the database and presets store it as is.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import SettingsError

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 2000
DEFAULT_STRENGTH = 0.75
FACE_STRENGTH = 0.4
FACE_MASK_GROW = 4


class Sampler(StrEnum):
    EULER_A = "euler_a"
    EULER = "euler"
    DPMPP_2M = "dpmpp_2m"
    DPMPP_2M_KARRAS = "dpmpp_2m_karras"
    DDIM = "ddim"
    UNIPC = "unipc"


class Area(StrEnum):
    WHOLE = "whole"
    MASKED = "masked"


class MaskedContent(StrEnum):
    ORIGINAL = "original"
    FILL = "fill"
    LATENT_NOISE = "latent-noise"
    LATENT_NOTHING = "latent-nothing"


class AutoMask(StrEnum):
    FACE = "face"


class ControlNet(StrEnum):
    """A1111's ControlNet units for inpainting: Tile (``tile_resample``) and Inpaint (``inpaint_only``)."""

    NONE = "none"
    TILE = "tile"
    INPAINT = "inpaint"


class InpaintSettings(BaseModel):
    """Everything that decides what a job produces, except the input pictures."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    strength: float = Field(DEFAULT_STRENGTH, ge=0.0, le=1.0)
    steps: int = Field(25, ge=1, le=150)
    guidance: float = Field(7.0, ge=1.0, le=30.0)
    seed: int = Field(-1, ge=-1, le=MAX_SEED)
    sampler: Sampler = Sampler.EULER_A
    area: Area = Area.MASKED
    padding: int = Field(32, ge=0, le=256)
    masked_content: MaskedContent = MaskedContent.ORIGINAL
    mask_blur: int = Field(4, ge=0, le=64)
    invert_mask: bool = False
    mask_grow: int = Field(0, ge=-64, le=64)
    count: int = Field(1, ge=1, le=4)
    resolution: int | None = Field(None, ge=64, le=2048)
    model: str | None = Field(None, min_length=1, max_length=500)
    auto_mask: AutoMask | None = None
    max_faces: int = Field(0, ge=0, le=16)
    controlnet: ControlNet = ControlNet.NONE
    control_weight: float = Field(1.0, ge=0.0, le=2.0)
    # As in A1111: step i (from 0) of the n steps run is guided when start <= i/n <= end; so end 0.2 of
    # 4 steps guides the first, start 0.8 none (engine.controlnet.guidance_window). diffusers' own rule
    # differs (i/n >= start and (i+1)/n <= end); A1111 counts one more step when strength < 1.
    control_start: float = Field(0.0, ge=0.0, le=1.0)
    control_end: float = Field(1.0, ge=0.0, le=1.0)
    tile_downsample: float = Field(1.0, ge=1.0, le=8.0)

    @model_validator(mode="before")
    @classmethod
    def _none_is_unset(cls, data: Any) -> Any:
        """``None`` means "not given", so the default (or a lower settings layer) applies."""
        if isinstance(data, dict):
            data = {key: value for key, value in data.items() if value is not None}
        return data

    @model_validator(mode="after")
    def _defaults_that_depend_on_mode(self) -> InpaintSettings:
        """Face masks use ADetailer's defaults for what the user did not set. They are filled in
        without counting as set: a preset saved with ``auto_mask: face`` does not pin them, so a
        default preset's strength still applies under it."""
        if self.auto_mask is AutoMask.FACE:
            for name, value in (("strength", FACE_STRENGTH), ("mask_grow", FACE_MASK_GROW)):
                if name not in self.model_fields_set:
                    self.__dict__[name] = value  # the model is frozen; this is its own validation
        return self

    @field_validator("resolution")
    @classmethod
    def _resolution_multiple_of_8(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            raise ValueError(f"resolution must be a multiple of 8 (got {value})")
        return value

    @model_validator(mode="after")
    def _controlnet_combinations(self) -> InpaintSettings:
        if self.control_start >= self.control_end:
            raise ValueError(
                f"control_start ({self.control_start:g}) must be less than control_end "
                f"({self.control_end:g}): the ControlNet guides the steps between them."
            )
        return self

    @classmethod
    def parse(cls, **values: Any) -> InpaintSettings:
        """Validate user-given values; ``None`` means "use the default"."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(describe_validation_error(exc)) from None

    def with_seed(self) -> InpaintSettings:
        """A copy with a concrete seed, so the job can be reproduced from what is stored."""
        if self.seed >= 0:
            return self
        return self.model_copy(update={"seed": secrets.randbelow(MAX_SEED + 1)})

    def seeds(self) -> list[int]:
        """Seed of each image of the batch: image i uses seed + i, wrapping at 2**32."""
        if self.seed < 0:
            raise ValueError("call with_seed() first")
        return [(self.seed + i) % (MAX_SEED + 1) for i in range(self.count)]


def describe_validation_error(exc: ValidationError) -> str:
    """Turn pydantic's report into one sentence per bad setting, naming the setting and its range."""
    parts = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "settings"
        ctx = error.get("ctx") or {}
        kind = error["type"]
        got = error.get("input")
        if kind in ("greater_than_equal", "less_than_equal"):
            low, high = _bounds(name)
            parts.append(f"{name} must be between {low} and {high} (got {got}).")
        elif kind == "enum":
            parts.append(f"{name} must be one of {ctx.get('expected')} (got {got!r}).")
        elif kind == "string_too_long":
            parts.append(f"{name} is too long: at most {ctx.get('max_length')} characters.")
        elif kind == "extra_forbidden":
            parts.append(f"{name} is not a known setting.")
        elif kind.endswith("_parsing") or kind.endswith("_type"):
            parts.append(f"{name} has the wrong type (got {got!r}).")
        else:
            message = error["msg"].removeprefix("Value error, ")
            whole = not error["loc"]  # a rule about several settings names them itself
            parts.append(message if whole or message.startswith(name) else f"{name}: {message}")
    return " ".join(parts)


def _bounds(name: str) -> tuple[Any, Any]:
    low = high = None
    for constraint in InpaintSettings.model_fields[name].metadata:
        low = getattr(constraint, "ge", low)
        high = getattr(constraint, "le", high)
    return low, high
