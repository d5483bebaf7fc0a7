"""``inpaintbot check``: is this installation ready to run the bot?

Checks, in order, what ``inpaintbot run`` needs: the configuration, the data directory, the database,
the device, the model(s), the ControlNets, the painter's public address and the Discord token, then
prints the invite URL. One line per check, ``ok``, ``warn`` or ``FAIL`` and what was found, so an
operator fixes everything in one pass; the exit status is 1 when anything failed. The database is
read, not migrated; the token is never printed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from bot.config import BotConfig

EXIT_FAILED = 1
TOKEN_REFUSED = "Discord refused DISCORD_TOKEN; reset it on the application's Bot page and copy it again"
GIB = 1024**3
# Below this much free GPU memory even an SD1.x model in fp16 is tight (README: VRAM guidance).
LOW_VRAM_BYTES = 4 * GIB
PAINTER_TIMEOUT = 10.0  # seconds the painter's public address may take to answer

Status = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class Check:
    status: Status
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4} {self.name}: {self.detail}"


def describe_config_error(error: ValidationError) -> str:
    """One line naming each bad variable as the operator wrote it; the input is left out (it may be
    the token)."""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]).upper() if item["loc"] else ""
        name = field if field == "DISCORD_TOKEN" else f"INPAINTBOT_{field}"
        problems.append(f"{name}: {item['msg']}")
    return "; ".join(problems)


def application_id_from_token(token: str) -> str | None:
    """A bot token starts with its bot's user id in base64, which is the application id."""
    head = token.split(".", 1)[0]
    try:
        decoded = base64.b64decode(head + "=" * (-len(head) % 4), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded if decoded.isdigit() else None


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


def check_data_dir(config: BotConfig) -> Check:
    """The bot writes its database and pictures here; in Docker a volume owned by another user is the
    usual mistake."""
    for folder in (config.data_dir, config.images_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            return Check("FAIL", "data", f"cannot write to {folder.resolve()}: {exc.strerror or exc}")
    return Check("ok", "data", f"{config.data_dir.resolve()} is writable")


async def check_database(config: BotConfig) -> Check:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from bot.store.database import create_engine
    from bot.store.migrate import alembic_config

    shown = make_url(config.database_url).render_as_string(hide_password=True)
    try:
        scripts = ScriptDirectory.from_config(alembic_config(config.database_url))
    except FileNotFoundError as exc:
        return Check("FAIL", "database", str(exc))
    head = scripts.get_current_head()
    engine = None
    try:
        engine = create_engine(config.database_url)
        async with engine.connect() as connection:
            current = await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    except ImportError as exc:
        return Check("FAIL", "database", f"cannot open {shown}: {exc}; install the database's driver")
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return Check("FAIL", "database", f"cannot open {shown}: {reason}")
    finally:
        if engine is not None:
            await engine.dispose()
    if current == head:
        return Check("ok", "database", f"{shown} is at the newest revision {head}")
    if current is None:
        return Check("ok", "database", f"{shown} is new; the bot creates its tables when it starts")
    try:
        scripts.get_revision(current)
    except CommandError:
        return Check(
            "FAIL",
            "database",
            f"{shown} is at revision {current}, which this version of inpaintbot does not know: it was "
            "written by a newer version. Run that version, or restore the backup taken before the upgrade.",
        )
    return Check(
        "ok",
        "database",
        f"{shown} is at revision {current}; the bot migrates it to {head} when it starts "
        "(or run `inpaintbot db upgrade`)",
    )


async def check_workers(config: BotConfig) -> Check:
    """With GPU workers through Redis: is the server reachable, and which workers are connected now."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    from bot.queue.streams import Keys, connected_workers, masked_url

    assert config.redis_url is not None
    url = config.redis_url.get_secret_value()
    redis = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        workers = await connected_workers(redis, Keys(config.redis_prefix))
    except (RedisError, OSError, ValueError) as exc:
        return Check("FAIL", "workers", f"cannot reach Redis at {masked_url(url)}: {exc}")
    finally:
        await redis.aclose()
    own = " and this bot's GPU" if config.local_worker else ""
    if not workers:
        status: Status = "ok" if config.local_worker else "warn"
        return Check(status, "workers", f"Redis at {masked_url(url)}; no GPU worker connected{own}")
    listed = ", ".join(
        f"{info.name} ({info.slots} slots, {info.version}, models: {', '.join(info.models)})"
        for info in workers
    )
    return Check("ok", "workers", f"Redis at {masked_url(url)}; connected: {listed}{own}")


def check_device(config: BotConfig) -> Check:
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        free, total = torch.cuda.mem_get_info()
        detail = f"cuda: {name}, {free / GIB:.1f} of {total / GIB:.1f} GiB free"
        if config.device == "cpu":
            return Check("warn", "device", f"cpu, as INPAINTBOT_DEVICE says, although there is {detail}")
        if free < LOW_VRAM_BYTES:
            return Check(
                "warn", "device", f"{detail}: SD1.x models need about 3-4 GB, SDXL about 8-10 GB"
            )
        return Check("ok", "device", detail)
    if torch.version.cuda is None:
        why = f"this PyTorch ({torch.__version__}) is a CPU-only build"
    else:
        why = (
            f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU: is the NVIDIA driver "
            "installed, and in Docker, does the container have a GPU (compose's device reservation)?"
        )
    if config.device == "cuda":
        return Check("FAIL", "device", f"INPAINTBOT_DEVICE is cuda, but {why}")
    if config.device == "cpu":
        return Check("warn", "device", "cpu, as INPAINTBOT_DEVICE says: each job takes minutes")
    return Check("warn", "device", f"no CUDA GPU, so the CPU (each job takes minutes): {why}")


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


async def check_painter(config: BotConfig) -> Check:
    """Members reach the painter at INPAINTBOT_PUBLIC_URL, through the operator's proxy or tunnel:
    the check serves the page's health answer on INPAINTBOT_WEB_PORT (unless the running bot does
    already) and asks for it at the public address, the way a member's browser would."""
    if config.public_url is None:
        return Check("ok", "painter", "off: set INPAINTBOT_PUBLIC_URL to offer the mask painter")
    import aiohttp
    from aiohttp import web

    from bot.web.app import HEALTH_TEXT, base_app

    url = f"{config.public_url}/health"
    where = f"{config.web_host}:{config.web_port}"
    runner = web.AppRunner(base_app(), access_log=None)
    await runner.setup()
    taken = ""
    try:
        try:
            await web.TCPSite(runner, config.web_host, config.web_port).start()
        except OSError as exc:
            taken = f" ({where} is in use, by the running bot or another program: {exc.strerror})"
        try:
            timeout = aiohttp.ClientTimeout(total=PAINTER_TIMEOUT)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as answer:
                status, text = answer.status, await answer.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            return Check(
                "FAIL",
                "painter",
                f"nothing answers at {url}: {reason}{taken}; point your reverse proxy or tunnel at "
                f"{where} (README: The mask painter)",
            )
    finally:
        await runner.cleanup()
    if status != 200 or text != HEALTH_TEXT:
        return Check(
            "FAIL",
            "painter",
            f"{url} answered {status} but not as the painter{taken}; point your reverse proxy or "
            f"tunnel at {where}",
        )
    return Check("ok", "painter", f"{config.public_url} reaches the painter served on {where}")


async def check_discord(config: BotConfig, token: str) -> tuple[Check, str | None]:
    """Log in over REST (no gateway connection): Discord itself says whether the token is good.
    Returns the check and the application id."""
    import aiohttp
    import discord

    from bot.client import point_at_discord

    point_at_discord(config)
    client = discord.Client(intents=discord.Intents.none())
    try:
        await client.login(token)
        application = await client.application_info()
        user = str(client.user)
    except discord.LoginFailure:
        return Check("FAIL", "discord", TOKEN_REFUSED), None
    except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
        return Check("FAIL", "discord", f"cannot reach Discord: {exc}"), None
    finally:
        await client.close()
    application_id = str(application.id)
    if application.interactions_endpoint_url:
        return Check(
            "FAIL",
            "discord",
            "the application has an Interactions Endpoint URL set in the developer portal, so slash "
            "commands go there instead of to the bot: clear it",
        ), application_id
    return Check("ok", "discord", f"logged in as {user} (application {application_id})"), application_id


def invite_check(application_id: str | None) -> Check:
    from bot.client import PERMISSIONS, SCOPES, invite_url

    if application_id is None:
        return Check(
            "FAIL",
            "invite",
            f"no application id without a good token; use {invite_url('APPLICATION_ID')} with the "
            "Application ID from the developer portal's General Information page",
        )
    permissions = ", ".join(name.replace("_", " ").title() for name, value in PERMISSIONS if value)
    return Check(
        "ok",
        "invite",
        f"{invite_url(application_id)} (scopes {' '.join(SCOPES)}; permissions {permissions})",
    )


async def print_checks(load_config: Callable[[], BotConfig] = BotConfig) -> int:
    """``inpaintbot check``: print each result as it comes; the exit status."""
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    failed = False
    async for check in run_checks(load_config):
        print(check.line(), flush=True)
        failed = failed or check.status == "FAIL"
    return EXIT_FAILED if failed else 0
