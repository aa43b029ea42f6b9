"""Asking the brain for a reply and showing it as it streams, or a friendly word when it cannot answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx

from bot.client import BrainClient, BrainError, BrainUnavailable
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
            aclosing(chat_with_retries(client, request)) as pieces,
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


async def chat_with_retries(client: BrainClient, request: ChatRequest) -> AsyncIterator[str | ChatReply]:
    """client.chat_stream, tried again with backoff while the brain cannot have seen the message.

    A chat turn is stored by the brain, so it is only repeated when the brain refused it (503) or was
    never reached; once a reply has begun, or the brain went quiet mid-request, the error stands.
    """
    delay = client.backoff_s
    for attempt in range(client.retries + 1):
        begun = False
        try:
            async with aclosing(client.chat_stream(request)) as pieces:
                async for piece in pieces:
                    begun = True
                    yield piece
            return
        except BrainUnavailable as exc:
            if begun or not _never_handled(exc) or attempt == client.retries:
                raise
            log.info("the brain is unavailable (%s); asking again in %.1f s", exc.code, delay)
        await asyncio.sleep(delay)
        delay *= 2


def _never_handled(exc: BrainUnavailable) -> bool:
    return exc.status == 503 or isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout))
