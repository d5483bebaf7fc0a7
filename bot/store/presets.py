"""Presets: named settings that members save and reuse, and the order in which settings apply.

A preset belongs to a user, or (``guild_id`` set) to a server, where every member sees it. Names are
unique per owner ignoring case. A preset keeps only the values that were set, so it goes on following
the defaults it did not pin. ``resolve_settings`` layers them: command options > the named preset >
the user's default preset > the server's default preset > built-in defaults.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, select, update

from bot.errors import PresetError
from bot.store.database import Store
from bot.store.jobs import ensure_user
from bot.store.models import GuildSettings, Preset, User
from engine.errors import SettingsError
from engine.settings import InpaintSettings

MAX_NAME_LENGTH = 32
# ``server:<name>`` names this server's preset even when the member has one of that name too; the
# autocomplete gives server presets such values. Preset names cannot start with it.
SERVER_PREFIX = "server:"


class PresetExistsError(PresetError):
    """Saving would replace a preset; the caller asks for confirmation and saves with ``replace``."""

    def __init__(self, preset: Preset) -> None:
        super().__init__(f"There is already a preset called {preset.name!r}.")
        self.preset = preset


def clean_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise PresetError(f"A preset name must be 1 to {MAX_NAME_LENGTH} characters long.")
    if name.casefold().startswith(SERVER_PREFIX):
        raise PresetError(f"A preset name cannot start with `{SERVER_PREFIX}`: it marks server presets.")
    return name


def server_name(name: str) -> str | None:
    """The server preset's name in ``server:<name>``, else ``None``."""
    name = name.strip()
    return name[len(SERVER_PREFIX) :].strip() if name.casefold().startswith(SERVER_PREFIX) else None


def _owned_by(user_id: int, guild_id: int | None) -> ColumnElement[bool]:
    """A user's own presets, or (``guild_id``) that server's presets."""
    if guild_id is None:
        return and_(Preset.user_id == user_id, Preset.guild_id.is_(None))
    return Preset.guild_id == guild_id


def _described(name: str, guild_id: int | None) -> str:
    return f"server preset {name!r}" if guild_id is not None else f"preset {name!r}"


async def save_preset(
    store: Store,
    user_id: int,
    name: str,
    settings: InpaintSettings,
    *,
    max_per_user: int,
    guild_id: int | None = None,
    replace: bool = False,
) -> Preset:
    """Save ``settings`` as the user's preset (or, with ``guild_id``, the server's) called ``name``.

    An existing preset of that name is only replaced with ``replace``; otherwise ``PresetExistsError``.
    """
    name = clean_name(name)
    values = settings.model_dump(mode="json", exclude_unset=True)
    async with store.sessions.begin() as session:
        await ensure_user(session, user_id)
        owner = _owned_by(user_id, guild_id)
        preset = await session.scalar(select(Preset).where(owner, Preset.name_key == name.casefold()))
        if preset is not None:
            if not replace:
                session.expunge(preset)  # keeps its loaded values through the rollback
                raise PresetExistsError(preset)
            preset.name, preset.settings = name, values
            return preset
        count = await session.scalar(select(func.count()).where(owner)) or 0
        if count >= max_per_user:
            whose = "This server has" if guild_id is not None else "You have"
            raise PresetError(
                f"{whose} {count} presets, the most allowed ({max_per_user}). "
                "Delete one or save under an existing name."
            )
        preset = Preset(
            user_id=user_id, guild_id=guild_id, name=name, name_key=name.casefold(), settings=values
        )
        session.add(preset)
    return preset


async def get_preset(store: Store, user_id: int, name: str, *, guild_id: int | None = None) -> Preset:
    """The user's own preset ``name`` or, with ``guild_id``, that server's (``server:`` optional)."""
    name = name.strip()
    if guild_id is not None:
        name = server_name(name) or name
    async with store.sessions() as session:
        preset = await session.scalar(
            select(Preset).where(_owned_by(user_id, guild_id), Preset.name_key == name.casefold())
        )
    if preset is None:
        where = "This server has" if guild_id is not None else "You have"
        raise PresetError(f"{where} no preset called {name!r}.")
    return preset


