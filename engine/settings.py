"""The settings of one inpainting job, validated once at the edge, and the one place each is defined.

Names, ranges and defaults follow AUTOMATIC1111 (see README, "Settings"). The object is immutable and
serialisable (``model_dump``/``model_validate``) so the queue, the database and presets store it as is.

Each field also carries its help text and whether Discord offers it (``setting``); the command-line
flags and the Discord options are built from ``SETTINGS``, so adding a setting is one field here.
"""

from __future__ import annotations

import secrets
import types
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Union, cast, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonDict

from engine.errors import SettingsError

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 2000
MAX_MASK_PROMPT_CHARS = 300
# mask_pick: a match by where it is or how big, or the n-th most confident (engine.masks.words).
PICK_WORDS = ("all", "largest", "left", "right", "top", "bottom")
MAX_PICK = 20
# ADetailer's defaults for face masks, where the user did not set them.
FACE_DEFAULTS: dict[str, float] = {"strength": 0.4, "mask_grow": 4}
MAX_ZOOM = 4.0
MAX_BORDER = 4096  # px added on one side
# The outpaint geometry is a job's own, like its seed: presets (which /inpaint applies too) leave it out.
OUTPAINT_FIELDS = ("zoom", "left", "right", "up", "down")
# What only a mask means: an outpainting takes none of it from a preset (its mask is the new border).
MASK_ONLY = (
    "area",
    "padding",
    "invert_mask",
    "mask_prompt",
    "mask_pick",
    "auto_mask",
    "preview_mask",
    "max_faces",
)
# The commands that offer a setting: Discord's /inpaint, /outpaint and /preset save ("preset"); the
# command line's ``inpaintbot inpaint`` and ``inpaintbot outpaint``.
EVERYWHERE = ("inpaint", "outpaint", "preset")
BOTH_CLI = ("inpaint", "outpaint")


def setting(
    default: Any,
    help: str,
    *,
    discord: tuple[str, ...] = EVERYWHERE,
    cli: tuple[str, ...] = BOTH_CLI,
    cli_aliases: tuple[str, ...] = (),
    shown_default: str | None = None,
    **limits: Any,
) -> Any:
    """A settings field: ``help`` is shown by ``--help`` and as the Discord option's description
    (with the default added), ``discord`` names the Discord commands that offer it (``/inpaint``,
    ``/outpaint``, ``/preset save``; ``()`` keeps it to the command line) and ``cli`` the command
    line's (``()`` keeps it to Discord), ``cli_aliases`` are further flags for it, ``shown_default``
    replaces the default's value in help texts ("" shows none), ``limits`` are pydantic's (ge, le,
    max_length)."""
    extra: JsonDict = {
        "discord": list(discord),
        "cli": list(cli),
        "cli_aliases": list(cli_aliases),
        "shown_default": shown_default,
    }
    return Field(default, description=help, json_schema_extra=extra, **limits)


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


