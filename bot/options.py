"""The settings options that ``/inpaint`` and ``/preset save`` share: their ranges, descriptions, choices,
how the given ones become settings values, and which models members may name.

discord.py reads a command's options from its function signature, so each command repeats the
parameters (typed with the aliases below); everything else about an option lives here. Adding one:
its alias, its entry in ``DESCRIPTIONS`` (and ``CHOICES``), and a parameter on each command. A command
that lacks a described option fails when the extension loads (discord.py refuses unknown names).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from discord import app_commands
from discord.app_commands import Choice, Range

from bot.errors import BotError
from bot.store.models import Preset
from bot.store.presets import SERVER_PREFIX
from engine.settings import (
    MAX_PROMPT_CHARS,
    MAX_SEED,
    Area,
    AutoMask,
    ControlNet,
    MaskedContent,
    Sampler,
)

Prompt = Range[str, 1, MAX_PROMPT_CHARS]
Strength = Range[float, 0.0, 1.0]
Steps = Range[int, 1, 150]
Guidance = Range[float, 1.0, 30.0]
Seed = Range[int, -1, MAX_SEED]
Padding = Range[int, 0, 256]
MaskBlur = Range[int, 0, 64]
MaskGrow = Range[int, -64, 64]
Count = Range[int, 1, 4]
ModelName = Range[str, 1, 500]
ControlWeight = Range[float, 0.0, 2.0]
ControlFraction = Range[float, 0.0, 1.0]
TileDownsample = Range[float, 1.0, 8.0]

# Every settings option, in the order the commands declare them; the keys are InpaintSettings fields.
DESCRIPTIONS = {
    "prompt": "What to paint in the masked area",
    "negative_prompt": "What to avoid",
    "auto_mask": "Find and repaint faces instead of using a mask",
    "strength": "Denoising strength: 0 keeps the original, 1 ignores it (0.75; faces 0.4)",
    "steps": "Sampling steps (25)",
    "guidance": "CFG scale: how closely to follow the prompt (7)",
    "seed": "-1 or empty for a random one",
    "sampler": "Sampling method (euler_a)",
    "area": "Repaint at full resolution around the mask only, or the whole picture (masked)",
    "padding": "Pixels of context around the mask when the area is 'masked' (32)",
    "masked_content": "What the masked area starts from (original)",
    "mask_blur": "Softens the mask edge, in pixels (4)",
    "invert_mask": "Repaint what is NOT masked",
    "mask_grow": "Grow (positive) or shrink (negative) the mask, in pixels (0; faces 4)",
    "count": "How many pictures (1)",
    "model": "A model other than the default",
    "controlnet": "Keep pose and look at high strength: tile follows the original, inpaint keeps it whole",
    "control_weight": "How strongly the ControlNet steers (1)",
    "control_start": "Fraction of the steps after which the ControlNet starts (0)",
    "control_end": "Fraction of the steps after which the ControlNet stops (1)",
    "tile_downsample": "Tile: blur the guide by this factor to let more change (1)",
}


def _choices(values: type[StrEnum]) -> list[Choice[str]]:
    return [Choice(name=value.value, value=value.value) for value in values]


CHOICES = {
    "auto_mask": _choices(AutoMask),
    "sampler": _choices(Sampler),
    "area": _choices(Area),
    "masked_content": _choices(MaskedContent),
    "controlnet": _choices(ControlNet),
}

MAX_CHOICES = 25  # Discord's limit for autocomplete answers

F = TypeVar("F", bound=Callable[..., Any])


def settings_options(command: F) -> F:
    """Describe a command's settings options and give them their choices (below ``@command``)."""
    return app_commands.describe(**DESCRIPTIONS)(app_commands.choices(**CHOICES)(command))


def given_settings(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The settings options of a command call, ``None`` where not given, choices as their values.

    ``parameters`` is the command's ``locals()`` taken first thing, so a new option needs no line here.
    """
    values = {name: parameters[name] for name in DESCRIPTIONS}
    return {name: v.value if isinstance(v, Choice) else v for name, v in values.items()}


def check_model(model: str | None, allowed: list[str]) -> None:
    """Members may only name the configured models (see ``BotConfig.allowed_models``)."""
    if model is not None and model not in allowed:
        raise BotError(f"Unknown model {model!r}. This bot offers: {', '.join(allowed)}.")


def matching(
    names: list[str],
    current: str,
    *,
    labels: list[str] | None = None,
    values: list[str] | None = None,
) -> list[Choice[str]]:
    """Autocomplete answers: names containing what was typed, at most Discord's 25 (and 100 chars).
    ``labels`` are what the member sees for each name and ``values`` what is sent, if not the name."""
    found = [
        Choice(name=label, value=value)
        for name, label, value in zip(names, labels or names, values or names, strict=True)
        if current.casefold() in name.casefold() and len(value) <= 100
    ]
    return found[:MAX_CHOICES]


def preset_choices(presets: list[Preset], current: str) -> list[Choice[str]]:
    """Autocomplete answers for a preset name; the server's presets are marked as such."""
    own = matching([p.name for p in presets if p.guild_id is None], current)
    shared = [p.name for p in presets if p.guild_id is not None]
    server = matching(
        shared,
        current,
        labels=[f"{name} (server)" for name in shared],
        values=[f"{SERVER_PREFIX}{name}" for name in shared],
    )
    # Both kinds stay in sight when there are more than fit: the server's get at least half.
    room = min(len(server), max(MAX_CHOICES - len(own), MAX_CHOICES // 2))
    return own[: MAX_CHOICES - room] + server[:room]
