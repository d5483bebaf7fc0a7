"""Presets: named settings a user saves and reuses, validated by the engine's settings type."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from bot.errors import PresetError
from bot.store.database import Store
from bot.store.jobs import ensure_user
from bot.store.models import Preset
from engine.errors import SettingsError
from engine.settings import InpaintSettings

MAX_NAME_LENGTH = 64


def _clean_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise PresetError(f"A preset name must be 1 to {MAX_NAME_LENGTH} characters long.")
    return name


async def save_preset(
    store: Store, user_id: int, name: str, settings: InpaintSettings, *, max_per_user: int
) -> Preset:
    """Create or replace the preset ``name``. Only the settings the user set are kept, so a preset
    keeps following the defaults it did not pin (and does not pin a random seed)."""
    name = _clean_name(name)
    values = settings.model_dump(mode="json", exclude_unset=True)
    async with store.sessions.begin() as session:
        await ensure_user(session, user_id)
        preset = await session.scalar(
            select(Preset).where(Preset.user_id == user_id, Preset.name == name)
        )
        if preset is not None:
            preset.settings = values
            return preset
        count = await session.scalar(select(func.count()).where(Preset.user_id == user_id)) or 0
        if count >= max_per_user:
            raise PresetError(
                f"You have {count} presets, the most one user may keep ({max_per_user}). "
                "Delete one or save under an existing name."
            )
        preset = Preset(user_id=user_id, name=name, settings=values)
        session.add(preset)
    return preset


async def get_preset(store: Store, user_id: int, name: str) -> Preset:
    async with store.sessions() as session:
        preset = await session.scalar(
            select(Preset).where(Preset.user_id == user_id, Preset.name == name.strip())
        )
    if preset is None:
        raise PresetError(f"You have no preset called {name.strip()!r}.")
    return preset


async def list_presets(store: Store, user_id: int) -> list[Preset]:
    async with store.sessions() as session:
        return list(
            await session.scalars(select(Preset).where(Preset.user_id == user_id).order_by(Preset.name))
        )


async def delete_preset(store: Store, user_id: int, name: str) -> bool:
    async with store.sessions.begin() as session:
        result = await session.execute(
            delete(Preset).where(Preset.user_id == user_id, Preset.name == name.strip())
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


def preset_settings(preset: Preset, **overrides: object) -> InpaintSettings:
    """The preset's settings with the user's explicit values on top (``None`` = keep the preset's)."""
    values = {**preset.settings, **{key: value for key, value in overrides.items() if value is not None}}
    try:
        return InpaintSettings.parse(**values)
    except SettingsError as exc:
        raise PresetError(
            f"The preset {preset.name!r} no longer fits the current settings: {exc}"
        ) from None
