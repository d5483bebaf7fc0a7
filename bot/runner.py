"""``inpaintbot run``: the one place the engine, the queue, the store and the client meet."""

from __future__ import annotations

from bot.client import InpaintBot, point_at_discord
from bot.config import BotConfig


async def build_bot(config: BotConfig, **options: float) -> InpaintBot:
    """Migrate the database, then build the engine, the queue and the bot (the model loads when the
    bot starts, in ``setup_hook``). With ``redis_url`` jobs go to GPU workers through Redis, the bot's
    own GPU being one of them unless ``local_worker`` is off."""
    from bot.queue.local import LocalJobQueue
    from bot.store.database import open_store
    from engine.engine import Engine
    from engine.safety import safety_checker

    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = await open_store(config)
    engine = Engine(config)
    safety = safety_checker(config, engine.models.device, engine.models.dtype)
    if config.redis_url is None:
        return InpaintBot(config, LocalJobQueue(engine, store, config, safety=safety), store, **options)
    from redis.asyncio import Redis

    from bot.queue.remote import RemoteJobQueue
    from bot.worker import Worker

    redis = Redis.from_url(config.redis_url.get_secret_value())
    local = Worker(engine, config, redis, safety=safety) if config.local_worker else None
    queue = RemoteJobQueue(engine, store, config, redis, local=local)
    return InpaintBot(config, queue, store, **options)


async def run_bot(config: BotConfig) -> None:
    """Until the connection ends or the process is interrupted."""
    if config.discord_token is None:
        raise ValueError("run_bot needs config.discord_token")
    point_at_discord(config)
    bot = await build_bot(config)
    try:
        async with bot:
            await bot.start(config.discord_token.get_secret_value())
    finally:
        await bot.queue.close()
        await bot.store.close()