# Outpainting's defaults, where the user did not set them: a new border starts from colours diffused
# from the picture's edge (A1111's poor man's outpainting) and needs most of the denoising (A1111's
# outpainting mk2 suggests 0.8).
OUTPAINT_DEFAULTS: dict[str, Any] = {"strength": 0.8, "masked_content": MaskedContent.FILL}


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

    prompt: str = setting("", "What to paint in the masked area", max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = setting("", "What to avoid", max_length=MAX_PROMPT_CHARS)
    strength: float = setting(
        0.75, "Denoising strength: 0 keeps the original, 1 ignores it", ge=0.0, le=1.0
    )
    steps: int = setting(25, "Sampling steps", ge=1, le=150)
    guidance: float = setting(7.0, "CFG scale: how closely to follow the prompt", ge=1.0, le=30.0)
    seed: int = setting(
        -1,
        "-1 or left out for a random one",
        discord=("inpaint", "outpaint"),
        shown_default="",
        ge=-1,
        le=MAX_SEED,
    )
    sampler: Sampler = setting(Sampler.EULER_A, "Sampling method")
    area: Area = setting(
        Area.MASKED,
        "Repaint at full resolution around the mask only, or the whole picture",
        discord=("inpaint", "preset"),
        cli=("inpaint",),
    )
    padding: int = setting(
        32,
        "Pixels of context around the mask when the area is 'masked'",
        discord=("inpaint", "preset"),
        cli=("inpaint",),
        ge=0,
        le=256,
    )
    masked_content: MaskedContent = setting(MaskedContent.ORIGINAL, "What the masked area starts from")
    mask_blur: int = setting(4, "Softens the mask edge, in pixels", ge=0, le=64)
    invert_mask: bool = setting(
        False, "Repaint what is NOT masked", discord=("inpaint", "preset"), cli=("inpaint",)
    )
    mask_grow: int = setting(
        0,
        "Grow (positive) or shrink (negative) the mask, in pixels",
        discord=("inpaint", "preset"),
        ge=-64,
        le=64,
    )
    count: int = setting(1, "How many pictures", ge=1, le=4)
    resolution: int | None = setting(
        None,
        "Long side of the processing size in px, a multiple of 8",
        discord=(),
        shown_default="the model's native size",
        ge=64,
        le=2048,
    )
    model: str | None = setting(None, "A model other than the default", min_length=1, max_length=500)
    mask_prompt: str | None = setting(
        None,
        "Repaint what these words name: 'red shirt'; 'a | b' both; 'person | not face' leaves one out",
        discord=("inpaint", "preset"),
        cli=("inpaint",),
        min_length=1,
        max_length=MAX_MASK_PROMPT_CHARS,
    )
    mask_pick: str = setting(
        "all",
        "Which mask_prompt match: all, largest, left, right, top, bottom, or 1, 2… (surest first)",
        discord=("inpaint", "preset"),
        cli=("inpaint",),
        max_length=8,
    )
    auto_mask: AutoMask | None = setting(
        None,
        "Find and repaint faces instead of using a mask",
        discord=("inpaint", "preset"),
        cli=("inpaint",),
    )
    preview_mask: bool | None = setting(
        None,
        "Show the mask first, to adjust it before painting",
        discord=("inpaint", "preset"),
        cli=(),
        shown_default="",
    )
    max_faces: int = setting(
        0,
        "With --auto-mask face: only the N largest faces (0 = all)",
        discord=(),
        cli=("inpaint",),
        ge=0,
        le=16,
    )
    controlnet: ControlNet = setting(
        ControlNet.NONE,
        "Keep pose and look at high strength: tile follows the original, inpaint keeps it whole",
    )
    control_weight: float = setting(1.0, "How strongly the ControlNet steers", ge=0.0, le=2.0)
    # As in A1111: step i (from 0) of the n steps run is guided when start <= i/n <= end; so end 0.2 of
    # 4 steps guides the first, start 0.8 none (engine.controlnet.guidance_window). diffusers' own rule
    # differs (i/n >= start and (i+1)/n <= end); A1111 counts one more step when strength < 1.
    control_start: float = setting(
        0.0,
        "Fraction of the steps after which the ControlNet starts",
        discord=("preset",),
        ge=0.0,
        le=1.0,
    )
    control_end: float = setting(
        1.0,
        "Fraction of the steps after which the ControlNet stops",
        discord=("preset",),
        ge=0.0,
        le=1.0,
    )
    tile_downsample: float = setting(
        1.0,
        "Tile: blur the guide by this factor to let more change",
        discord=("preset",),
        ge=1.0,
        le=8.0,
    )
    # Outpainting: the picture on a larger canvas whose new border is inpainted (engine.outpaint).
    # Either a zoom factor or pixels per side; one of them makes a job an outpainting.
    zoom: float | None = setting(
        None,
        "Outpaint: zoom out by this factor, the picture centred (1.5 adds a quarter on each side)",
        discord=("outpaint",),
        cli=("outpaint",),
        shown_default="",
        ge=1.0,
        le=MAX_ZOOM,
    )
    left: int | None = setting(
        None,
        "Outpaint: pixels to add on the left",
        discord=("outpaint",),
        cli=("outpaint",),
        ge=0,
        le=MAX_BORDER,
    )
    right: int | None = setting(
        None,
        "Outpaint: pixels to add on the right",
        discord=("outpaint",),
        cli=("outpaint",),
        ge=0,
        le=MAX_BORDER,
    )
    up: int | None = setting(
        None,
        "Outpaint: pixels to add at the top",
        discord=("outpaint",),
        cli=("outpaint",),
        cli_aliases=("--top",),
        ge=0,
        le=MAX_BORDER,
    )
    down: int | None = setting(
        None,
        "Outpaint: pixels to add at the bottom",
        discord=("outpaint",),
        cli=("outpaint",),
        cli_aliases=("--bottom",),
        ge=0,
        le=MAX_BORDER,
    )

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
        defaults: dict[str, Any] = {}
        if self.auto_mask is AutoMask.FACE:
            defaults = FACE_DEFAULTS
        elif self.outpaints:
            defaults = OUTPAINT_DEFAULTS
        for name, value in defaults.items():
            if name not in self.model_fields_set:
                self.__dict__[name] = value  # the model is frozen; this is its own validation
        return self

    @model_validator(mode="after")
    def _outpaint_geometry(self) -> InpaintSettings:
        """Zoom or pixels per side, not both: both say how large the new canvas is. An outpainting
        repaints its new border, so a mask found from words or faces has no place in it."""
        sides = [getattr(self, name) for name in OUTPAINT_FIELDS[1:]]
        if self.zoom is not None and any(side is not None for side in sides):
            raise ValueError(
                "Give either zoom or pixels for the sides (left, right, up, down), not both: "
                "both say how much to add."
            )
        if self.zoom is not None and self.zoom <= 1.0:
            raise ValueError(
                f"zoom {self.zoom:g} adds nothing: zoom out by more than 1 (at most {MAX_ZOOM:g})."
            )
        if self.outpaints and (self.mask_prompt is not None or self.auto_mask is not None):
            raise ValueError(
                "Outpainting repaints the new border: it cannot take mask_prompt or auto_mask."
            )
        if self.outpaints and self.invert_mask:
            raise ValueError("Outpainting repaints the new border: invert_mask does not apply to it.")
        return self

    @field_validator("resolution")
    @classmethod
    def _resolution_multiple_of_8(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            raise ValueError(f"resolution must be a multiple of 8 (got {value})")
        return value

    @field_validator("mask_prompt")
    @classmethod
    def _mask_prompt_names_something(cls, value: str | None) -> str | None:
        """Blank text would find everything or nothing; the words themselves are parsed by the engine."""
        if value is not None and not value.replace("|", "").strip():
            raise ValueError("mask_prompt must name what to mask, e.g. 'the red shirt'.")
        return value.strip() if value is not None else None

    @field_validator("mask_pick")
    @classmethod
    def _known_pick(cls, value: str) -> str:
        pick = value.strip().lower()
        if pick in PICK_WORDS or (pick.isdecimal() and 1 <= int(pick) <= MAX_PICK):
            return pick
        raise ValueError(
            f"mask_pick must be one of {', '.join(PICK_WORDS)}, or a number from 1 to {MAX_PICK} "
            f"(1 is the match the finder is surest of) (got {value!r})."
        )

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

    @property
    def outpaints(self) -> bool:
        """The job extends the picture (zoom, or some pixels on a side) instead of repainting a mask."""
        return self.zoom is not None or any(getattr(self, side) for side in OUTPAINT_FIELDS[1:])

    @property
    def outpaint_text(self) -> str:
        """The outpainting asked for, as members read it: "zoom 2×" or "left 256, up 128"."""
        if self.zoom is not None:
            return f"zoom {self.zoom:g}×"
        sides = ((name, getattr(self, name)) for name in OUTPAINT_FIELDS[1:])
        return ", ".join(f"{name} {value}" for name, value in sides if value)

    @property
    def finds_mask(self) -> bool:
        """The engine finds the mask itself (faces or words): no mask picture or transparency needed."""
        return self.auto_mask is AutoMask.FACE or self.mask_prompt is not None

    @property
    def shows_preview(self) -> bool:
        """Whether /inpaint shows the mask before queuing: as ``preview_mask`` says, and when it is not
        set, for masks the member has not seen yet: those found from words."""
        if self.preview_mask is not None:
            return self.preview_mask
        return self.mask_prompt is not None

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
            low, high = _limits(InpaintSettings.model_fields[name])
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


def _limits(field: FieldInfo) -> tuple[Any, Any]:
    """The lowest and highest value of a number field, or the shortest and longest text."""
    low = high = None
    for constraint in field.metadata:
        low = getattr(constraint, "ge", getattr(constraint, "min_length", low))
        high = getattr(constraint, "le", getattr(constraint, "max_length", high))
    return low, high


@dataclass(frozen=True)
class Setting:
    """One settings field as the command line and Discord offer it."""

    name: str
    type: type  # int, float, str, bool or a StrEnum of the choices
    default: Any
    help: str
    low: Any  # numbers: the lowest value; text: the shortest length (None: no limit)
    high: Any
    # The Discord commands that offer it: "inpaint", "outpaint" and/or "preset" (``/preset save``).
    # Discord allows 25 options a command, so fine-tuning lives in presets and a preset has no seed.
    discord: tuple[str, ...]
    cli: tuple[str, ...]  # the ``inpaintbot`` subcommands with a flag for it
    cli_aliases: tuple[str, ...]  # further flags for it (``--top`` for ``up``)
    shown_default: str  # the default as help texts show it ("" for none)

    @property
    def choices(self) -> list[str] | None:
        return [member.value for member in self.type] if issubclass(self.type, StrEnum) else None


def _setting(name: str, field: FieldInfo) -> Setting:
    kind: Any = field.annotation
    if get_origin(kind) in (Union, types.UnionType):  # ``X | None``: None means "not given"
        (kind,) = (arg for arg in get_args(kind) if arg is not type(None))
    extra = field.json_schema_extra
    assert isinstance(extra, dict) and field.description, f"{name}: declare it with setting()"
    low, high = _limits(field)
    shown = extra["shown_default"]
    if shown is None:
        shown = _shown(field.default)
        if name in FACE_DEFAULTS:
            shown += f"; faces {FACE_DEFAULTS[name]:g}"
        if name in OUTPAINT_DEFAULTS:
            shown += f"; outpaint {_shown(OUTPAINT_DEFAULTS[name])}"
    return Setting(
        name=name,
        type=kind,
        default=field.default,
        help=field.description,
        low=low,
        high=high,
        discord=tuple(cast(list[str], extra["discord"])),
        cli=tuple(cast(list[str], extra["cli"])),
        cli_aliases=tuple(cast(list[str], extra["cli_aliases"])),
        shown_default=str(shown),
    )


def _shown(default: Any) -> str:
    if isinstance(default, StrEnum):
        return default.value
    if isinstance(default, bool) or default in (None, ""):
        return ""  # off, empty or unset need no mention
    return f"{default:g}" if isinstance(default, float) else str(default)


SETTINGS: tuple[Setting, ...] = tuple(
    _setting(name, field) for name, field in InpaintSettings.model_fields.items()
)
