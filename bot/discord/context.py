"""The earlier messages of a thread or a reply chain, which the model sees as context."""

from __future__ import annotations

import re

import discord

from brain.api_models import ContextMessage

MAX_CONTEXT_MESSAGES = 10
_MAX_TEXT = 8000
_MAX_AUTHOR = 128


async def earlier_messages(
    message: discord.Message, bot_id: int, limit: int = MAX_CONTEXT_MESSAGES
) -> list[ContextMessage]:
    """Oldest first: the messages this one replies to, or else the thread's messages before it."""
    if message.reference is not None and message.reference.message_id is not None:
        earlier = await _reply_chain(message, limit)
    elif isinstance(message.channel, discord.Thread):
        earlier = [m async for m in message.channel.history(limit=limit, before=message)]
    else:
        earlier = []
    context = [_as_context(m, bot_id) for m in reversed(earlier)]
    return [c for c in context if c.text]


async def _reply_chain(message: discord.Message, limit: int) -> list[discord.Message]:
    """Newest first, following each message's reference while Discord still has it."""
    chain: list[discord.Message] = []
    current = message
    while len(chain) < limit and (ref := current.reference) is not None and ref.message_id:
        earlier = ref.resolved if isinstance(ref.resolved, discord.Message) else None
        if earlier is None and not isinstance(ref.resolved, discord.DeletedReferencedMessage):
            try:
                earlier = await current.channel.fetch_message(ref.message_id)
            except (discord.NotFound, discord.Forbidden):
                earlier = None
        if earlier is None:
            break
        chain.append(earlier)
        current = earlier
    return chain


def _as_context(message: discord.Message, bot_id: int) -> ContextMessage:
    return ContextMessage(
        author=message.author.display_name[:_MAX_AUTHOR],
        text=readable_text(message, bot_id)[:_MAX_TEXT],
        from_bot=message.author.id == bot_id,
    )


def readable_text(message: discord.Message, bot_id: int) -> str:
    """The message's words with the bot's mention removed and other mentions shown as names."""
    text = without_mention(message.content, bot_id)
    for user in message.mentions:
        if user.id != bot_id:
            text = text.replace(f"<@{user.id}>", f"@{user.display_name}").replace(
                f"<@!{user.id}>", f"@{user.display_name}"
            )
    return text


def without_mention(content: str, user_id: int) -> str:
    """The text of a message addressed to the bot, its mention of the bot taken out."""
    return re.sub(rf"<@!?{user_id}>", " ", content).strip()
