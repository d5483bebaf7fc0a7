"""The REST routes the bot calls, answered the way Discord answers them (errors included).

Handlers get the `FakeDiscord` (its state), the request and its parsed body; `FakeDiscord._serve`
wraps them to apply the upload limit, turn `DiscordError` into Discord's error JSON and record them.
"""

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import payloads
from .payloads import EPHEMERAL, JSON, LOADING
from .recording import Body, UploadedFile

if TYPE_CHECKING:
    from .server import FakeDiscord, FakeInteraction

# Interaction callback types (https://discord.com/developers/docs/interactions/receiving-and-responding).
MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 4, 5, 6, 7
APPLICATION_COMMAND = 2
REPLY, CHAT_INPUT_COMMAND = 19, 20


class DiscordError(Exception):
    """Raised by handlers; the server answers it with Discord's `{"code", "message"}` error body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message


def json_response(data: Any, status: int = 200) -> web.Response:
    """Content-Type exactly `application/json`: discord.py treats anything else (even with
    `; charset=utf-8`, as aiohttp's `json_response` sends) as text, and login hangs."""
    body = json.dumps(data).encode()
    return web.Response(status=status, body=body, headers={"Content-Type": "application/json"})


Handler = Callable[["FakeDiscord", web.Request, Body], Awaitable[web.Response]]


async def get_me(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    """Login: another token than the fake's is refused, as Discord refuses a wrong or reset one."""
    if request.headers.get("Authorization") != f"Bot {fake.token}":
        raise DiscordError(401, 0, "401: Unauthorized")
    return json_response(fake.bot_user)


async def get_application(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    return json_response(payloads.application(fake.app_id, fake.owner["user"]))


async def put_commands(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    """A server the bot is not in refuses its commands, as Discord does (403 Missing Access)."""
    guild_id = request.match_info.get("guild_id")
    if guild_id is not None and guild_id != fake.guild_id:
        raise DiscordError(403, 50001, "Missing Access")
    scope = {"application_id": fake.app_id, "version": payloads.snowflake()}
    if guild_id:
        scope["guild_id"] = guild_id
    fake.commands[guild_id] = [{**command, "id": payloads.snowflake(), **scope} for command in body.json]
    return json_response(fake.commands[guild_id])


async def get_commands(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    return json_response(fake.commands.get(request.match_info.get("guild_id"), []))


async def callback(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    it = fake.interactions.get(request.match_info["token"])
    if it is None or it.expired or it.id != request.match_info["interaction_id"]:
        raise DiscordError(404, 10062, "Unknown interaction")
    if it.responded:
        raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
    it.responded = True
    response_type, data = body.json["type"], body.json.get("data") or {}
    message = None
    if response_type in (MESSAGE, DEFERRED_MESSAGE):
        message_type = CHAT_INPUT_COMMAND if it.type == APPLICATION_COMMAND else 0
        message = _apply(fake, _interaction_message(fake, it, message_type), data, body.files)
        if response_type == DEFERRED_MESSAGE:
            message["flags"] |= LOADING
        it.original_id = message["id"]
    elif response_type in (DEFERRED_UPDATE, UPDATE_MESSAGE):
        it.original_id = it.payload["message"]["id"]
        if response_type == UPDATE_MESSAGE:
            message = _apply(fake, fake.message(it.original_id), data, body.files)
    resource: JSON = {"type": response_type}
    if response_type in (MESSAGE, UPDATE_MESSAGE):
        resource["message"] = message
    interaction = {
        "id": it.id,
        "type": it.type,
        "response_message_id": it.original_id,
        "response_message_loading": response_type == DEFERRED_MESSAGE,
        "response_message_ephemeral": bool(data.get("flags", 0) & EPHEMERAL),
    }
    return json_response({"interaction": interaction, "resource": resource})


async def followup(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    it = _webhook_interaction(fake, request)
    original = fake.messages.get(it.original_id or "")
    if original is not None and original["flags"] & LOADING:
        # Like Discord: the first followup after a deferral replaces the "is thinking..." message.
        message = _apply(fake, original, body.json, body.files)
    else:
        message = _apply(fake, _interaction_message(fake, it, 0), body.json, body.files)
    if request.query.get("wait") in ("1", "true"):
        return json_response(message)
    return web.Response(status=204)


async def get_webhook_message(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    return json_response(fake.message(_webhook_message_id(fake, request)))


async def edit_webhook_message(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    message = fake.message(_webhook_message_id(fake, request))
    return json_response(_apply(fake, message, body.json, body.files))


async def delete_webhook_message(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    fake.messages.pop(fake.message(_webhook_message_id(fake, request))["id"])
    return web.Response(status=204)


async def get_channel(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    return json_response(_channel(fake, request))


async def post_message(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    channel_id = _channel(fake, request)["id"]
    if channel_id in fake.forbidden_channels:
        raise DiscordError(403, 50013, "Missing Permissions")
    message = payloads.message(channel_id, fake.bot_user)
    if reference := body.json.get("message_reference"):
        referenced = fake.messages.get(str(reference["message_id"]))
        if referenced is None and reference.get("fail_if_not_exists", True):
            raise DiscordError(400, 50035, "Invalid Form Body (message_reference: Unknown message)")
        message["type"] = REPLY
        message["message_reference"] = {
            "type": 0,
            "message_id": str(reference["message_id"]),
            "channel_id": str(reference.get("channel_id", channel_id)),
            "guild_id": fake.guild_id,
        }
        message["referenced_message"] = referenced and {
            k: v for k, v in referenced.items() if k != "referenced_message"
        }
    return json_response(_apply(fake, message, body.json, body.files))


async def get_message(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    return json_response(_channel_message(fake, request))


async def edit_message(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    message = _channel_message(fake, request)
    return json_response(_apply(fake, message, body.json, body.files))


async def delete_message(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    fake.messages.pop(_channel_message(fake, request)["id"])
    return web.Response(status=204)


async def create_dm(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    return json_response(fake.dm_with(str(body.json["recipient_id"])))


async def add_reaction(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    """Adds the bot's reaction and, like Discord, echoes MESSAGE_REACTION_ADD back to the bot."""
    await fake.react(_channel_message(fake, request), request.match_info["emoji"], user=fake.bot_member)
    return web.Response(status=204)


async def get_thread_member(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    thread = _channel(fake, request)
    user_id = request.match_info["user_id"]
    if thread["type"] not in payloads.THREADS:
        raise DiscordError(400, 50024, "Cannot execute action on this channel type")
    if user_id not in fake.thread_members.get(thread["id"], set()):
        raise DiscordError(404, 10007, "Unknown Member")
    return json_response(
        {"id": thread["id"], "user_id": user_id, "join_timestamp": payloads.now(), "flags": 0}
    )


async def get_member(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    """A guild member (the bot has no members intent, so it asks for the ones it needs)."""
    member = fake.members.get(request.match_info["user_id"])
    if request.match_info["guild_id"] != fake.guild_id or member is None:
        raise DiscordError(404, 10007, "Unknown Member")
    return json_response(member)


async def get_command_permissions(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    """Every command's overrides in the guild, the application-wide ones under the application's id."""
    guild_id = request.match_info["guild_id"]
    if guild_id != fake.guild_id:
        raise DiscordError(403, 50001, "Missing Access")
    return json_response(
        [
            {"id": command_id, "application_id": fake.app_id, "guild_id": guild_id, "permissions": p}
            for command_id, p in fake.command_permissions.items()
        ]
    )


async def leave_guild(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    """Like Discord: the bot is out, and the gateway says so with GUILD_DELETE. Other guilds than the
    fake's are those a test announced with its own GUILD_CREATE."""
    guild_id = request.match_info["guild_id"]
    if guild_id in fake.left:
        raise DiscordError(404, 10004, "Unknown Guild")
    fake.left.add(guild_id)
    await fake.gateway.dispatch("GUILD_DELETE", {"id": guild_id})
    return web.Response(status=204)


async def cdn(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    attachment_id = request.match_info["attachment_id"]
    if attachment_id in fake.expired_attachments or attachment_id not in fake.files:
        return web.Response(status=404, text="This content is no longer available.")
    return web.Response(body=fake.files[attachment_id])


async def unmatched(fake: "FakeDiscord", request: web.Request, body: Body) -> web.Response:
    raise DiscordError(404, 0, "404: Not Found")


COMMANDS = "/api/v10/applications/{application_id}/commands"
GUILD_COMMANDS = "/api/v10/applications/{application_id}/guilds/{guild_id}/commands"
WEBHOOK_MESSAGE = "/api/v10/webhooks/{application_id}/{token}/messages/{message_id}"
CHANNEL_MESSAGE = "/api/v10/channels/{channel_id}/messages/{message_id}"
# (method, path, kind, handler); the kind names the route in `Recorded.kind`.
ROUTES: list[tuple[str, str, str, Handler]] = [
    ("GET", "/api/v10/users/@me", "get_me", get_me),
    ("GET", "/api/v10/oauth2/applications/@me", "get_application", get_application),
    ("PUT", COMMANDS, "put_commands", put_commands),
    ("GET", COMMANDS, "get_commands", get_commands),
    ("PUT", GUILD_COMMANDS, "put_commands", put_commands),
    ("GET", GUILD_COMMANDS, "get_commands", get_commands),
    ("POST", "/api/v10/interactions/{interaction_id}/{token}/callback", "callback", callback),
    ("POST", "/api/v10/webhooks/{application_id}/{token}", "followup", followup),
    ("GET", WEBHOOK_MESSAGE, "get_webhook_message", get_webhook_message),
    ("PATCH", WEBHOOK_MESSAGE, "edit_webhook_message", edit_webhook_message),
    ("DELETE", WEBHOOK_MESSAGE, "delete_webhook_message", delete_webhook_message),
    ("POST", "/api/v10/users/@me/channels", "create_dm", create_dm),
    ("GET", "/api/v10/channels/{channel_id}", "get_channel", get_channel),
    ("POST", "/api/v10/channels/{channel_id}/messages", "post_message", post_message),
    ("GET", CHANNEL_MESSAGE, "get_message", get_message),
    ("PATCH", CHANNEL_MESSAGE, "edit_message", edit_message),
    ("DELETE", CHANNEL_MESSAGE, "delete_message", delete_message),
    ("PUT", CHANNEL_MESSAGE + "/reactions/{emoji}/@me", "add_reaction", add_reaction),
    (
        "GET",
        "/api/v10/channels/{channel_id}/thread-members/{user_id}",
        "get_thread_member",
        get_thread_member,
    ),
    ("GET", "/api/v10/guilds/{guild_id}/members/{user_id}", "get_member", get_member),
    ("GET", GUILD_COMMANDS + "/permissions", "get_command_permissions", get_command_permissions),
    ("DELETE", "/api/v10/users/@me/guilds/{guild_id}", "leave_guild", leave_guild),
    ("GET", "/attachments/{channel_id}/{attachment_id}/{filename}", "cdn", cdn),
    ("*", "/{path:.*}", "unmatched", unmatched),  # last: anything else is recorded, then 404
]


def _apply(
    fake: "FakeDiscord", message: JSON, data: JSON | None, files: tuple[UploadedFile, ...]
) -> JSON:
    """Creates or edits `message` from a request body, in place, as Discord would.

    Attachments listed in `data["attachments"]` by id are kept, new `files[n]` are appended; an edit
    (or a followup) also ends a deferral's loading state.
    """
    fields = data or {}
    for key, empty in (("content", ""), ("embeds", []), ("components", [])):
        if key in fields:
            message[key] = fields[key] or empty
    message["flags"] = (fields.get("flags", message["flags"]) or 0) & ~LOADING
    if "attachments" in fields:
        keep = {str(a["id"]) for a in fields["attachments"]}
        message["attachments"] = [a for a in message["attachments"] if a["id"] in keep]
    message["attachments"] += [fake.store_file(message["channel_id"], f.filename, f.data) for f in files]
    members = fake.members
    message["mentions"] = [
        members[i]["user"] for i in payloads.mentioned_ids(message["content"]) if i in members
    ]
    if message["id"] in fake.messages:
        message["edited_timestamp"] = payloads.now()
    fake.messages[message["id"]] = message
    return message


def _interaction_message(fake: "FakeDiscord", it: "FakeInteraction", message_type: int) -> JSON:
    message = payloads.message(it.channel_id, fake.bot_user, message_type=message_type)
    message["webhook_id"] = message["application_id"] = fake.app_id
    message["interaction_metadata"] = {
        "id": it.id,
        "type": it.type,
        "user": it.user,
        "authorizing_integration_owners": {"0": fake.guild_id},
    }
    return message


def _webhook_interaction(fake: "FakeDiscord", request: web.Request) -> "FakeInteraction":
    it = fake.interactions.get(request.match_info["token"])
    if it is None or request.match_info["application_id"] != fake.app_id:
        raise DiscordError(404, 10015, "Unknown Webhook")
    if it.expired:
        raise DiscordError(401, 50027, "Invalid Webhook Token")
    return it


def _webhook_message_id(fake: "FakeDiscord", request: web.Request) -> str:
    it = _webhook_interaction(fake, request)
    message_id = request.match_info["message_id"]
    return (it.original_id or "") if message_id == "@original" else message_id


def _channel(fake: "FakeDiscord", request: web.Request) -> JSON:
    if (channel := fake.channels.get(request.match_info["channel_id"])) is None:
        raise DiscordError(404, 10003, "Unknown Channel")
    return channel


def _channel_message(fake: "FakeDiscord", request: web.Request) -> JSON:
    message = fake.message(request.match_info["message_id"])
    if message["channel_id"] != _channel(fake, request)["id"]:
        raise DiscordError(404, 10008, "Unknown Message")
    return message
