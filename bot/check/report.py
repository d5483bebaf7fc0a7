"""The report ``inpaintbot check`` prints: every check in order, each line as soon as it is known."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from pydantic import ValidationError

from bot.check.machine import check_data_dir, check_database, check_device
from bot.check.models import (
    check_controlnets,
    check_mask_models,
    check_model,
    check_other_models,
    check_safety_checker,
)
from bot.check.result import Check
from bot.check.services import (
    application_id_from_token,
    check_discord,
    check_painter,
    check_workers,
    invite_check,
)
from bot.config import BotConfig, describe_config_error

EXIT_FAILED = 1


async def run_checks(load_config: Callable[[], BotConfig] = BotConfig) -> AsyncIterator[Check]:
    """Every check in order, each as soon as it is done (loading a model can take minutes)."""
    try:
        config = load_config()
    except ValidationError as exc:
        yield Check("FAIL", "config", describe_config_error(exc))
        return
    source = "the environment and .env" if Path(".env").is_file() else "the environment (no .env here)"
    yield Check("ok", "config", f"read from {source}")
    token = config.discord_token.get_secret_value() if config.discord_token else None
    yield (
        Check("ok", "token", "DISCORD_TOKEN is set")
        if token
        else Check(
            "FAIL",
            "token",
            "DISCORD_TOKEN is not set: create the bot at https://discord.com/developers/applications "
            "(README: Create the Discord application)",
        )
    )
    yield check_data_dir(config)
    yield await check_database(config)
    if config.redis_url is not None:
        yield await check_workers(config)
    device = check_device(config)
    yield device
    if device.status == "FAIL":
        yield Check("FAIL", "model", "not loaded: the device is not usable")
    else:
        model = await asyncio.to_thread(check_model, config)
        yield model
        if config.models:
            yield await asyncio.to_thread(check_other_models, config)
        if model.status != "FAIL":
            yield await asyncio.to_thread(check_controlnets, config)
        yield await asyncio.to_thread(check_safety_checker, config)
        yield await asyncio.to_thread(check_mask_models, config)
    yield await check_painter(config)
    application_id = None
    if token:
        discord_check, application_id = await check_discord(config, token)
        yield discord_check
        application_id = application_id or application_id_from_token(token)
    yield invite_check(application_id)


async def print_checks(load_config: Callable[[], BotConfig] = BotConfig) -> int:
    """``inpaintbot check``: print each result as it comes; the exit status."""
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    failed = False
    async for check in run_checks(load_config):
        print(check.line(), flush=True)
        failed = failed or check.status == "FAIL"
    return EXIT_FAILED if failed else 0
