"""A local Discord for tests: the gateway (a websocket) and the REST endpoints a bot uses.

discord.py's real client connects to it once pointed here (bot.discord.api_base / gateway_url):
HELLO, IDENTIFY, READY, GUILD_CREATE and heartbeats on the gateway; users act through
MESSAGE_CREATE and INTERACTION_CREATE events; the bot answers over REST (messages, edits, typing,
interaction callbacks and followups, command sync). Every REST call is recorded and messages keep
their edits, so a test asserts what a user would see. A test can delete a message as a moderator would
(`delete_message`), make Discord refuse the next matching REST calls (`fail_next`: a 429 with
`retry_after`, as Discord sends it, or any other error), and use up a route's rate-limit bucket (`use_up_bucket`:
Discord names the bucket in X-RateLimit-* headers and refuses calls in it with 429 until it resets).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from aiohttp import WSMsgType, web

from tests.support.eventually import eventually

API_VERSION = 10
EPHEMERAL = 1 << 6
LOADING = 1 << 7
# permission bits used by the tests' roles
VIEW_AND_SEND = (1 << 10) | (1 << 11) | (1 << 16)
MANAGE_CHANNELS = 1 << 4
MESSAGE_CONTENT_INTENT = 1 << 15


@dataclass(frozen=True)
class User:
    id: int
    name: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
        }


@dataclass
class Channel:
    id: int
    name: str
    type: int  # 0 guild text, 1 DM, 11 public thread
    guild_id: int | None = None
    parent_id: int | None = None
    recipient: User | None = None

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": str(self.id), "type": self.type, "name": self.name}
        if self.guild_id is not None:
            data |= {
                "guild_id": str(self.guild_id),
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
            }
        if self.parent_id is not None:
            data["parent_id"] = str(self.parent_id)
        if self.type == 11:
            data |= {
                "owner_id": "1",
                "member_count": 1,
                "message_count": 0,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": _now(),
                    "locked": False,
                },
            }
        if self.recipient is not None:
            data["recipients"] = [self.recipient.payload()]
        return data


@dataclass
class Role:
    id: int
    name: str
    permissions: int

    def payload(self, position: int) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": position,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class Guild:
    id: int
    name: str
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, list[int]] = field(default_factory=dict)  # user id -> role ids

    def permissions_of(self, user_id: int) -> int:
        bits = self.roles[self.id].permissions
        for role_id in self.members.get(user_id, []):
            bits |= self.roles[role_id].permissions
        return bits


@dataclass
class Call:
    """One REST request the bot made."""

    method: str
    path: str
    body: Any
    query: dict[str, str]
    status: int = 200  # what the local Discord answered
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    body: dict[str, Any]
    times: int


@dataclass
class _Bucket:
    """A route's rate-limit bucket, used up by its next call: empty for `reset_after` seconds from then."""

    method: str
    path: re.Pattern[str]
    reset_after: float
    name: str
    empty_until: float | None = None  # time.monotonic() once used up


@dataclass
class Interaction:
    """A slash command, autocompletion or button press, and everything the bot answered to it."""

    id: int
    token: str
    user: User
    channel: Channel
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    target_message_id: int | None = None  # for a button press: the message carrying the button


