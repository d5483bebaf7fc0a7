"""JSON builders for the Discord objects the fake sends and returns.

Each builder fills every field discord.py reads without a default; a missing one makes the client
drop an event silently (see the `discord.md` reference), so keep them complete.
"""

import itertools
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import discord

JSON = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000
# Message flags the fake sets itself.
EPHEMERAL = 64
LOADING = 128
# Application command option types the fake can infer from a Python value.
SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN, NUMBER, ATTACHMENT = 1, 2, 3, 4, 5, 10, 11
CHANNEL = 7
PUBLIC_THREAD, PRIVATE_THREAD = 11, 12  # channel types
THREADS = (PUBLIC_THREAD, PRIVATE_THREAD)
DM = 1  # channel type
ROLE, MEMBER = 0, 1  # permission overwrite types
# Application command permission types, and the "every channel" target (the guild id minus 1).
COMMAND_ROLE, COMMAND_USER, COMMAND_CHANNEL = 1, 2, 3

MEMBER_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    read_message_history=True,
    add_reactions=True,
    attach_files=True,
    embed_links=True,
    use_external_emojis=True,
    use_application_commands=True,
)
BOT_PERMISSIONS = MEMBER_PERMISSIONS | discord.Permissions(manage_messages=True)

_counter = itertools.count()


def snowflake() -> str:
    """A fresh id that encodes the current time, so `Interaction.expires_at` and friends are right."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return str((ms << 22) | (next(_counter) & 0x3FFFFF))


def now() -> str:
    return datetime.now(UTC).isoformat()


def user(username: str, *, bot: bool = False) -> JSON:
    return {
        "id": snowflake(),
        "username": username,
        "global_name": None if bot else username.title(),
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


def role(guild_id: str, name: str, permissions: discord.Permissions, *, everyone: bool = False) -> JSON:
    """`everyone=True` gives the @everyone role, whose id is the guild's."""
    return {
        "id": guild_id if everyone else snowflake(),
        "name": "@everyone" if everyone else name,
        "permissions": str(permissions.value),
        "position": 0 if everyone else 1,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def member(user: JSON, roles: Sequence[JSON] = ()) -> JSON:
    return {
        "user": user,
        "roles": [r["id"] for r in roles],
        "joined_at": now(),
        "flags": 0,
        "nick": None,
        "avatar": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "premium_since": None,
    }


def overwrite(
    target_id: str,
    *,
    kind: int = ROLE,
    allow: discord.Permissions | None = None,
    deny: discord.Permissions | None = None,
) -> JSON:
    """A channel's permission overwrite for a role (the guild id is @everyone) or a member."""
    allowed, denied = (p.value if p else 0 for p in (allow, deny))
    return {"id": target_id, "type": kind, "allow": str(allowed), "deny": str(denied)}


def command_permission(target_id: str, kind: int, allowed: bool) -> JSON:
    """An application command permission override (Server Settings > Integrations)."""
    return {"id": target_id, "type": kind, "permission": allowed}


def text_channel(
    guild_id: str, name: str, position: int, *, nsfw: bool = False, overwrites: Sequence[JSON] = ()
) -> JSON:
    """`nsfw`: age-restricted; `overwrites`: its permission overwrites (see `overwrite`)."""
    return {
        "id": snowflake(),
        "type": 0,
        "guild_id": guild_id,
        "name": name,
        "position": position,
        "permission_overwrites": list(overwrites),
        "nsfw": nsfw,
        "parent_id": None,
        "topic": None,
        "rate_limit_per_user": 0,
        "last_message_id": None,
        "flags": 0,
    }


def thread(parent: JSON, name: str, owner_id: str, *, private: bool = False) -> JSON:
    """A public (or private) thread in a text channel; GUILD_CREATE lists it under `threads`."""
    return {
        "id": snowflake(),
        "type": PRIVATE_THREAD if private else PUBLIC_THREAD,
        "guild_id": parent["guild_id"],
        "parent_id": parent["id"],
        "owner_id": owner_id,
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": now(),
            "locked": False,
        },
    }


def dm_channel(recipient: JSON) -> JSON:
    """The direct-message channel between the bot and `recipient` (a user payload)."""
    return {
        "id": snowflake(),
        "type": DM,
        "recipients": [recipient],
        "last_message_id": None,
        "flags": 0,
    }


