"""The command line and Discord offer each setting with ``InpaintSettings``' range, default and choices.

The ranges are checked against what ``InpaintSettings`` really accepts: the edge value passes, one step
beyond is refused as out of range.
"""

import argparse
import re
from enum import StrEnum
from typing import Any

import discord
import pytest
from discord import app_commands

from bot.cli import build_parser
from bot.cogs.inpaint import Inpaint
from bot.cogs.presets import Presets
from bot.options import given_settings
from engine.errors import SettingsError
from engine.settings import MAX_PICK, PICK_WORDS, AutoMask, InpaintSettings

COMMANDS = {"/inpaint": Inpaint.inpaint, "/outpaint": Inpaint.outpaint, "/preset save": Presets.save}
OWN_OPTIONS = {
    "/inpaint": {"image", "mask", "preset"},
    "/outpaint": {"image", "preset"},
    "/preset save": {"name", "scope"},
}
CLI_ONLY = {"resolution", "max_faces"}
TUNING = {"control_start", "control_end", "tile_downsample"}
OUTPAINT = {"zoom", "left", "right", "up", "down"}  # a job's own border, like its seed: not in presets
# What only a mask means; /outpaint's mask is the new border.
MASK_ONLY = {"area", "padding", "invert_mask", "mask_grow", "mask_prompt", "mask_pick", "auto_mask"}
# Discord allows 25 options a command: ControlNet fine-tuning is set in presets, and presets have no seed.
NOT_OFFERED = {
    "/inpaint": CLI_ONLY | TUNING | OUTPAINT,
    "/outpaint": CLI_ONLY | TUNING | MASK_ONLY | {"preview_mask"},
    "/preset save": CLI_ONLY | {"seed"} | OUTPAINT,
}
DISCORD_ONLY = {"preview_mask"}  # a way of asking on Discord: the command line has --mask-preview
FIELDS = set(InpaintSettings.model_fields)
# ``inpaintbot outpaint`` keeps --mask-grow (it widens the band into the picture) and --resolution.
ON_THE_COMMAND_LINE = {
    "inpaint": sorted(FIELDS - DISCORD_ONLY - OUTPAINT),
    "outpaint": sorted(FIELDS - DISCORD_ONLY - (MASK_ONLY - {"mask_grow"}) - {"max_faces"}),
}
OWN_FLAGS = {
    "inpaint": {"help", "image", "output", "mask", "device", "mask_preview"},
    "outpaint": {"help", "image", "output", "device"},
}
ALIASES = {"up": "--top", "down": "--bottom"}
TEXT = {"prompt", "negative_prompt", "model", "mask_prompt"}
DEFAULTS = InpaintSettings()


def out_of_range(name: str, value: Any) -> bool:
    """Whether ``InpaintSettings`` refuses ``value`` for ``name`` as beyond its range or length."""
    try:
        InpaintSettings.parse(**{name: value})
    except SettingsError as exc:
        return f"{name} must be between" in str(exc) or f"{name} is too long" in str(exc)
    return False


def assert_range(name: str, low: Any, high: Any) -> None:
    """``low`` and ``high`` are the edges InpaintSettings accepts (lengths for text)."""
    if name in TEXT:
        assert not out_of_range(name, "x" * high) and out_of_range(name, "x" * (high + 1)), name
        assert low >= 1 and not out_of_range(name, "x" * low), name
        return
    step = 1 if isinstance(high, int) else 0.01
    for edge, beyond in ((low, low - step), (high, high + step)):
        assert not out_of_range(name, edge), (name, edge)
        assert out_of_range(name, beyond), (name, beyond)


def assert_picks() -> None:
    """mask_pick is text offered as such: a word or a number, checked by InpaintSettings."""
    for pick in (*PICK_WORDS, "1", str(MAX_PICK), "Largest "):
        InpaintSettings.parse(mask_pick=pick)
    for pick in ("0", str(MAX_PICK + 1), "middle", "-1"):
        with pytest.raises(SettingsError, match="mask_pick must be one of all, largest, left, right"):
            InpaintSettings.parse(mask_pick=pick)


def shown_default(name: str) -> str | None:
    """The default as help texts show it; ``None`` where there is none to show."""
    value = getattr(DEFAULTS, name)
    if name == "seed" or value in (None, "") or isinstance(value, bool):
        return None  # seed -1 means random, which its text says; empty, unset and off need no mention
    if isinstance(value, StrEnum):
        return value.value
    return f"{value:g}" if isinstance(value, float) else str(value)