class LocalDiscord:
    """Start with `async with LocalDiscord() as discord:`; build guilds, channels and users, then act."""

    def __init__(self, *, message_content_enabled: bool = True) -> None:
        # whether the application has "Message Content Intent" switched on in the developer portal
        self.message_content_enabled = message_content_enabled
        self._ids = itertools.count(1_200_000_000_000_000_000)
        self.application_id = self.new_id()
        self.bot_user = User(self.application_id, "ownchat", bot=True)
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.users: dict[int, User] = {}
        self.messages: dict[int, dict[str, Any]] = {}
        self.edits: dict[int, list[str]] = {}  # message id -> every content it showed, in order
        self.calls: list[Call] = []
        self.unhandled: list[Call] = []
        self.identifies: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.interactions: dict[str, Interaction] = {}
        self.deleted: list[int] = []  # ids of the messages deleted, by the bot or by a moderator
        self.bot_reactions: list[tuple[int, str, bool]] = []  # (message id, emoji, added) of the bot's own reactions
        self._faults: list[_Fault] = []
        self._buckets: list[_Bucket] = []
        self._sockets: list[_Connection] = []
        self._dispatching: set[asyncio.Task[None]] = set()  # gateway events on their way
        self._runner: web.AppRunner | None = None
        self.port = 0

    # lifecycle

    async def __aenter__(self) -> LocalDiscord:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v{version}/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for connection in list(self._sockets):
            await connection.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v{API_VERSION}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def new_id(self) -> int:
        return next(self._ids)

    # the world

    def add_user(self, name: str) -> User:
        user = User(self.new_id(), name)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str) -> Guild:
        guild = Guild(self.new_id(), name)
        guild.roles[guild.id] = Role(guild.id, "@everyone", VIEW_AND_SEND)
        guild.members[self.bot_user.id] = []
        self.guilds[guild.id] = guild
        return guild

    def add_role(self, guild: Guild, name: str, permissions: int = 0) -> Role:
        role = Role(self.new_id(), name, permissions)
        guild.roles[role.id] = role
        return role

    def join(self, guild: Guild, user: User, *roles: Role) -> None:
        guild.members[user.id] = [r.id for r in roles]

    def add_channel(self, guild: Guild, name: str) -> Channel:
        channel = Channel(self.new_id(), name, 0, guild_id=guild.id)
        guild.channels[channel.id] = self.channels[channel.id] = channel
        return channel

    def add_thread(self, parent: Channel, name: str) -> Channel:
        assert parent.guild_id is not None
        thread = Channel(self.new_id(), name, 11, guild_id=parent.guild_id, parent_id=parent.id)
        self.guilds[parent.guild_id].channels[thread.id] = self.channels[thread.id] = thread
        return thread

    def dm(self, user: User) -> Channel:
        for channel in self.channels.values():
            if channel.type == 1 and channel.recipient == user:
                return channel
        channel = Channel(self.new_id(), "", 1, recipient=user)
        self.channels[channel.id] = channel
        return channel

    # what users do

    async def say(
        self, user: User, channel: Channel, content: str, *, reply_to: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A user posts a message; `<@bot>` in the content mentions the bot."""
        mentions = [u for u in [self.bot_user, *self.users.values()] if f"<@{u.id}>" in content]
        message = self._new_message(channel, user, content, mentions=mentions, reference=reply_to)
        await self._dispatch("MESSAGE_CREATE", message, channel.guild_id)
        return message

    def mention(self) -> str:
        return f"<@{self.bot_user.id}>"

    async def slash(self, user: User, channel: Channel, command: str, /, **options: Any) -> Interaction:
        """A user runs /command with these option values."""
        data = self._command_data(command, options)
        return await self._interact(2, user, channel, data)

    async def app_command(self, user: User, message_id: int, name: str) -> Interaction:
        """A user picks the app command `name` on a message (Apps > name in its menu)."""
        command = next((c for c in self.commands if c["name"] == name and c.get("type") == 3), None)
        if command is None:
            raise AssertionError(f"no app command {name!r} on messages was synced")
        message = self.messages[message_id]
        data = {
            "id": command["id"],
            "name": name,
            "type": 3,
            "target_id": message["id"],
            "resolved": {"messages": {message["id"]: _public(message)}},
        }
        return await self._interact(2, user, self.channels[int(message["channel_id"])], data)

    async def autocomplete(self, user: User, channel: Channel, name: str, focused: str, value: str) -> Interaction:
        data = self._command_data(name, {focused: value})
        for option in data["options"]:
            option["focused"] = option["name"] == focused
        return await self._interact(4, user, channel, data)

    async def click(self, user: User, message_id: int, label: str) -> Interaction:
        """A user presses the button with this label on a message."""
        message = self.messages[message_id]
        buttons = [c for row in message.get("components", []) for c in row.get("components", [])]
        button = next((b for b in buttons if b.get("label") == label), None)
        if button is None:
            raise AssertionError(f"no button {label!r} on message {message_id}: {[b.get('label') for b in buttons]}")
        data = {"custom_id": button["custom_id"], "component_type": 2}
        channel = self.channels[int(message["channel_id"])]
        return await self._interact(3, user, channel, data, message=message)

    async def react(self, user: User, message_id: int, emoji: str) -> None:
        """`user` adds the reaction `emoji` (a Unicode emoji) to a message; the gateway tells the bot."""
        message = self.messages[message_id]
        users = message.setdefault("_reactions", {}).setdefault(emoji, [])
        if user.id in users:
            return
        users.append(user.id)
        event = self._reaction_event(user, message, emoji)
        channel = self.channels[int(message["channel_id"])]
        if channel.guild_id is not None:
            event["member"] = self._member(self.guilds[channel.guild_id], user) | {"user": user.payload()}
        await self._dispatch(
            "MESSAGE_REACTION_ADD", event | {"message_author_id": message["author"]["id"]}, channel.guild_id
        )

    async def unreact(self, user: User, message_id: int, emoji: str) -> None:
        """`user` takes their reaction `emoji` off a message (Discord does not say whose message it was)."""
        message = self.messages[message_id]
        reactions = message.get("_reactions", {})
        if user.id not in reactions.get(emoji, []):
            return
        reactions[emoji].remove(user.id)
        if not reactions[emoji]:
            del reactions[emoji]
        channel = self.channels[int(message["channel_id"])]
        await self._dispatch("MESSAGE_REACTION_REMOVE", self._reaction_event(user, message, emoji), channel.guild_id)

    def _reaction_event(self, user: User, message: dict[str, Any], emoji: str) -> dict[str, Any]:
        event: dict[str, Any] = {
            "user_id": str(user.id),
            "channel_id": message["channel_id"],
            "message_id": message["id"],
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "burst_colors": [],
            "type": 0,
        }
        if "guild_id" in message:
            event["guild_id"] = message["guild_id"]
        return event

    def _reaction_users(self, message_id: int, emoji: str, query: dict[str, str]) -> list[dict[str, Any]]:
        """Who reacted with `emoji`, by id, from `after` on, as Discord lists them."""
        message = self.messages.get(message_id)
        if message is None:
            raise _DiscordError(404, 10008, "Unknown Message")
        after, limit = int(query.get("after", 0)), int(query.get("limit", 25))
        ids = sorted(i for i in message.get("_reactions", {}).get(emoji, []) if i > after)[:limit]
        return [self.users[i].payload() for i in ids]

    def _own_reaction(self, message_id: int, emoji: str, *, add: bool) -> None:
        """The bot adds or takes back its own reaction on a message."""
        message = self.messages.get(message_id)
        if message is None:
            raise _DiscordError(404, 10008, "Unknown Message")
        users = message.setdefault("_reactions", {}).setdefault(emoji, [])
        if add and self.bot_user.id not in users:
            users.append(self.bot_user.id)
        elif not add and self.bot_user.id in users:
            users.remove(self.bot_user.id)
        self.bot_reactions.append((message_id, emoji, add))

    def delete_message(self, message_id: int) -> None:
        """A moderator, an auto-mod bot or the author deletes a message; the gateway tells the bot."""
        message = self.messages.pop(message_id)
        self.deleted.append(message_id)
        channel = self.channels[int(message["channel_id"])]
        event = {"id": str(message_id), "channel_id": message["channel_id"]}
        if channel.guild_id is not None:
            event["guild_id"] = str(channel.guild_id)
        dispatch = asyncio.get_running_loop().create_task(self._dispatch("MESSAGE_DELETE", event, channel.guild_id))
        self._dispatching.add(dispatch)
        dispatch.add_done_callback(self._dispatching.discard)

    # faults

    def fail_next(
        self,
        method: str,
        path: str,
        *,
        status: int = 429,
        code: int = 0,
        message: str = "You are being rate limited.",
        retry_after: float = 0.0,
        times: int = 1,
    ) -> None:
        """Refuse the next `times` REST calls whose method is `method` and whose path matches the regular
        expression `path` (e.g. r"/channels/\\d+/messages/\\d+" for edits): a 429 by default."""
        body: dict[str, Any] = {"code": code, "message": message}
        if status == 429:
            body |= {"retry_after": retry_after, "global": False}
        self._faults.append(_Fault(method, re.compile(path), status, body, times))

    def use_up_bucket(self, method: str, path: str, *, reset_after: float, name: str = "messages") -> None:
        """The next call whose method is `method` and whose path matches `path` succeeds and uses up its bucket:
        Discord says so in its X-RateLimit-* headers (remaining 0, resetting in `reset_after` seconds) and answers
        a matching call before then with 429, as Discord does."""
        self._buckets.append(_Bucket(method, re.compile(path), reset_after, name))

    def _bucket_of(self, call: Call) -> _Bucket | None:
        return next((b for b in self._buckets if b.method == call.method and b.path.fullmatch(call.path)), None)

    def _injected(self, call: Call) -> web.Response | None:
        bucket = self._bucket_of(call)
        if bucket is not None and bucket.empty_until is not None and (wait := bucket.empty_until - call.at) > 0:
            body = {"code": 0, "message": "You are being rate limited.", "retry_after": wait, "global": False}
            return _json(body, status=429, headers={"Via": "1.1 google"})
        for fault in self._faults:
            if fault.times > 0 and fault.method == call.method and fault.path.fullmatch(call.path):
                fault.times -= 1
                # discord.py takes a 429 without a Via header for Cloudflare's ban, not Discord's rate limit
                headers = {"Via": "1.1 google"} if fault.status == 429 else {}
                return _json(fault.body, status=fault.status, headers=headers)
        return None

    # what users see

    def visible_messages(self, channel: Channel, viewer: User | None = None) -> list[dict[str, Any]]:
        """The channel's messages in order, as `viewer` sees them (ephemeral ones only for their user)."""
        return [
            m
            for m in self.messages.values()
            if int(m["channel_id"]) == channel.id
            and not m["flags"] & LOADING
            and (not m["flags"] & EPHEMERAL or (viewer is not None and m.get("_visible_to") == viewer.id))
        ]

    def bot_messages(self, channel: Channel) -> list[dict[str, Any]]:
        return [m for m in self.visible_messages(channel) if int(m["author"]["id"]) == self.bot_user.id]

    def answers(self, interaction: Interaction) -> list[dict[str, Any]]:
        """The messages the bot showed for an interaction: its response, then its followups."""
        ids = ([interaction.original_id] if interaction.original_id else []) + interaction.followup_ids
        return [self.messages[i] for i in ids if i in self.messages and not self.messages[i]["flags"] & LOADING]

    async def wait_for_answers(self, interaction: Interaction) -> list[dict[str, Any]]:
        """The bot's answers to an interaction, once there is one."""
        return await eventually(
            lambda: self.answers(interaction), f"an answer to {interaction.user.name}'s interaction"
        )

    def typing_calls(self, channel: Channel) -> list[Call]:
        return [c for c in self.calls if c.method == "POST" and c.path == f"/channels/{channel.id}/typing"]

    # the gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        connection = _Connection(ws)
        await connection.send({"op": 10, "d": {"heartbeat_interval": 45_000}})
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(frame.data)
                if payload["op"] == 1:
                    await connection.send({"op": 11})
                elif payload["op"] == 2:
                    await self._identify(connection, payload["d"])
                elif payload["op"] == 6:
                    self._sockets.append(connection)
                    await connection.dispatch("RESUMED", {})
        finally:
            if connection in self._sockets:
                self._sockets.remove(connection)
        return ws

    async def _identify(self, connection: _Connection, identify: dict[str, Any]) -> None:
        self.identifies.append(identify)
        if identify["intents"] & MESSAGE_CONTENT_INTENT and not self.message_content_enabled:
            await connection.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        connection.shard_id, connection.shard_count = identify.get("shard", [0, 1])
        guilds = [g for g in self.guilds.values() if connection.serves(g.id)]
        await connection.dispatch(
            "READY",
            {
                "v": API_VERSION,
                "user": self.bot_user.payload(),
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": f"session-{self.new_id()}",
                "resume_gateway_url": self.gateway_url,
                "application": {"id": str(self.application_id), "flags": 0},
                "shard": [connection.shard_id, connection.shard_count],
            },
        )
        for guild in guilds:
            await connection.dispatch("GUILD_CREATE", self._guild_payload(guild))
        self._sockets.append(connection)

    async def _dispatch(self, event: str, data: dict[str, Any], guild_id: int | None) -> None:
        targets = [c for c in self._sockets if c.serves(guild_id)]
        if not targets:
            raise AssertionError("the bot is not connected to the gateway")
        for connection in targets:
            await connection.dispatch(event, data)

    def _guild_payload(self, guild: Guild) -> dict[str, Any]:
        users = {**self.users, self.bot_user.id: self.bot_user}
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "owner_id": str(next(iter(guild.members))),
            "roles": [r.payload(i) for i, r in enumerate(guild.roles.values())],
            "channels": [c.payload() for c in guild.channels.values() if c.type != 11],
            "threads": [c.payload() for c in guild.channels.values() if c.type == 11],
            "members": [self._member(guild, users[uid]) | {"user": users[uid].payload()} for uid in guild.members],
            "member_count": len(guild.members),
            "features": [],
            "emojis": [],
            "stickers": [],
            "large": False,
            "unavailable": False,
            "voice_states": [],
            "presences": [],
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "system_channel_flags": 0,
            "joined_at": _now(),
        }

    def _member(self, guild: Guild, user: User) -> dict[str, Any]:
        return {
            "roles": [str(r) for r in guild.members.get(user.id, [])],
            "joined_at": _now(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
        }

    # interactions

    def _command_data(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        command = next((c for c in self.commands if c["name"] == name), None)
        if command is None:
            raise AssertionError(f"/{name} was not synced; synced: {[c['name'] for c in self.commands]}")
        kinds = {o["name"]: o["type"] for o in command.get("options", [])}
        unknown = set(options) - set(kinds)
        if unknown:
            raise AssertionError(f"/{name} has no option {sorted(unknown)}")
        return {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": [{"name": k, "type": kinds[k], "value": v} for k, v in options.items()],
        }

    async def _interact(
        self,
        kind: int,
        user: User,
        channel: Channel,
        data: dict[str, Any],
        *,
        message: dict[str, Any] | None = None,
    ) -> Interaction:
        interaction = Interaction(self.new_id(), f"token-{self.new_id()}", user, channel)
        if message is not None:
            interaction.target_message_id = int(message["id"])
        self.interactions[interaction.token] = interaction
        payload: dict[str, Any] = {
            "id": str(interaction.id),
            "application_id": str(self.application_id),
            "type": kind,
            "token": interaction.token,
            "version": 1,
            "data": data,
            "channel_id": str(channel.id),
            "channel": channel.payload(),
            "locale": "en-US",
            "app_permissions": str(VIEW_AND_SEND),
            "entitlements": [],
            "attachment_size_limit": 8 * 1024 * 1024,
        }
        if channel.guild_id is not None:
            guild = self.guilds[channel.guild_id]
            member = self._member(guild, user) | {"user": user.payload()}
            member["permissions"] = str(guild.permissions_of(user.id))
            payload |= {
                "guild_id": str(guild.id),
                "guild_locale": "en-US",
                "member": member,
                "context": 0,
                "authorizing_integration_owners": {"0": str(guild.id)},
            }
        else:
            payload |= {"user": user.payload(), "context": 1, "authorizing_integration_owners": {"0": "0"}}
        if message is not None:
            payload["message"] = _public(message)
        await self._dispatch("INTERACTION_CREATE", payload, channel.guild_id)
        return interaction

    def _interaction_callback(self, interaction: Interaction, body: dict[str, Any]) -> dict[str, Any]:
        interaction.callbacks.append(body)
        kind, data = body["type"], body.get("data") or {}
        flags = int(data.get("flags") or 0)
        message: dict[str, Any] | None = None
        if kind == 4:  # a message
            message = self._bot_message(interaction.channel, data, visible_to=interaction.user)
            interaction.original_id = int(message["id"])
        elif kind == 5:  # "thinking…" until the first followup
            message = self._bot_message(
                interaction.channel, {"content": "", "flags": flags | LOADING}, interaction.user
            )
            interaction.original_id = int(message["id"])
        elif kind == 6:  # a button press acknowledged; its message is what later edits change
            interaction.original_id = interaction.target_message_id
        elif kind == 7:  # a button press answered by editing its message
            interaction.original_id = interaction.target_message_id
            assert interaction.original_id is not None
            message = self._edit(interaction.original_id, data)
        response: dict[str, Any] = {
            "interaction": {
                "id": str(interaction.id),
                "type": 2,
                "response_message_id": str(interaction.original_id) if interaction.original_id else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            }
        }
        if message is not None:
            response["resource"] = {"type": kind, "message": _public(message)}
        return response

    def _followup(self, interaction: Interaction, body: dict[str, Any]) -> dict[str, Any]:
        original = self.messages.get(interaction.original_id or 0)
        if original is not None and original["flags"] & LOADING:
            # Discord shows the first followup after "thinking…" in place of it
            flags = (original["flags"] & ~LOADING) | int(body.get("flags") or 0)
            return self._edit(int(original["id"]), body | {"flags": flags})
        message = self._bot_message(interaction.channel, body, visible_to=interaction.user)
        interaction.followup_ids.append(int(message["id"]))
        return message

    # messages

    def _new_message(
        self,
        channel: Channel,
        author: User,
        content: str,
        *,
        mentions: list[User] = (),  # type: ignore[assignment]
        reference: dict[str, Any] | None = None,
        flags: int = 0,
        components: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": str(self.new_id()),
            "channel_id": str(channel.id),
            "author": author.payload(),
            "content": content,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [u.payload() for u in mentions],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 19 if reference else 0,
            "flags": flags,
            "components": components or [],
        }
        if channel.guild_id is not None:
            message["guild_id"] = str(channel.guild_id)
            message["member"] = self._member(self.guilds[channel.guild_id], author)
        if reference is not None:
            message["message_reference"] = {
                "message_id": reference["id"],
                "channel_id": reference["channel_id"],
            }
            if channel.guild_id is not None:
                message["message_reference"]["guild_id"] = str(channel.guild_id)
            # Discord embeds the message replied to, without the one it replied to in turn
            message["referenced_message"] = {k: v for k, v in _public(reference).items() if k != "referenced_message"}
        self.messages[int(message["id"])] = message
        self.edits[int(message["id"])] = [content]
        return message

    def _bot_message(self, channel: Channel, body: dict[str, Any], visible_to: User | None = None) -> dict[str, Any]:
        if not (body.get("content") or "").strip() and not int(body.get("flags") or 0) & LOADING:
            raise _DiscordError(400, 50006, "Cannot send an empty message")
        if len(body.get("content") or "") > 2000:
            raise _DiscordError(400, 50035, "Invalid Form Body: content must be 2000 or fewer in length.")
        reference = None
        wanted = body.get("message_reference")
        if wanted:
            reference = self.messages.get(int(wanted["message_id"]))
            if reference is None and wanted.get("fail_if_not_exists", True):
                raise _DiscordError(400, 50035, "Invalid Form Body: message_reference: Unknown message")
        message = self._new_message(
            channel,
            self.bot_user,
            body.get("content") or "",
            reference=reference,
            flags=int(body.get("flags") or 0),
            components=body.get("components"),
        )
        if visible_to is not None:
            message["_visible_to"] = visible_to.id
        return message

    def _edit(self, message_id: int, body: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get(message_id)
        if message is None:
            raise _DiscordError(404, 10008, "Unknown Message")
        if "content" in body:
            if len(body["content"] or "") > 2000:
                raise _DiscordError(400, 50035, "Invalid Form Body: content must be 2000 or fewer in length.")
            message["content"] = body["content"] or ""
            self.edits[message_id].append(message["content"])
        if "components" in body:
            message["components"] = body["components"] or []
        if "flags" in body:
            message["flags"] = int(body["flags"] or 0)
        message["edited_timestamp"] = _now()
        return message

    # REST

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        body = await request.json() if request.can_read_body and request.content_type == "application/json" else None
        call = Call(request.method, path, body, dict(request.query))
        self.calls.append(call)
        result = self._injected(call)
        try:
            result = result or self._route(call)
        except _DiscordError as exc:
            result = _json({"code": exc.code, "message": exc.message}, status=exc.status)
        except Exception as exc:  # a request this imitation cannot take: fail it fast (a 5xx is retried)
            self.unhandled.append(call)
            result = _json({"code": 0, "message": repr(exc)}, status=400)
        call.status = result.status
        bucket = self._bucket_of(call)
        if bucket is not None and bucket.empty_until is None and result.status < 300:
            bucket.empty_until = call.at + bucket.reset_after
            result.headers.update(
                {
                    "X-RateLimit-Bucket": bucket.name,
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": f"{bucket.reset_after:.3f}",
                }
            )
        return result

    def _route(self, call: Call) -> web.Response:
        method, parts = call.method, call.path.strip("/").split("/")
        body = call.body or {}
        match (method, parts):
            case ("GET", ["users", "@me"]):
                return _json(self.bot_user.payload())
            case ("GET", ["oauth2", "applications", "@me"]):
                return _json(self._application())
            case ("GET", ["gateway", "bot"]):
                limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
                return _json({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})
            case ("PUT", ["applications", _, "commands"]):
                # a message's app command has no description; Discord answers with an empty one
                self.commands = [
                    {"description": ""}
                    | c
                    | {"id": str(self.new_id()), "application_id": str(self.application_id), "version": "1"}
                    for c in body
                ]
                return _json(self.commands)
            case ("POST", ["channels", channel_id, "typing"]):
                return web.Response(status=204)
            case ("POST", ["channels", channel_id, "messages"]):
                return _json(_public(self._bot_message(self._channel(channel_id), body)))
            case ("PATCH", ["channels", _, "messages", message_id]):
                return _json(_public(self._edit(int(message_id), body)))
            case ("DELETE", ["channels", _, "messages", message_id]):
                if int(message_id) not in self.messages:
                    raise _DiscordError(404, 10008, "Unknown Message")
                self.delete_message(int(message_id))
                return web.Response(status=204)
            case ("GET", ["channels", channel_id, "messages", message_id]):
                message = self.messages.get(int(message_id))
                if message is None or message["channel_id"] != channel_id:
                    raise _DiscordError(404, 10008, "Unknown Message")
                return _json(_public(message))
            case ("GET", ["channels", channel_id, "messages"]):
                return _json(self._history(self._channel(channel_id), call.query))
            case ("PUT", ["channels", _, "messages", message_id, "reactions", emoji, "@me"]):
                self._own_reaction(int(message_id), unquote(emoji), add=True)
                return web.Response(status=204)
            case ("DELETE", ["channels", _, "messages", message_id, "reactions", emoji, "@me"]):
                self._own_reaction(int(message_id), unquote(emoji), add=False)
                return web.Response(status=204)
            case ("GET", ["channels", _, "messages", message_id, "reactions", emoji]):
                return _json(self._reaction_users(int(message_id), unquote(emoji), call.query))
            case ("POST", ["interactions", _, token, "callback"]):
                return _json(self._interaction_callback(self._interaction(token), body))
            case ("POST", ["webhooks", _, token]):
                return _json(_public(self._followup(self._interaction(token), body)))
            case ("PATCH", ["webhooks", _, token, "messages", which]):
                interaction = self._interaction(token)
                target = interaction.original_id if which == "@original" else int(which)
                return _json(_public(self._edit(target or 0, body)))
            case ("DELETE", ["webhooks", _, token, "messages", which]):
                interaction = self._interaction(token)
                target = interaction.original_id if which == "@original" else int(which)
                if target not in self.messages:
                    raise _DiscordError(404, 10008, "Unknown Message")
                self.delete_message(target or 0)
                return web.Response(status=204)
        self.unhandled.append(call)
        raise _DiscordError(404, 0, f"the local Discord has no {method} {call.path}")

    def _channel(self, channel_id: str) -> Channel:
        channel = self.channels.get(int(channel_id))
        if channel is None:
            raise _DiscordError(404, 10003, "Unknown Channel")
        return channel

    def _interaction(self, token: str) -> Interaction:
        interaction = self.interactions.get(token)
        if interaction is None:
            raise _DiscordError(404, 10015, "Unknown Webhook")
        return interaction

    def _history(self, channel: Channel, query: dict[str, str]) -> list[dict[str, Any]]:
        limit = int(query.get("limit", 50))
        before = int(query.get("before", 1 << 63))
        found = [
            m
            for m in self.messages.values()
            if int(m["channel_id"]) == channel.id and int(m["id"]) < before and not m["flags"] & EPHEMERAL
        ]
        return [_public(m) for m in sorted(found, key=lambda m: -int(m["id"]))[:limit]]

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": "ownchat",
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": {"id": "1", "username": "owner", "discriminator": "0", "avatar": None},
            "verify_key": "0" * 64,
            "flags": 0,
            "interactions_endpoint_url": None,
        }


class _Connection:
    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.sequence = 0
        self.shard_id = 0
        self.shard_count = 1

    def serves(self, guild_id: int | None) -> bool:
        # Discord's rule: a guild lives on shard (guild_id >> 22) % shard_count; DMs on shard 0
        return ((guild_id or 0) >> 22) % self.shard_count == self.shard_id

    async def send(self, payload: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(payload))

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self.sequence += 1
        await self.send({"op": 0, "t": event, "s": self.sequence, "d": data})


class _DiscordError(Exception):
    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _public(message: dict[str, Any]) -> dict[str, Any]:
    public = {k: v for k, v in message.items() if not k.startswith("_")}
    reactions = message.get("_reactions")
    if reactions:
        public["reactions"] = [
            {
                "emoji": {"id": None, "name": emoji},
                "count": len(users),
                "count_details": {"burst": 0, "normal": len(users)},
                "me": False,
                "me_burst": False,
                "burst_colors": [],
            }
            for emoji, users in reactions.items()
        ]
    return public


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # exactly "application/json", as Discord sends it: discord.py compares the header verbatim
    headers = {"Content-Type": "application/json"} | (headers or {})
    return web.Response(body=json.dumps(data).encode(), status=status, headers=headers)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
