"""Answering one chat message, the same on every platform: the brain's reply streamed into a StreamedReply,
and a message the brain could not take asked again, patiently, while the member is told what is going on.

A message the brain surely never took (its connection refused, or 502/503/504: see BrainClient) is asked
again with backoff for up to `window_s` seconds after the first refusal, under one "still thinking…" notice
that the answer then takes the place of; past the window the notice says plainly that the message was not
answered. Its request carries an idempotency key (`request_id`), so that a turn the brain did take is stored
once however often it is asked, and a request whose outcome the bot does not know (the connection dropped, a
proxy answered 502, a stream broke off before its end) is asked again too: the brain answers it with the reply
it kept, and its turn id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bot.client import BrainClient, BrainError, BrainUnavailable
from bot.commands import friendly_error
from bot.feedback import link_messages
from bot.streaming import StreamedReply
from brain.api_models import ChatReply, ChatRequest

log = logging.getLogger(__name__)

STILL_THINKING = "Still thinking… my brain is unavailable for a moment. I'll answer here as soon as it is back."
NOT_ANSWERED = (
    "Sorry, I could not answer this message: my brain was unavailable for too long. Please send it again later."
)
# between two tries of a message while the brain is away: the client's backoff, doubling up to this
MAX_BACKOFF_S = 5.0


async def answer(
    client: BrainClient,
    request: ChatRequest,
    reply: StreamedReply,
    *,
    window_s: float,
    on_screen: Callable[[], Awaitable[object]] | None = None,
    refused: Callable[[BrainError], Awaitable[bool]] | None = None,
) -> ChatReply | None:
    """Stream the brain's reply to `request` into `reply`; a failure ends in a short notice, never in silence.

    Once the whole reply is shown, the brain is told which messages show it (so reactions on them rate it), and
    the reply is returned; None when it did not come. `on_screen` is awaited once, as the first words (or the
    notice) go to the screen. `refused` may show a refusal of the brain (not an outage) itself, where nothing is
    on screen yet: it returns True when it did.
    """
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    delay = client.backoff_s
    while True:
        try:
            # within a window every try is this loop's, so that the window is what the setting says; without one,
            # the client's own few quick tries are all there are
            retries = 0 if window_s > 0 else None
            async with contextlib.aclosing(client.chat_stream(request, retries=retries)) as items:
                fresh = ""  # what this try has received
                async for item in items:
                    if on_screen is not None:
                        await on_screen()
                        on_screen = None
                    if isinstance(item, ChatReply):
                        await reply.finish(item.reply)
                        if item.turn_id is not None:
                            ids = [reply.screen.message_id(message) for message in reply.messages]
                            await link_messages(client, request, item.turn_id, ids)
                        return item
                    fresh += item
                    # asked again, the brain streams the kept reply from its start: what is shown already stays
                    if fresh.startswith(reply.text):
                        if len(fresh) > len(reply.text):
                            reply.add(fresh[len(reply.text) :])
                    elif not reply.text.startswith(fresh):
                        reply.show(fresh)
            return None
        except BrainUnavailable as exc:
            error: BrainError = exc
            # the brain answers a request asked again with its key with the reply it kept, so a request whose
            # outcome is unknown is asked again too; one without a key only when the brain surely never took it
            if (exc.never_handled or request.request_id) and window_s > 0:
                deadline = deadline if deadline is not None else loop.time() + window_s
                wait = min(delay, deadline - loop.time())
                if wait > 0:
                    if not reply.started:
                        reply.hold(STILL_THINKING)
                        if on_screen is not None:
                            await on_screen()
                            on_screen = None
                    log.info("the brain could not take a message of %s; asking again in %.1f s", request.key, wait)
                    await asyncio.sleep(wait)
                    delay = min(delay * 2, MAX_BACKOFF_S)
                    continue
        except BrainError as exc:
            error = exc
            if refused is not None and not reply.started and await refused(exc):
                return None
        log.warning("no reply from the brain for %s: %s %s", request.key, error.code, error.message)
        gave_up = deadline is not None and isinstance(error, BrainUnavailable) and not reply.text.strip()
        await reply.cut_off(NOT_ANSWERED if gave_up else friendly_error(error))
        return None
