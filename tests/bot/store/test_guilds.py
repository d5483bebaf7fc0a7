from bot.store import guilds, presets
from bot.store.database import Store
from bot.store.models import NsfwPolicy
from engine.settings import InpaintSettings


async def test_unknown_guild_gets_defaults(store: Store) -> None:
    settings = await guilds.get_guild_settings(store, 5)
    assert (settings.allowed_channel_ids, settings.max_jobs_per_user, settings.default_preset_id) == (
        [],
        None,
        None,
    )
    assert settings.nsfw_policy is NsfwPolicy.BLOCK
    assert settings.allows_channel(123)


async def test_update_changes_only_what_is_given(store: Store) -> None:
    await guilds.update_guild_settings(store, 5, allowed_channel_ids=[3, 1, 3], max_jobs_per_user=2)
    await guilds.update_guild_settings(store, 5, nsfw_policy=NsfwPolicy.SPOILER)
    settings = await guilds.get_guild_settings(store, 5)
    assert (settings.allowed_channel_ids, settings.max_jobs_per_user) == ([1, 3], 2)
    assert settings.nsfw_policy is NsfwPolicy.SPOILER
    assert settings.allows_channel(3) and not settings.allows_channel(2)
    await guilds.update_guild_settings(store, 5, max_jobs_per_user=None)
    assert (await guilds.get_guild_settings(store, 5)).max_jobs_per_user is None


async def test_deleting_the_default_preset_clears_it(store: Store) -> None:
    preset = await presets.save_preset(store, 1, "house style", InpaintSettings(), max_per_user=5)
    await guilds.update_guild_settings(store, 5, default_preset_id=preset.id)
    assert (await guilds.get_guild_settings(store, 5)).default_preset_id == preset.id
    await presets.delete_preset(store, 1, "house style")
    assert (await guilds.get_guild_settings(store, 5)).default_preset_id is None
