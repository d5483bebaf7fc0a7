"""FakeDiscord: a local Discord (REST, gateway and attachment CDN) that the real discord.py client uses.

    async with FakeDiscord() as fake, run_client(fake, bot):
        it = await fake.slash("inpaint", {"image": fake.add_attachment(png, "cat.png")})
        deferral = await fake.wait_for("callback", it.owns)
        assert deferral.json["type"] == 5 and deferral.at - it.at < 0.5

One fake at a time: entering it points discord.py's `Route.BASE` and gateway URL at it, leaving
restores them. Every request is recorded (see `Recorded`); `wait_for` awaits the next match.
"""

import json
import logging
import mimetypes
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import discord
import yarl
from aiohttp import web

from . import payloads, rest
from .gateway import Gateway
from .payloads import BOT_PERMISSIONS, JSON, MEMBER_PERMISSIONS
from .recording import Body, Predicate, Recorded, Recorder, read_body

log = logging.getLogger(__name__)

# Interaction types (https://discord.com/developers/docs/interactions/receiving-and-responding).
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
BUTTON, STRING_SELECT = 2, 3
ACTION_ROW, TEXT_INPUT = 1, 4


@dataclass
class FakeInteraction:
    """An interaction a test dispatched; its token ties the bot's later requests to it."""

    payload: JSON  # the INTERACTION_CREATE data as sent
    at: float  # time.monotonic() just before it was sent, comparable with Recorded.at
    responded: bool = False
    expired: bool = False  # set by FakeDiscord.expire
    original_id: str | None = None  # the message `@original` refers to, once there is one

    @property
    def id(self) -> str:
        return self.payload["id"]

    @property
    def token(self) -> str:
        return self.payload["token"]

    @property
    def type(self) -> int:
        return self.payload["type"]

    @property
    def channel_id(self) -> str:
        return self.payload["channel_id"]

    @property
    def user(self) -> JSON:
        """Who interacted: the member's user in a guild, the user in a DM."""
        return self.payload["member"]["user"] if "member" in self.payload else self.payload["user"]

    def owns(self, record: Recorded) -> bool:
        """Whether a request used this interaction's token (callback, followups, @original edits)."""
        return record.params.get("token") == self.token