def guild(
    guild_id: str, owner_id: str, roles: list[JSON], channels: list[JSON], members: list[JSON]
) -> JSON:
    """The full GUILD_CREATE payload; the client caches channels, roles and members from it."""
    return {
        "id": guild_id,
        "name": "Fake Guild",
        "owner_id": owner_id,
        "unavailable": False,
        "large": False,
        "member_count": len(members),
        "joined_at": now(),
        "roles": roles,
        "channels": [c for c in channels if c["type"] not in THREADS],
        "members": members,
        "threads": [c for c in channels if c["type"] in THREADS],
        "emojis": [],
        "stickers": [],
        "features": [],
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "system_channel_id": None,
    }


def application(app_id: str, owner: JSON) -> JSON:
    return {
        "id": app_id,
        "name": "inpaintbot",
        "description": "",
        "icon": None,
        "bot_public": False,
        "bot_require_code_grant": False,
        "owner": owner,
        "verify_key": "0" * 64,
        "flags": 0,
    }


def attachment(attachment_id: str, filename: str, size: int, url: str, content_type: str | None) -> JSON:
    return {
        "id": attachment_id,
        "filename": filename,
        "size": size,
        "url": url,
        "proxy_url": url,
        "content_type": content_type,
        "ephemeral": False,
        "flags": 0,
    }


def message(channel_id: str, author: JSON, *, message_type: int = 0) -> JSON:
    """An empty message; the REST handlers fill content, files and the rest from the request."""
    return {
        "id": snowflake(),
        "channel_id": channel_id,
        "type": message_type,
        "author": author,
        "content": "",
        "attachments": [],
        "embeds": [],
        "components": [],
        "mentions": [],
        "mention_roles": [],
        "mention_everyone": False,
        "pinned": False,
        "tts": False,
        "timestamp": now(),
        "edited_timestamp": None,
        "flags": 0,
        "reactions": [],
    }


def mentioned_ids(content: str) -> list[str]:
    return re.findall(r"<@!?(\d+)>", content)


def emoji(text: str) -> JSON:
    """`🔄` for a unicode emoji, `name:id` for a custom one (the form used in reaction URLs)."""
    name, _, emoji_id = text.partition(":")
    return {"id": emoji_id or None, "name": name}


def command_options(
    path: str, options: Mapping[str, Any], definition: JSON | None, focused: str | None
) -> JSON:
    """`options` (nested for `group sub` paths) and `resolved` of a slash command's `data`.

    Option types come from the synced definition when there is one, else from the Python value
    (a dict is an attachment from `FakeDiscord.add_attachment`). Channel options take the channel's
    payload (`FakeDiscord.channel`, `add_channel`).
    """
    names = path.split()
    definitions = definition.get("options", []) if definition else []
    for name in names[1:]:
        definitions = next((d.get("options", []) for d in definitions if d["name"] == name), [])
    declared = {d["name"]: d["type"] for d in definitions}
    attachments: JSON = {}
    channels: JSON = {}
    built: list[JSON] = []
    for name, value in options.items():
        option_type = declared.get(name) or _option_type(value)
        if option_type == ATTACHMENT:
            attachments[value["id"]] = value
            value = value["id"]
        elif option_type == CHANNEL:
            channels[value["id"]] = value | {"permissions": str(MEMBER_PERMISSIONS.value)}
            value = value["id"]
        option = {"name": name, "type": option_type, "value": value}
        if name == focused:
            option["focused"] = True
        built.append(option)
    for depth in range(len(names) - 1, 0, -1):
        kind = SUB_COMMAND if depth == len(names) - 1 else SUB_COMMAND_GROUP
        built = [{"name": names[depth], "type": kind, "options": built}]
    return {"options": built, "resolved": {"attachments": attachments, "channels": channels}}


def _option_type(value: object) -> int:
    for python_type, option_type in ((bool, BOOLEAN), (int, INTEGER), (float, NUMBER), (str, STRING)):
        if isinstance(value, python_type):
            return option_type
    if isinstance(value, dict):
        return ATTACHMENT
    raise TypeError(f"cannot infer a slash command option type for {value!r}")
