"""Checks of what the bot reaches over the network: Redis's GPU workers, the painter's public
address and Discord, whose answer gives the invite URL."""

from __future__ import annotations

import base64
import binascii

from bot.check.result import Check, Status
from bot.config import BotConfig

TOKEN_REFUSED = "Discord refused DISCORD_TOKEN; reset it on the application's Bot page and copy it again"
PAINTER_TIMEOUT = 10.0  # seconds the painter's public address may take to answer


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


def application_id_from_token(token: str) -> str | None:
    """A bot token starts with its bot's user id in base64, which is the application id."""
    head = token.split(".", 1)[0]
    try:
        decoded = base64.b64decode(head + "=" * (-len(head) % 4), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded if decoded.isdigit() else None


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
