"""A local Telegram Bot API for tests: python-telegram-bot's real Bot talks to it through `base_url`.

It keeps a small world (users, chats, messages), serves user actions (messages, button presses, reactions) as
updates through `getUpdates` (long polling) or posts them to a webhook, only of the kinds the bot asked for
(`allowed_updates`, which leaves reactions out unless named, as Telegram does), answers the methods the
adapter uses with Telegram's own validation errors, and records every call, so a test asserts what a user
would see on screen.
Faults are injected per method: a 429 with `retry_after`, or any other error; and a test can delete a
message as a member or a moderator would (`delete`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from tests.support.eventually import NeverHappened, eventually

T = TypeVar("T")

DEFAULT_TOKEN = "123456:TEST-telegram-token"
MESSAGE_LIMIT = 4096
# some of the emoji Telegram lets a bot react with (⏳ is not among them)
BOT_REACTIONS = frozenset("👍 👎 ❤ 🔥 👀 🤔 👌 🙏 ✍".split())
# what Telegram sends a bot that names no allowed_updates: everything but these
_NOT_SENT_UNLESS_ASKED = {"message_reaction", "message_reaction_count", "chat_member"}
# request fields that stay strings even when they look like JSON (a text "123" is not a number)
_TEXT_FIELDS = {"text", "url", "secret_token", "callback_query_id", "parse_mode", "action", "language_code"}
_COMMAND = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]+)?")
_MENTION = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{3,32}")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: float | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def flood_error(retry_after: float) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after:g}", retry_after)


@dataclass(frozen=True)
class TgUser:
    id: int
    first_name: str
    username: str | None = None
    is_bot: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        return data

    @property
    def full_name(self) -> str:
        return self.first_name


@dataclass
class TgChat:
    id: int
    type: str  # private, group, supergroup
    title: str = ""
    owner: int | None = None
    admins: set[int] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        if self.type == "private":
            return {"id": self.id, "type": "private", "first_name": self.title}
        return {"id": self.id, "type": self.type, "title": self.title}


@dataclass
class TgMessage:
    chat: TgChat
    message_id: int
    sender: TgUser
    text: str
    date: int
    reply_to: TgMessage | None = None
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None
    # every text this message has shown, first to last (streamed replies are edited)
    versions: list[str] = field(default_factory=list)

    @property
    def buttons(self) -> list[tuple[str, str]]:
        """(label, callback data) of the inline keyboard, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [(b["text"], b.get("callback_data", "")) for row in rows for b in row]

    def to_json(self, *, nested: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "message_id": self.message_id,
            "date": self.date,
            "chat": self.chat.to_json(),
            "from": self.sender.to_json(),
            "text": self.text,
        }
        entities = _entities(self.text) if not self.sender.is_bot else []
        if entities:
            data["entities"] = entities
        if self.reply_to is not None and not nested:
            data["reply_to_message"] = self.reply_to.to_json(nested=True)
        if self.reply_markup:
            data["reply_markup"] = self.reply_markup
        return data


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    status: int = 200
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class _Fault:
    method: str
    error: ApiError
    times: int
    when: Callable[[dict[str, Any]], bool] | None


def _entities(text: str) -> list[dict[str, Any]]:
    found = []
    command = _COMMAND.match(text)
    if command:
        found.append({"type": "bot_command", "offset": 0, "length": utf16_len(command.group())})
    for mention in _MENTION.finditer(text):
        if command and mention.start() < command.end():
            continue
        found.append(
            {"type": "mention", "offset": utf16_len(text[: mention.start()]), "length": utf16_len(mention.group())}
        )
    return found


def _check_markup(text: str, parse_mode: str | None) -> None:
    """A rough version of Telegram's entity parser: enough to reject what it would reject."""
    if parse_mode is None:
        return
    error = None
    if parse_mode == "Markdown":
        for marker in "*_`":
            if text.count(marker) % 2:
                error = f"Can't find end of the entity starting at byte offset {text.rindex(marker)}"
    elif parse_mode == "MarkdownV2":
        unescaped = re.search(r"(?<!\\)[_*\[\]()~`>#+\-=|{}.!]", text)
        if unescaped:
            error = f"Character '{unescaped.group()}' is reserved and must be escaped with the preceding '\\'"
    elif parse_mode == "HTML":
        tags = re.findall(r"</?([a-zA-Z]+)[^>]*>", text)
        if re.search(r"<(?!/?[a-zA-Z]+[^<>]*>)", text) or len(tags) % 2:
            error = "Unsupported start tag or unclosed tag"
    else:
        raise ApiError(400, "Bad Request: unsupported parse_mode")
    if error:
        raise ApiError(400, f"Bad Request: can't parse entities: {error}")