def discord_options(command: app_commands.Command[Any, ..., Any]) -> dict[str, app_commands.Parameter]:
    return {parameter.name: parameter for parameter in command.parameters}


@pytest.mark.parametrize("command", COMMANDS)
def test_discord_offers_every_setting_but_the_ones_left_out(command: str) -> None:
    options = discord_options(COMMANDS[command])
    assert (
        set(options) == set(InpaintSettings.model_fields) - NOT_OFFERED[command] | OWN_OPTIONS[command]
    )
    assert len(options) <= 25, "Discord refuses a command with more options"


def test_every_discord_setting_is_offered_by_one_of_the_commands() -> None:
    offered = set.intersection(*NOT_OFFERED.values())
    assert offered == CLI_ONLY


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (command, name)
        for command in COMMANDS
        for name in sorted(set(InpaintSettings.model_fields) - NOT_OFFERED[command])
    ],
)
def test_discord_options_agree_with_the_settings(command: str, name: str) -> None:
    option = discord_options(COMMANDS[command])[name]
    assert not option.required
    assert len(option.name) <= 32 and len(option.description) <= 100  # Discord's limits
    field_default = getattr(DEFAULTS, name)
    if isinstance(field_default, StrEnum):
        assert [choice.value for choice in option.choices] == [m.value for m in type(field_default)]
    elif name == "auto_mask":
        assert [choice.value for choice in option.choices] == [m.value for m in AutoMask]
    elif name == "preview_mask":  # on, off, or left to the default (None)
        assert option.type is discord.AppCommandOptionType.boolean
    elif name == "mask_pick":
        assert option.type is discord.AppCommandOptionType.string and not option.choices
        assert_picks()
    elif not isinstance(field_default, bool):
        assert_range(name, option.min_value, option.max_value)
    if (default := shown_default(name)) is not None:
        assert re.search(rf"\({re.escape(default)}[;)]", option.description), option.description


def test_options_left_out_give_the_default_settings() -> None:
    assert InpaintSettings.parse(**given_settings({})) == DEFAULTS


def job_flags(command: str) -> dict[str, argparse.Action]:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    job = subcommands.choices[command]
    job.format_help()  # a stray % in a help text would break --help
    return {action.dest: action for action in job._actions}


@pytest.mark.parametrize("command", ON_THE_COMMAND_LINE)
def test_the_command_line_has_a_flag_for_every_setting(command: str) -> None:
    flags = job_flags(command)
    assert set(flags) == set(ON_THE_COMMAND_LINE[command]) | OWN_FLAGS[command]
    for name in ON_THE_COMMAND_LINE[command]:
        aliases = [ALIASES[name]] if name in ALIASES else []
        assert flags[name].option_strings == ["--" + name.replace("_", "-"), *aliases]


def test_every_setting_has_a_flag_in_one_of_the_subcommands() -> None:
    assert set().union(*ON_THE_COMMAND_LINE.values()) == FIELDS - DISCORD_ONLY


@pytest.mark.parametrize(
    ("command", "name"),
    [(command, name) for command, names in ON_THE_COMMAND_LINE.items() for name in names],
)
def test_command_line_flags_agree_with_the_settings(command: str, name: str) -> None:
    flag = job_flags(command)[name]
    assert flag.default is None  # left out: InpaintSettings' default applies
    field_default = getattr(DEFAULTS, name)
    if isinstance(field_default, bool):
        assert isinstance(flag, argparse._StoreTrueAction)
    elif isinstance(field_default, StrEnum):
        assert flag.choices == [m.value for m in type(field_default)]
    elif name == "auto_mask":
        assert flag.choices == [m.value for m in AutoMask]
    elif name == "mask_pick":
        assert flag.type is str and flag.choices is None
        assert_picks()
    else:
        help_text = flag.help or ""
        if name in TEXT:
            (high,) = re.findall(r"at most (\d+) characters", help_text)
            assert_range(name, 1, int(high))
        else:
            number = flag.type
            assert number in (int, float)
            low, high = re.findall(r"; (-?[\d.]+) to (-?[\d.]+)", help_text)[0]
            assert_range(name, number(low), number(high))
    if (default := shown_default(name)) is not None:
        assert re.search(rf"\(default: {re.escape(default)}[;)]", flag.help or ""), flag.help


def test_no_flags_give_the_default_settings() -> None:
    args = build_parser().parse_args(["inpaint", "in.png", "-o", "out.png"])
    given = {name: getattr(args, name) for name in ON_THE_COMMAND_LINE["inpaint"]}
    assert InpaintSettings.parse(**given) == DEFAULTS