async def find_preset(store: Store, user_id: int, guild_id: int | None, name: str) -> Preset:
    """What ``preset:name`` means to this member here: their own preset first, then the server's;
    ``server:<name>`` is the server's."""
    if server_name(name) is not None:
        if guild_id is None:
            raise PresetError("Server presets belong to a server: use them there.")
        return await get_preset(store, user_id, name, guild_id=guild_id)
    try:
        return await get_preset(store, user_id, name)
    except PresetError:
        if guild_id is None:
            raise
    try:
        return await get_preset(store, user_id, name, guild_id=guild_id)
    except PresetError:
        raise PresetError(
            f"You have no preset called {name.strip()!r}, and neither does this server. "
            "`/preset list` shows the ones you can use."
        ) from None


async def list_presets(store: Store, user_id: int, *, guild_id: int | None = None) -> list[Preset]:
    """The user's own presets or (``guild_id``) that server's, by name."""
    async with store.sessions() as session:
        return list(
            await session.scalars(
                select(Preset).where(_owned_by(user_id, guild_id)).order_by(Preset.name_key)
            )
        )


async def visible_presets(store: Store, user_id: int, guild_id: int | None) -> list[Preset]:
    """Every preset the member may name here: their own, then the server's."""
    mine = await list_presets(store, user_id)
    return mine + (await list_presets(store, user_id, guild_id=guild_id) if guild_id else [])


async def delete_preset(store: Store, user_id: int, name: str, *, guild_id: int | None = None) -> bool:
    async with store.sessions.begin() as session:
        result = await session.execute(
            delete(Preset).where(
                _owned_by(user_id, guild_id), Preset.name_key == name.strip().casefold()
            )
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


async def set_default_preset(store: Store, user_id: int, preset: Preset | None) -> None:
    """The preset applied under every job of this user (``None`` clears it)."""
    async with store.sessions.begin() as session:
        await ensure_user(session, user_id)
        await session.execute(
            update(User)
            .where(User.id == user_id)
            .values(default_preset_id=preset.id if preset else None)
        )


async def default_preset(store: Store, user_id: int) -> Preset | None:
    async with store.sessions() as session:
        return await session.scalar(
            select(Preset).join(User, User.default_preset_id == Preset.id).where(User.id == user_id)
        )


async def resolve_settings(
    store: Store,
    *,
    user_id: int,
    guild: GuildSettings | None,
    preset: str | None,
    options: dict[str, Any],
    leave_out: Collection[str] = (),
) -> InpaintSettings:
    """The settings of a new job: ``options`` (``None`` = not given) over the named preset, over the
    user's default preset, over the server's default preset (``guild``: the server's settings, as
    the caller already read them; ``None`` in direct messages), over the built-in defaults. The
    presets' ``leave_out`` settings are not taken: those the command has no use for."""
    guild_id = guild.guild_id if guild is not None else None
    layers: list[Preset] = []
    if guild is not None and guild.default_preset_id is not None:
        async with store.sessions() as session:
            server_default = await session.get(Preset, guild.default_preset_id)
        layers += [server_default] if server_default else []
    user_default = await default_preset(store, user_id)
    # A default that is another server's preset does not follow the user here.
    if user_default is not None and user_default.guild_id in (None, guild_id):
        layers.append(user_default)
    if preset is not None:
        layers.append(await find_preset(store, user_id, guild_id, preset))
    for layer in layers:  # a preset saved by an older version may no longer validate: say which
        _validated(layer)
    values: dict[str, Any] = {}
    for layer in layers:
        values.update({key: value for key, value in layer.settings.items() if key not in leave_out})
    values.update({key: value for key, value in options.items() if value is not None})
    return InpaintSettings.parse(**values)


def _validated(preset: Preset) -> InpaintSettings:
    try:
        return InpaintSettings.parse(**preset.settings)
    except SettingsError as exc:
        raise PresetError(
            f"The {_described(preset.name, preset.guild_id)} no longer fits the current settings: {exc}"
        ) from None
