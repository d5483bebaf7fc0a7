"""Checks of the models: the default one, the safety checker and the mask models are loaded as the bot
loads them; the other models and the ControlNets are only looked up, which fills no GPU."""

from __future__ import annotations

import time

from bot.check.result import Check
from bot.config import BotConfig


def check_model(config: BotConfig) -> Check:
    """Load the default model exactly as the bot does at start-up (downloading it if needed)."""
    from engine.engine import Engine
    from engine.errors import EngineError

    started = time.perf_counter()
    try:
        model = Engine(config).load()
    except EngineError as exc:
        return Check("FAIL", "model", str(exc))
    kind = "SDXL" if model.sdxl else "SD 1.x/2.x"
    channels = "inpainting (9-channel)" if model.inpainting else "regular (4-channel)"
    return Check(
        "ok",
        "model",
        f"{model.name}: {kind} {channels}, {model.native_size} px, loaded on {model.device} "
        f"({str(model.dtype).removeprefix('torch.')}) in {time.perf_counter() - started:.1f} s",
    )


def check_other_models(config: BotConfig) -> Check:
    """The models members may pick are loaded on first use; here only their config files are read,
    which finds wrong names and paths without filling the GPU."""
    from engine.errors import EngineError
    from engine.models import ModelManager, resolve_device

    manager = ModelManager(resolve_device(config.device), single_file_config=config.single_file_config)
    others = [name for name in config.allowed_models() if name != config.model]
    problems = []
    for name in others:
        try:
            manager.native_size(name)
        except EngineError as exc:
            problems.append(str(exc))
    if problems:
        return Check("FAIL", "models", " ".join(problems))
    return Check("ok", "models", f"found the {len(others)} other model(s) in INPAINTBOT_MODELS")


def check_controlnets(config: BotConfig) -> Check:
    """ControlNets load on a job's first use; here their config files are read, which finds wrong
    names, things that are not ControlNets and the wrong family, and the base model rule is checked."""
    from engine import controlnet
    from engine.engine import Engine
    from engine.errors import EngineError, SettingsError
    from engine.settings import ControlNet

    engine = Engine(config)  # loads nothing: only its config reads are used here
    problems, refused = [], None
    try:
        model = runs_on = engine.models.describe(config.model)
    except EngineError as exc:
        return Check("FAIL", "controlnets", str(exc))
    try:
        runs_on = engine.controlnet_base(model)
    except SettingsError as exc:
        if config.controlnet_base_model is not None:
            problems.append(str(exc))
        else:
            refused = (
                f"the default model {config.model} is an inpainting checkpoint and "
                "INPAINTBOT_CONTROLNET_BASE_MODEL is not set, so ControlNet jobs on it are refused; "
                f"set it to a regular {model.family} model"
            )
    except EngineError as exc:
        problems.append(f"INPAINTBOT_CONTROLNET_BASE_MODEL: {exc}")
    found = []
    for kind in (ControlNet.TILE, ControlNet.INPAINT):
        for sdxl in (False, True):
            name = controlnet.configured(config, kind, sdxl=sdxl)
            if name is None:
                continue
            try:
                if sdxl == runs_on.sdxl:
                    engine.models.check_controlnet(name, runs_on)
                else:  # no model of that family to fit it to here
                    engine.models.controlnet_width(name)
            except EngineError as exc:
                problems.append(f"{controlnet.variable(kind, sdxl=sdxl)}: {exc}")
            else:
                found.append(controlnet.variable(kind, sdxl=sdxl))
    if problems:
        return Check("FAIL", "controlnets", " ".join([*problems, *([refused] if refused else [])]))
    if refused:
        return Check("warn", "controlnets", refused)
    return Check("ok", "controlnets", f"found {', '.join(found)}; ControlNet jobs run on {runs_on.name}")


def check_safety_checker(config: BotConfig) -> Check:
    """Load the NSFW checker as the bot does and let it judge one picture. One that cannot load stops
    ``inpaintbot run``, with the message shown here."""
    from PIL import Image

    from engine.errors import ModelLoadError
    from engine.models import ModelManager, resolve_device
    from engine.safety import safety_checker

    models = ModelManager(resolve_device(config.device))  # only for the device and dtype the bot uses
    checker = safety_checker(config, models.device, models.dtype)
    if checker is None:
        return Check(
            "warn",
            "safety",
            "INPAINTBOT_SAFETY_CHECKER is none: results are not checked, so the servers' NSFW "
            "policies have no effect",
        )
    try:
        checker.load()
    except ModelLoadError as exc:
        return Check("FAIL", "safety", str(exc))  # word for word what `inpaintbot run` says
    try:
        checker.flags([Image.new("RGB", (64, 64))])
    except Exception as exc:
        return Check(
            "FAIL",
            "safety",
            f"the safety checker {config.safety_checker} loads but fails on a picture ({exc}); every "
            "result would count as flagged. Set INPAINTBOT_SAFETY_CHECKER=none to turn checking off.",
        )
    return Check("ok", "safety", f"the safety checker {config.safety_checker} loads and runs")


def check_mask_models(config: BotConfig) -> Check:
    """Load the models of masks from words as the engine does (it loads them on the first
    mask_prompt) and let them look at one picture."""
    from PIL import Image

    from engine.errors import ModelLoadError
    from engine.masks.words import Match, WordModels
    from engine.models import resolve_device

    detector, segmenter = config.mask_detector, config.mask_segmenter
    if detector is None or segmenter is None:
        return Check(
            "warn", "masks", "INPAINTBOT_MASK_DETECTOR or _SEGMENTER is none: mask_prompt is turned off"
        )
    models = WordModels(detector, segmenter, resolve_device(config.device))
    try:
        models.load()
    except ModelLoadError as exc:
        return Check("FAIL", "masks", str(exc))  # word for word what a mask_prompt job would say
    picture = Image.new("RGB", (64, 64), (128, 128, 128))
    try:
        models.segment(picture, models.detect(picture, "a thing")[:1] or [Match((8, 8, 56, 56), 1.0)])
    except Exception as exc:
        return Check(
            "FAIL",
            "masks",
            f"the models for masks from words load but fail on a picture ({exc}); mask_prompt jobs "
            "would fail. Set INPAINTBOT_MASK_DETECTOR=none to turn mask_prompt off.",
        )
    return Check("ok", "masks", f"masks from words: {detector} and {segmenter} load and run")
