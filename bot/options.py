"""The settings options of ``/inpaint``, ``/outpaint`` and ``/preset save``, built from the engine's
settings (``engine.settings.SETTINGS``: range, default, choices and description), how the given ones
become settings values, and which models members may name.

discord.py reads a command's options from its callback's signature; ``settings_options`` gives the
callback one that lists every setting Discord offers, and the callback takes them as ``**options``.
A new setting therefore needs no line here or in the commands.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

from discord import app_commands
from discord.app_commands import Choice, Range

from bot.errors import BotError
from bot.store.models import Preset
from bot.store.presets import SERVER_PREFIX
from engine.settings import SETTINGS, Setting

OFFERED = tuple(setting for setting in SETTINGS if setting.discord)  # by one command or more

MAX_CHOICES = 25  # Discord's limit for autocomplete answers

F = TypeVar("F", bound=Callable[..., Any])


def _annotation(setting: Setting) -> Any:
    """The option's type as discord.py reads it: a range, choices, or on/off; always optional."""
    if setting.choices is not None:
        return Choice[str] | None
    if setting.type is bool:
        return bool | None
    low = setting.low
    if setting.type is str:
        low = max(low or 0, 1)  # Discord sends no empty text
    return Range[setting.type, setting.type(low), setting.type(setting.high)] | None


def _description(setting: Setting) -> str:
    """The setting's help text with its default: "Sampling steps (25)"."""
    if setting.shown_default:
        return f"{setting.help} ({setting.shown_default})"
    return setting.help


def settings_options(command_name: str) -> Callable[[F], F]:
    """Give a command whose callback ends in ``**options`` one option per setting that command
    (``Setting.discord``: "inpaint", "outpaint" or "preset") offers, after its own parameters, with
    their ranges, choices and descriptions (put below ``@command``)."""
    offered = [s for s in OFFERED if command_name in s.discord]

    def decorate(command: F) -> F:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        added = [
            inspect.Parameter(
                s.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_annotation(s)
            )
            for s in offered
        ]
        cast(Any, command).__signature__ = signature.replace(parameters=[*own, *added])
        choices = {
            s.name: [Choice(name=value, value=value) for value in s.choices]
            for s in offered
            if s.choices is not None
        }
        described = app_commands.describe(**{s.name: _description(s) for s in offered})
        return described(app_commands.choices(**choices)(command))

    return decorate


def given_settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """The settings options of a command call, ``None`` where not given, choices as their values."""
    values = {s.name: options.get(s.name) for s in OFFERED}
    return {name: v.value if isinstance(v, Choice) else v for name, v in values.items()}


LOCAL_SUFFIXES = (".safetensors", ".ckpt")


def model_name(model: str) -> str:
    """What members see of a model: a Hub id as it is, a local file or folder by its own name only.
    Where the operator keeps their files is no member's business."""
    path = Path(model)
    local = path.is_absolute() or model.startswith((".", "~")) or model.endswith(LOCAL_SUFFIXES)
    return path.name if local or path.expanduser().exists() else model


def check_model(model: str | None, allowed: list[str]) -> None:
    """Members may only name the configured models (see ``BotConfig.allowed_models``)."""
    if model is not None and model not in allowed:
        offered = ", ".join(model_name(name) for name in allowed)
        raise BotError(f"Unknown model {model_name(model)!r}. This bot offers: {offered}.")


def model_choices(allowed: list[str], current: str) -> list[Choice[str]]:
    """Autocomplete answers for the ``model`` option, shown by their names (``model_name``)."""
    return matching(allowed, current, labels=[model_name(name) for name in allowed])


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
