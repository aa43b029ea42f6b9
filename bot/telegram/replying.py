"""Asking the brain for a reply and showing it as it streams, or a friendly word when it cannot answer."""

from __future__ import annotations

import logging
from contextlib import aclosing

from bot.client import BrainClient, BrainError
from bot.commands import friendly_error
from bot.telegram.outbox import Outbox
from bot.telegram.streaming import StreamedReply
from bot.telegram.typing_action import typing_shown
from brain.api_models import ChatReply, ChatRequest

log = logging.getLogger(__name__)


async def stream_answer(client: BrainClient, outbox: Outbox, request: ChatRequest) -> None:
    """Stream the brain's reply into the chat; a failure ends in a short friendly message, never silence."""
    reply = StreamedReply(outbox)
    try:
        async with (
            typing_shown(outbox.bot, outbox.chat_id),
            aclosing(client.chat_stream(request)) as pieces,
        ):
            async for piece in pieces:
                if isinstance(piece, ChatReply):
                    await reply.finish(piece.reply)
                    return
                reply.add(piece)
    except BrainError as exc:
        log.warning("no reply from the brain for %s: %s %s", request.key, exc.code, exc.message)
        if reply.text.strip():
            await reply.finish(reply.text.rstrip() + " …")  # what was shown stays, marked as cut off
        await outbox.send(friendly_error(exc))
