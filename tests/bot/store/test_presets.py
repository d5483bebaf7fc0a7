import pytest

from bot.errors import PresetError
from bot.store import presets
from bot.store.database import Store
from engine.errors import SettingsError
from engine.settings import InpaintSettings, Sampler


async def test_save_load_and_apply_overrides(store: Store) -> None:
    await presets.save_preset(
        store, 1, "portrait", InpaintSettings.parse(steps=40, sampler="ddim"), max_per_user=5
    )
    preset = await presets.get_preset(store, 1, " portrait ")
    assert preset.settings == {
        "steps": 40,
        "sampler": "ddim",
    }  # only what was set: defaults keep following
    settings = presets.preset_settings(preset, steps=None, prompt="a hat")
    assert (settings.steps, settings.sampler, settings.prompt) == (40, Sampler.DDIM, "a hat")


async def test_saving_under_an_existing_name_replaces_it(store: Store) -> None:
    await presets.save_preset(store, 1, "p", InpaintSettings.parse(steps=10), max_per_user=1)
    await presets.save_preset(store, 1, "p", InpaintSettings.parse(steps=20), max_per_user=1)
    assert [(p.name, p.settings) for p in await presets.list_presets(store, 1)] == [("p", {"steps": 20})]


async def test_names_are_per_user_and_capped(store: Store) -> None:
    for name in ("b", "a"):
        await presets.save_preset(store, 1, name, InpaintSettings(), max_per_user=2)
    await presets.save_preset(store, 2, "a", InpaintSettings(), max_per_user=2)
    with pytest.raises(PresetError, match=r"\(2\)"):
        await presets.save_preset(store, 1, "c", InpaintSettings(), max_per_user=2)
    assert [p.name for p in await presets.list_presets(store, 1)] == ["a", "b"]


async def test_delete_and_unknown_names(store: Store) -> None:
    await presets.save_preset(store, 1, "p", InpaintSettings(), max_per_user=5)
    assert await presets.delete_preset(store, 1, "p")
    assert not await presets.delete_preset(store, 1, "p")
    with pytest.raises(PresetError, match="no preset called 'p'"):
        await presets.get_preset(store, 1, "p")
    with pytest.raises(PresetError, match="1 to 64"):
        await presets.save_preset(store, 1, "  ", InpaintSettings(), max_per_user=5)


async def test_settings_are_validated_by_the_engine_type(store: Store) -> None:
    with pytest.raises(SettingsError):
        InpaintSettings.parse(steps=500)
    preset = await presets.save_preset(store, 1, "p", InpaintSettings(), max_per_user=5)
    preset.settings = {"steps": 500}  # e.g. stored by an older version with other ranges
    with pytest.raises(PresetError, match="no longer fits"):
        presets.preset_settings(preset)