class TelegramApiServer:
    """The Bot API on a free local port; use as `async with TelegramApiServer() as telegram:`."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, bot_username: str = "ownchat_test_bot"):
        self.token = token
        self.bot = TgUser(int(token.split(":")[0]), "ownchat", bot_username, is_bot=True)
        self.calls: list[ApiCall] = []
        self.chats: dict[int, TgChat] = {}
        self.messages: dict[tuple[int, int], TgMessage] = {}
        self.commands: dict[str, list[dict[str, str]]] = {}
        self.webhook: dict[str, Any] | None = None
        self.webhook_posts: list[tuple[int, int]] = []  # (update id, HTTP status of the bot's answer)
        self.callback_answers: dict[str, dict[str, Any] | None] = {}
        self.deleted: list[TgMessage] = []  # by the bot or by a member, in order
        self.drafts: list[tuple[int, int, str]] = []  # (chat id, draft id, text) of every draft, in order
        self.bot_reactions: list[tuple[TgMessage, list[str]]] = []  # the bot's reactions as it set them, in order
        self._users = itertools.count(1001)
        self._groups = itertools.count(1)
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._pending: list[dict[str, Any]] = []
        self._faults: list[_Fault] = []
        self._changed = asyncio.Condition()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._pusher: asyncio.Task[None] | None = None
        self.port = 0
        self.fetched_update_id = 0  # the last update id the bot has acknowledged
        self.allowed_updates: list[str] = []  # as the bot last asked (empty: Telegram's default)
        self.reactions: dict[tuple[int, int, int], list[str]] = {}  # (chat, message, user) -> their emoji

    # lifecycle

    async def __aenter__(self) -> TelegramApiServer:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        await self._notify()
        if self._pusher is not None:
            self._pusher.cancel()
            await asyncio.gather(self._pusher, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """What to give python-telegram-bot as `base_url` (it appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    # the world

    def user(self, first_name: str, username: str | None = None) -> TgUser:
        return TgUser(next(self._users), first_name, username)

    def private_chat(self, user: TgUser) -> TgChat:
        return self._add_chat(TgChat(user.id, "private", user.first_name))

    def group(self, title: str, *, owner: TgUser, admins: tuple[TgUser, ...] = ()) -> TgChat:
        chat_id = -1_000_000_000_000 - next(self._groups)
        return self._add_chat(TgChat(chat_id, "supergroup", title, owner.id, {a.id for a in admins}))

    def _add_chat(self, chat: TgChat) -> TgChat:
        self.chats[chat.id] = chat
        self._message_ids[chat.id] = itertools.count(1)
        return chat

    # what users do

    def message_update(
        self, user: TgUser, chat: TgChat, text: str, *, reply_to: TgMessage | None = None
    ) -> dict[str, Any]:
        """A new message from `user` as Telegram would deliver it (not queued)."""
        message = self._store(chat, user, text, reply_to=reply_to)
        return {"update_id": next(self._update_ids), "message": message.to_json()}

    def send_text(self, user: TgUser, chat: TgChat, text: str, *, reply_to: TgMessage | None = None) -> int:
        """`user` sends `text` in `chat`; returns the update id."""
        return self._queue(self.message_update(user, chat, text, reply_to=reply_to))

    def press(self, user: TgUser, message: TgMessage, label: str) -> str:
        """`user` presses the inline button labelled `label` under `message`; returns the query id."""
        data = dict(message.buttons).get(label)
        if data is None:
            raise AssertionError(f"no button {label!r} under message {message.message_id}: {message.buttons}")
        query_id = f"q{next(self._update_ids)}"
        self.callback_answers[query_id] = None
        query = {
            "id": query_id,
            "from": user.to_json(),
            "message": message.to_json(),
            "chat_instance": str(message.chat.id),
            "data": data,
        }
        self._queue({"update_id": next(self._update_ids), "callback_query": query})
        return query_id

    def react(self, user: TgUser, message: TgMessage, *emoji: str) -> int:
        """`user`'s reactions on `message` become `emoji` (none: they took theirs back); returns the update id."""
        key = (message.chat.id, message.message_id, user.id)
        old = self.reactions.get(key, [])
        self.reactions[key] = list(emoji)
        reaction = {
            "chat": message.chat.to_json(),
            "message_id": message.message_id,
            "user": user.to_json(),
            "date": int(time.time()),
            "old_reaction": [{"type": "emoji", "emoji": e} for e in old],
            "new_reaction": [{"type": "emoji", "emoji": e} for e in emoji],
        }
        return self._queue({"update_id": next(self._update_ids), "message_reaction": reaction})

    def _queue(self, update: dict[str, Any]) -> int:
        self._pending.append(update)
        asyncio.get_running_loop().create_task(self._notify())
        return update["update_id"]

    def delete(self, message: TgMessage) -> None:
        """A member or a moderator deletes a message."""
        del self.messages[(message.chat.id, message.message_id)]
        self.deleted.append(message)

    # what the bot shows

    def bot_messages(self, chat: TgChat) -> list[TgMessage]:
        return [m for (chat_id, _), m in sorted(self.messages.items()) if chat_id == chat.id and m.sender.is_bot]

    def transcript(self, chat: TgChat) -> list[str]:
        return [m.text for m in self.bot_messages(chat)]

    def calls_to(self, method: str, *, ok: bool | None = None) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method and (ok is None or c.ok == ok)]

    async def wait_for_reply(self, chat: TgChat, after: int = 0, *, what: str = "a reply") -> TgMessage:
        """The first bot message in `chat` beyond the first `after` ones."""
        return await self._eventually(
            lambda: next(iter(self.bot_messages(chat)[after:]), None), f"{what} in chat {chat.id}"
        )

    async def wait_for_text(self, chat: TgChat, text: str) -> TgMessage:
        """Wait until a bot message in `chat` shows exactly `text` (a streamed reply, once complete)."""
        return await self._eventually(
            lambda: next((m for m in self.bot_messages(chat) if m.text == text), None),
            f"a bot message {text[:60]!r} in chat {chat.id}",
        )

    async def wait_fetched(self, update_id: int) -> None:
        """Wait until the bot has received the update (polling acknowledged it, or the webhook took it)."""
        await self._eventually(lambda: self.fetched_update_id >= update_id, f"update {update_id} fetched")

    async def _eventually(self, condition: Callable[[], T | None], what: str) -> T:
        """eventually(), whose failure also tells what the bot showed in every chat."""
        try:
            return await eventually(condition, what)
        except NeverHappened as exc:
            shown = {chat.id: self.transcript(chat) for chat in self.chats.values()}
            raise NeverHappened(f"{exc}; bot messages by chat: {shown}") from None

    # faults

    def fail_next(
        self,
        method: str,
        *,
        retry_after: float | None = None,
        code: int = 400,
        description: str = "Bad Request: injected failure",
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Make the next `times` calls of `method` (matching `when`) fail: a 429 given `retry_after`."""
        error = flood_error(retry_after) if retry_after is not None else ApiError(code, description)
        self._faults.append(_Fault(method, error, times, when))

    # the HTTP side

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _read_params(request)
        call = ApiCall(method, params)
        self.calls.append(call)
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            self._raise_injected(method, params)
            handler = getattr(self, f"_api_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(params)
            body: dict[str, Any] = {"ok": True, "result": result}
        except ApiError as exc:
            call.status = exc.code
            body = exc.body()
        await self._notify()
        return web.json_response(body, status=call.status)

    def _raise_injected(self, method: str, params: dict[str, Any]) -> None:
        for fault in self._faults:
            if fault.method == method and fault.times > 0 and (fault.when is None or fault.when(params)):
                fault.times -= 1
                raise fault.error

    def _chat(self, params: dict[str, Any]) -> TgChat:
        chat = self.chats.get(params.get("chat_id"))  # type: ignore[arg-type]
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def _store(
        self,
        chat: TgChat,
        sender: TgUser,
        text: str,
        *,
        reply_to: TgMessage | None = None,
        parse_mode: str | None = None,
        reply_markup: dict[str, Any] | None = None,
    ) -> TgMessage:
        message = TgMessage(
            chat,
            next(self._message_ids[chat.id]),
            sender,
            text,
            int(time.time()),
            reply_to,
            parse_mode,
            reply_markup,
            [text],
        )
        self.messages[(chat.id, message.message_id)] = message
        return message

    @staticmethod
    def _check_text(text: Any, parse_mode: str | None) -> str:
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_len(text) > MESSAGE_LIMIT:
            raise ApiError(400, "Bad Request: message is too long")
        _check_markup(text, parse_mode)
        return text.strip()

    # Bot API methods

    async def _api_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.bot.to_json() | {
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _api_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active")
        offset = int(params.get("offset") or 0)
        if offset:
            self.fetched_update_id = max(self.fetched_update_id, offset - 1)
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        limit = int(params.get("limit") or 100)
        if params.get("allowed_updates") is not None:
            self.allowed_updates = list(params["allowed_updates"])
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        async with self._changed:
            while not self._deliverable() and not self._closing and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())
        return self._deliverable()[:limit]

    def _deliverable(self) -> list[dict[str, Any]]:
        """The pending updates of the kinds the bot asked for; Telegram drops the others."""
        self._pending = [u for u in self._pending if self._wanted(u)]
        return self._pending

    def _wanted(self, update: dict[str, Any]) -> bool:
        kind = next(key for key in update if key != "update_id")
        return kind in self.allowed_updates if self.allowed_updates else kind not in _NOT_SENT_UNLESS_ASKED

    async def _api_deleteWebhook(self, params: dict[str, Any]) -> bool:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return True

    async def _api_setWebhook(self, params: dict[str, Any]) -> bool:
        if not params.get("url"):
            raise ApiError(400, "Bad Request: bad webhook: an HTTPS URL must be provided for webhook")
        self.webhook = params
        if params.get("allowed_updates") is not None:
            self.allowed_updates = list(params["allowed_updates"])
        if params.get("drop_pending_updates"):
            self._pending.clear()
        if self._pusher is None:
            self._pusher = asyncio.get_running_loop().create_task(self._push_to_webhook())
        return True

    async def _api_getWebhookInfo(self, params: dict[str, Any]) -> dict[str, Any]:
        url = self.webhook["url"] if self.webhook else ""
        return {"url": url, "has_custom_certificate": False, "pending_update_count": len(self._pending)}

    async def _api_setMyCommands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands") or []
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command.get("command", "")):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(command.get("description", "")) <= 256:
                raise ApiError(400, "Bad Request: command description is invalid")
        self.commands[json.dumps(params.get("scope") or {"type": "default"})] = commands
        return True

    async def _api_getMyCommands(self, params: dict[str, Any]) -> list[dict[str, str]]:
        return self.commands.get(json.dumps(params.get("scope") or {"type": "default"}), [])

    async def _api_deleteMyCommands(self, params: dict[str, Any]) -> bool:
        self.commands.pop(json.dumps(params.get("scope") or {"type": "default"}), None)
        return True

    async def _api_sendChatAction(self, params: dict[str, Any]) -> bool:
        self._chat(params)
        return True

    async def _api_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        text = self._check_text(params.get("text"), params.get("parse_mode"))
        reply_to = None
        reply = params.get("reply_parameters") or {}
        if reply:
            reply_to = self._message(chat, reply.get("message_id"))
            if reply_to is None and not reply.get("allow_sending_without_reply"):
                raise ApiError(400, "Bad Request: message to be replied not found")
        message = self._store(
            chat,
            self.bot,
            text,
            reply_to=reply_to,
            parse_mode=params.get("parse_mode"),
            reply_markup=params.get("reply_markup"),
        )
        return message.to_json()

    def _message(self, chat: TgChat, message_id: int | None) -> TgMessage | None:
        """The chat's message that a call names by its id; None where the call names none the chat has."""
        return None if message_id is None else self.messages.get((chat.id, message_id))

    def _own_message(self, params: dict[str, Any]) -> TgMessage:
        chat = self._chat(params)
        message = self._message(chat, params.get("message_id"))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if not message.sender.is_bot:
            raise ApiError(400, "Bad Request: message can't be edited")
        return message

    async def _api_editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._own_message(params)
        text = self._check_text(params.get("text"), params.get("parse_mode"))
        markup = params.get("reply_markup")
        if text == message.text and markup == message.reply_markup and params.get("parse_mode") == message.parse_mode:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup "
                "are exactly the same as a current content and reply markup of the message",
            )
        message.text, message.parse_mode, message.reply_markup = text, params.get("parse_mode"), markup
        message.versions.append(text)
        return message.to_json()

    async def _api_deleteMessage(self, params: dict[str, Any]) -> bool:
        chat = self._chat(params)
        message = self._message(chat, params.get("message_id"))
        if message is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        if not message.sender.is_bot and chat.type == "private":
            raise ApiError(400, "Bad Request: message can't be deleted for everyone")
        self.delete(message)
        return True

    async def _api_sendMessageDraft(self, params: dict[str, Any]) -> bool:
        """A draft animates in a private chat while a reply is written; nothing is kept in the chat."""
        chat = self._chat(params)
        if chat.type != "private":
            raise ApiError(400, "Bad Request: drafts can be sent only to private chats")
        draft_id = int(params.get("draft_id") or 0)
        if not draft_id:
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        text = params.get("text") or ""
        if utf16_len(text) > MESSAGE_LIMIT:
            raise ApiError(400, "Bad Request: message is too long")
        _check_markup(text, params.get("parse_mode"))
        self.drafts.append((chat.id, draft_id, text))
        return True

    async def _api_setMessageReaction(self, params: dict[str, Any]) -> bool:
        chat = self._chat(params)
        message = self._message(chat, params.get("message_id"))
        if message is None:
            raise ApiError(400, "Bad Request: message to react not found")
        reaction = params.get("reaction") or []
        if isinstance(reaction, str):
            reaction = json.loads(reaction)
        emoji = [r["emoji"] for r in reaction if r.get("type") == "emoji"]
        if any(e not in BOT_REACTIONS for e in emoji):
            raise ApiError(400, "Bad Request: REACTION_INVALID")
        self.bot_reactions.append((message, emoji))
        return True

    async def _api_editMessageReplyMarkup(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._own_message(params)
        markup = params.get("reply_markup") or None
        if markup == message.reply_markup:
            raise ApiError(400, "Bad Request: message is not modified")
        message.reply_markup = markup
        return message.to_json()

    async def _api_answerCallbackQuery(self, params: dict[str, Any]) -> bool:
        query_id = params.get("callback_query_id")
        if query_id not in self.callback_answers or self.callback_answers[query_id] is not None:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        self.callback_answers[query_id] = {"text": params.get("text"), "show_alert": params.get("show_alert")}
        return True

    def _member(self, chat: TgChat, user_id: int) -> dict[str, Any]:
        user = {"id": user_id, "is_bot": user_id == self.bot.id, "first_name": f"user{user_id}"}
        if user_id == chat.owner:
            return {"status": "creator", "user": user, "is_anonymous": False}
        if user_id in chat.admins:
            rights = [
                "can_be_edited",
                "is_anonymous",
                "can_manage_chat",
                "can_delete_messages",
                "can_manage_video_chats",
                "can_restrict_members",
                "can_promote_members",
                "can_change_info",
                "can_invite_users",
                "can_post_stories",
                "can_edit_stories",
                "can_delete_stories",
            ]
            return {"status": "administrator", "user": user} | {right: right != "is_anonymous" for right in rights}
        return {"status": "member", "user": user}

    async def _api_getChatMember(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        if chat.type == "private":
            raise ApiError(400, "Bad Request: there are no administrators in the private chat")
        return self._member(chat, int(params["user_id"]))

    async def _api_getChatAdministrators(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        chat = self._chat(params)
        if chat.type == "private":
            raise ApiError(400, "Bad Request: there are no administrators in the private chat")
        ids = ([chat.owner] if chat.owner else []) + sorted(chat.admins)
        return [self._member(chat, user_id) for user_id in ids]

    async def _api_getChat(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._chat(params).to_json() | {"accent_color_id": 0, "max_reaction_count": 11}

    async def _api_close(self, params: dict[str, Any]) -> bool:
        return True

    # webhook delivery, as Telegram does it: POST each update with the secret header until answered 200

    async def _push_to_webhook(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                async with self._changed:
                    await self._changed.wait_for(lambda: bool(self.webhook and self._deliverable()))
                update, hook = self._pending[0], self.webhook or {}
                headers = {"Content-Type": "application/json"}
                if hook.get("secret_token"):
                    headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
                try:
                    async with session.post(hook["url"], data=json.dumps(update), headers=headers) as response:
                        status = response.status
                except aiohttp.ClientError:
                    status = 0
                self.webhook_posts.append((update["update_id"], status))
                if status == 200:
                    self._pending.pop(0)
                    self.fetched_update_id = max(self.fetched_update_id, update["update_id"])
                    await self._notify()
                else:
                    await asyncio.sleep(0.05)  # Telegram retries a failing webhook later


async def _read_params(request: web.Request) -> dict[str, Any]:
    raw: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        raw.update(await request.json())
    elif request.can_read_body:
        raw.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _TEXT_FIELDS or not isinstance(value, str):
            params[key] = value
            continue
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params