class FakeDiscord:
    """One guild with a #general text channel, the bot, and members `owner`, `alice` and `helper_bot`.

    Users are member payloads (`{"user": {...}, "roles": [...]}`); messages and attachments are dicts in
    Discord's JSON shape with string ids. Add members and channels before the bot connects. Events
    without a helper here go through `fake.gateway.dispatch(event_name, data)`.
    """

    token = "fake-bot-token"

    def __init__(self, *, upload_limit: int = 10 * 1024 * 1024) -> None:
        self.upload_limit = upload_limit  # bytes per file; larger uploads get 413 / code 40005
        self.app_id = payloads.snowflake()
        self.guild_id = payloads.snowflake()
        self.bot_user = payloads.user("inpaintbot", bot=True) | {"id": self.app_id}
        everyone = payloads.role(self.guild_id, "@everyone", MEMBER_PERMISSIONS, everyone=True)
        bot_role = payloads.role(self.guild_id, "inpaintbot", BOT_PERMISSIONS)
        self.roles: list[JSON] = [everyone, bot_role]
        self.members: dict[str, JSON] = {}  # by user id
        self.bot_member = self._add(payloads.member(self.bot_user, [bot_role]))
        self.owner = self.add_member("owner")
        self.alice = self.add_member("alice")
        self.helper_bot = self.add_member("helper_bot", bot=True)
        self.channels: dict[str, JSON] = {}
        self.channel = self.add_channel("general")
        self.messages: dict[str, JSON] = {}  # current state by id; deleted ones are removed
        self.interactions: dict[str, FakeInteraction] = {}  # by token
        self.commands: dict[str | None, list[JSON]] = {}  # synced commands by guild id (None: global)
        self.files: dict[str, bytes] = {}  # attachment bytes by attachment id
        self.expired_attachments: set[str] = set()
        self.forbidden_channels: set[str] = set()  # see `forbid`
        self.thread_members: dict[str, set[str]] = {}  # user ids by thread id
        # Application command permission overrides by command id (the application's id: all commands).
        self.command_permissions: dict[str, list[JSON]] = {}
        self.left: set[str] = set()  # guilds the bot left (DELETE users/@me/guilds/{id})
        self.outages: dict[str, int] = {}  # requests of a kind still to answer 503 (see `fail_next`)
        self._recorder = Recorder()
        self.gateway = Gateway(
            self._recorder, self._identify_events, lambda: list(self.members.values())
        )
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._saved_urls: tuple[str, yarl.URL] | None = None

    # Lifecycle

    async def __aenter__(self) -> Self:
        # Large enough for any upload: the fake's own `upload_limit` decides what is too large.
        app = web.Application(client_max_size=1024**3)
        app.router.add_get("/gateway", self.gateway.handle)
        for method, path, kind, handler in rest.ROUTES:
            app.router.add_route(method, path, self._serve(kind, handler))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]
        self._saved_urls = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = f"{self.url}/api/v10"
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
            f"ws://127.0.0.1:{self._port}/gateway"
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._saved_urls:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved_urls
        await self.gateway.close()
        if self._runner:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("enter the FakeDiscord (async with) before using its URLs")
        return f"http://127.0.0.1:{self._port}"

    # Setting the scene

    def add_member(
        self, username: str, *, bot: bool = False, permissions: discord.Permissions | None = None
    ) -> JSON:
        """A guild member; `permissions` come with a role of their own, so the client's cache agrees."""
        roles = []
        if permissions is not None:
            roles.append(payloads.role(self.guild_id, f"{username}-role", permissions))
            self.roles += roles
        return self._add(payloads.member(payloads.user(username, bot=bot), roles))

    def add_channel(self, name: str, *, nsfw: bool = False, overwrites: Sequence[JSON] = ()) -> JSON:
        """A text channel; `nsfw`: age-restricted; `overwrites` (`payloads.overwrite`) change what
        members may do there, as Discord computes it (see `permissions_in`)."""
        channel = payloads.text_channel(
            self.guild_id, name, position=len(self.channels), nsfw=nsfw, overwrites=overwrites
        )
        self.channels[channel["id"]] = channel
        return channel

    def add_private_channel(self, name: str, *members: JSON) -> JSON:
        """A channel @everyone cannot view, but `members` and the bot can (a staff channel)."""
        hidden = payloads.overwrite(self.guild_id, deny=discord.Permissions(view_channel=True))
        seen = [
            payloads.overwrite(
                m["user"]["id"], kind=payloads.MEMBER, allow=discord.Permissions(view_channel=True)
            )
            for m in (self.bot_member, *members)
        ]
        return self.add_channel(name, overwrites=[hidden, *seen])

    def add_thread(self, parent: JSON, name: str, *, private: bool = False) -> JSON:
        """A thread in `parent`, started by the owner; pass it as `channel=` like a channel. A
        private thread is seen only by its members (`thread_members`) and those who manage threads."""
        thread = payloads.thread(parent, name, self.owner["user"]["id"], private=private)
        self.channels[thread["id"]] = thread
        self.thread_members[thread["id"]] = {self.owner["user"]["id"]}
        return thread

    async def set_command_permissions(self, command: str | None, overrides: Sequence[JSON]) -> None:
        """What a server admin sets under Integrations: overrides (`payloads.command_permission`) for
        one synced command by name, or with `None` for all the application's commands; the gateway
        announces the change. Discord applies them to slash commands before the bot sees them; the
        fake does not (the bot's own checks of the other paths are what tests look at)."""
        command_id = self.app_id
        if command is not None:
            definition, _ = self._synced(command)
            if definition is None:
                raise ValueError(f"/{command} is not synced")
            command_id = definition["id"]
        self.command_permissions[command_id] = list(overrides)
        event = {
            "id": command_id,
            "application_id": self.app_id,
            "guild_id": self.guild_id,
            "permissions": list(overrides),
        }
        await self.gateway.dispatch("APPLICATION_COMMAND_PERMISSIONS_UPDATE", event)

    def add_dm(self, member: JSON) -> JSON:
        """The bot's direct-message channel with `member`; pass it as `channel=` for interactions there
        (they come without a guild, and with the user instead of a member)."""
        channel = payloads.dm_channel(member["user"])
        self.channels[channel["id"]] = channel
        return channel

    def add_attachment(self, data: bytes, filename: str = "image.png") -> JSON:
        """An uploaded file to pass as a slash command option; `Attachment.read()` gets `data`."""
        return self.store_file(self.channel["id"], filename, data)

    def store_file(self, channel_id: str, filename: str, data: bytes) -> JSON:
        attachment_id = payloads.snowflake()
        self.files[attachment_id] = data
        url = f"{self.url}/attachments/{channel_id}/{attachment_id}/{quote(filename)}"
        content_type = mimetypes.guess_type(filename)[0]
        return payloads.attachment(attachment_id, filename, len(data), url, content_type)

    # Knobs

    def expire(self, interaction: FakeInteraction) -> None:
        """The 15-minute token ran out: followups get 401/50027, callbacks 404/10062."""
        interaction.expired = True

    def forbid(self, channel: JSON) -> None:
        """The bot lost Send Messages (or Attach Files) in `channel`: posting there gets 403/50013."""
        self.forbidden_channels.add(channel["id"])

    def fail_next(self, kind: str, times: int = 1) -> None:
        """An outage: the next `times` requests of `kind` (see rest.ROUTES) get 503 Service Unavailable,
        which discord.py raises at once (it retries 500, 502, 504 and 524 itself)."""
        self.outages[kind] = times

    def expire_attachment(self, attachment: JSON) -> None:
        """Its signed CDN URL ran out: downloads get 404 (discord.NotFound)."""
        self.expired_attachments.add(attachment["id"])

    # Events to the bot

    async def slash(
        self,
        command: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: JSON | None = None,
        channel: JSON | None = None,
        focused: str | None = None,
    ) -> FakeInteraction:
        """A slash command (`"preset save"` for subcommands); attachments are `add_attachment` dicts.

        With `focused` (an option name) it is the autocomplete request for that option instead.
        """
        name = command.split()[0]
        definition, guild_id = self._synced(name)
        data = {"id": definition["id"] if definition else payloads.snowflake(), "name": name, "type": 1}
        data |= payloads.command_options(command, options or {}, definition, focused)
        if guild_id:
            data["guild_id"] = guild_id
        kind = AUTOCOMPLETE if focused else APPLICATION_COMMAND
        return await self._interact(kind, data, user, channel or self.channel)

    async def click(
        self,
        message: JSON | int | str,
        custom_id: str,
        *,
        user: JSON | None = None,
        values: Sequence[str] | None = None,
    ) -> FakeInteraction:
        """A button click on a message the bot sent; with `values`, a string-select choice. A message
        payload is clicked as given, even if deleted since (a member's client that still shows it)."""
        msg = message if isinstance(message, dict) else self.message(message)
        data: JSON = {"custom_id": custom_id, "component_type": BUTTON}
        if values is not None:
            data |= {"component_type": STRING_SELECT, "values": list(values)}
        return await self._interact(MESSAGE_COMPONENT, data, user, self.channels[msg["channel_id"]], msg)

    async def submit_modal(
        self,
        custom_id: str,
        values: Mapping[str, str],
        *,
        user: JSON | None = None,
        message: JSON | int | str | None = None,
    ) -> FakeInteraction:
        """A modal's submission, `values` by text input custom_id; `message` if a button opened it."""
        inputs = [
            {"type": TEXT_INPUT, "custom_id": key, "value": value} for key, value in values.items()
        ]
        data = {"custom_id": custom_id, "components": [{"type": ACTION_ROW, "components": inputs}]}
        msg = None if message is None else self.message(message)
        channel = self.channels[msg["channel_id"]] if msg else self.channel
        return await self._interact(MODAL_SUBMIT, data, user, channel, msg)

    async def react(
        self, message: JSON | int | str, emoji: str = "👍", *, user: JSON | None = None
    ) -> JSON:
        """MESSAGE_REACTION_ADD by `user` (default alice; a bot member works too); `name:id` for custom."""
        msg, member = self.message(message), user or self.alice
        event = {
            "user_id": member["user"]["id"],
            "channel_id": msg["channel_id"],
            "message_id": msg["id"],
            "guild_id": self.guild_id,
            "member": member,
            "emoji": payloads.emoji(emoji),
            "message_author_id": msg["author"]["id"],
            "type": 0,
            "burst": False,
            "burst_colors": [],
        }
        reaction = next((r for r in msg["reactions"] if r["emoji"] == event["emoji"]), None)
        if reaction is None:
            reaction = {"emoji": event["emoji"], "count": 0, "me": False, "burst_colors": []}
            msg["reactions"].append(reaction)
        reaction["count"] += 1
        reaction["me"] |= event["user_id"] == self.app_id
        reaction["count_details"] = {"normal": reaction["count"], "burst": 0}
        await self.gateway.dispatch("MESSAGE_REACTION_ADD", event)
        return event

    # Looking at what happened

    @property
    def records(self) -> list[Recorded]:
        return self._recorder.records

    def recorded(
        self,
        kinds: str | Collection[str],
        predicate: Predicate | None = None,
        *,
        after: Recorded | None = None,
    ) -> list[Recorded]:
        """The records so far of the given kind(s) (see rest.ROUTES, plus "gateway", "unmatched")."""
        return self._recorder.find(kinds, predicate, after)

    async def wait_for(
        self,
        kinds: str | Collection[str],
        predicate: Predicate | None = None,
        *,
        after: Recorded | None = None,
        timeout: float = 5.0,
    ) -> Recorded:
        """The first matching record after `after` (or from the start), waiting if there is none yet.

        Raises AssertionError, listing what was recorded, after `timeout` seconds.
        """
        return await self._recorder.wait_for(kinds, predicate, after=after, timeout=timeout)

    def message(self, message: JSON | int | str) -> JSON:
        """The current state of a message the fake knows (by id or payload)."""
        message_id = message["id"] if isinstance(message, dict) else str(message)
        if message_id not in self.messages:
            raise rest.DiscordError(404, 10008, "Unknown Message")
        return self.messages[message_id]

    def attachment_bytes(self, attachment: JSON) -> bytes:
        return self.files[attachment["id"]]

    # Internals

    def dm_with(self, user_id: str) -> JSON:
        """The bot's direct-message channel with a member, opened on first use (POST users/@me/channels)."""
        for channel in self.channels.values():
            if channel["type"] == payloads.DM and channel["recipients"][0]["id"] == user_id:
                return channel
        if user_id not in self.members:
            raise rest.DiscordError(400, 50035, "Invalid Form Body (recipient_id: Unknown user)")
        return self.add_dm(self.members[user_id])

    def _add(self, member: JSON) -> JSON:
        self.members[member["user"]["id"]] = member
        return member

    def permissions_in(self, member: JSON, channel: JSON) -> int:
        """The member's permissions in a channel as Discord computes them: the guild's (roles), then
        the channel's overwrites for @everyone, the member's roles and the member; threads use their
        parent's. Without View Channel, nothing."""
        base = self._permissions(member)
        if base == discord.Permissions.all().value or channel["type"] == payloads.DM:
            return base
        if channel["type"] in payloads.THREADS:
            channel = self.channels[channel["parent_id"]]
        overwrites = channel["permission_overwrites"]
        user_id = member["user"]["id"]
        everyone = [o for o in overwrites if o["id"] == self.guild_id]
        roles = [o for o in overwrites if o["type"] == payloads.ROLE and o["id"] in member["roles"]]
        own = [o for o in overwrites if o["type"] == payloads.MEMBER and o["id"] == user_id]
        for group in (everyone, roles, own):
            deny = allow = 0
            for o in group:
                deny, allow = deny | int(o["deny"]), allow | int(o["allow"])
            base = (base & ~deny) | allow
        return base if discord.Permissions(base).view_channel else 0

    def _permissions(self, member: JSON) -> int:
        if member["user"]["id"] == self.owner["user"]["id"]:
            return discord.Permissions.all().value
        permissions = discord.Permissions.none()
        for role in self.roles:
            if role["id"] == self.guild_id or role["id"] in member["roles"]:
                permissions |= discord.Permissions(int(role["permissions"]))
        return discord.Permissions.all().value if permissions.administrator else permissions.value

    def _synced(self, name: str) -> tuple[JSON | None, str | None]:
        """The synced definition of a command, guild commands first, and the guild it belongs to."""
        for guild_id in (self.guild_id, None):
            for command in self.commands.get(guild_id, []):
                if command["name"] == name:
                    return command, guild_id
        return None, None

    async def _interact(
        self, kind: int, data: JSON, user: JSON | None, channel: JSON, message: JSON | None = None
    ) -> FakeInteraction:
        member = user or self.alice
        permissions = str(self.permissions_in(member, channel))
        payload = {
            "id": payloads.snowflake(),
            "token": secrets.token_urlsafe(24),
            "application_id": self.app_id,
            "type": kind,
            "data": data,
            "version": 1,
            "guild_id": self.guild_id,
            "guild": {"id": self.guild_id, "locale": "en-US", "features": []},
            "channel_id": channel["id"],
            "channel": channel | {"permissions": permissions},
            "member": member | {"permissions": permissions},
            "app_permissions": str(self.permissions_in(self.bot_member, channel)),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": self.guild_id},
            "context": 0,
            "attachment_size_limit": self.upload_limit,
        }
        if channel["type"] == payloads.DM:
            for key in ("guild_id", "guild", "member", "guild_locale"):
                del payload[key]
            payload |= {
                "user": member["user"],
                "channel": channel,
                "context": 1,  # BOT_DM
                "authorizing_integration_owners": {"1": member["user"]["id"]},
            }
        if message is not None:
            payload["message"] = message
        interaction = FakeInteraction(payload, at=time.monotonic())
        self.interactions[interaction.token] = interaction
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return interaction

    def _identify_events(self) -> list[tuple[str, JSON]]:
        ready = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": self.guild_id, "unavailable": True}],
            "session_id": secrets.token_hex(16),
            "resume_gateway_url": f"ws://127.0.0.1:{self._port}/gateway",
            "application": {"id": self.app_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        guild = payloads.guild(
            self.guild_id,
            self.owner["user"]["id"],
            self.roles,
            list(self.channels.values()),
            list(self.members.values()),
        )
        return [("READY", ready), ("GUILD_CREATE", guild)]

    def _serve(
        self, kind: str, handler: rest.Handler
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Wraps a REST handler: parses the body, applies the upload limit, turns errors into
        Discord's error JSON, and records the exchange."""

        async def serve(request: web.Request) -> web.Response:
            at, body = time.monotonic(), Body(None, ())
            try:
                body = await read_body(request)
                if self.outages.get(kind):
                    self.outages[kind] -= 1
                    raise rest.DiscordError(503, 0, "503: Service Unavailable")
                if any(len(f.data) > self.upload_limit for f in body.files):
                    raise rest.DiscordError(413, 40005, "Request entity too large")
                response = await handler(self, request, body)
            except rest.DiscordError as e:
                response = rest.json_response({"code": e.code, "message": e.message}, e.status)
            except Exception as e:
                # A 5xx would make discord.py retry for ~15 s; a 400 fails the bot's call at once.
                log.exception("fake discord failed on %s %s", request.method, request.path)
                response = rest.json_response({"code": 0, "message": f"fake discord failed: {e!r}"}, 400)
            reply, raw = None, response.body
            if response.content_type == "application/json" and isinstance(raw, bytes):
                reply = json.loads(raw)
            await self._recorder.add(
                at=at,
                kind=kind,
                method=request.method,
                path=request.path.removeprefix("/api/v10"),
                params=dict(request.match_info),
                json=body.json,
                files=body.files,
                status=response.status,
                reply=reply,
            )
            return response

        return serve
