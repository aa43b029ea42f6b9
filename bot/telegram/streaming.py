"""Showing a reply while it is generated: one message edited as text arrives, more past 4,096 characters."""

from __future__ import annotations

import asyncio
import logging

from telegram.error import BadRequest, NetworkError

from bot.telegram.outbox import Outbox
from bot.telegram.splitting import split_message

log = logging.getLogger(__name__)

EMPTY_REPLY = "…"


class StreamedReply:
    """Renders a growing text into the chat, never faster than the outbox's pacer allows.

    Deltas only mark the reply as changed; one background task renders the latest text whenever it
    gets a slot, so a fast model costs no extra Bot API calls and a 429 delays the reply but loses nothing.
    """

    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        self.text = ""
        self._shown: list[tuple[int, str]] = []  # (message id, text shown) per message
        self._changed = asyncio.Event()
        self._final = False
        self._renderer: asyncio.Task[None] | None = None

    def add(self, delta: str) -> None:
        self.text += delta
        if self.text.strip():
            self._changed.set()
            if self._renderer is None:
                self._renderer = asyncio.create_task(self._render_loop(), name="telegram-streamed-reply")

    async def finish(self, text: str) -> None:
        """Show `text` as the complete reply and return once every piece of it is on screen."""
        self.text = text
        self._final = True
        self._changed.set()
        if self._renderer is None:
            self._renderer = asyncio.create_task(self._render_loop(), name="telegram-streamed-reply")
        await self._renderer

    async def _render_loop(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            final = self._final
            try:
                await self._render(final)
            except (BadRequest, NetworkError) as exc:
                if final:
                    raise
                # a failed intermediate edit is retried by the next render, which shows newer text anyway
                log.info("could not update a streamed reply yet: %s", exc)
            if final:
                return

    async def _render(self, final: bool) -> None:
        pieces = split_message(self.text) or ([EMPTY_REPLY] if final else [])
        for index, piece in enumerate(pieces):
            if index < len(self._shown):
                message_id, shown = self._shown[index]
                if shown != piece:
                    await self._edit(index, message_id, piece)
            else:
                self._shown.append((await self.outbox.send(piece), piece))

    async def _edit(self, index: int, message_id: int, piece: str) -> None:
        try:
            await self.outbox.edit(message_id, piece)
        except BadRequest as exc:
            if "message to edit not found" not in exc.message.lower():
                raise
            # the user deleted our message mid-stream: carry on in a new one
            message_id = await self.outbox.send(piece)
        self._shown[index] = (message_id, piece)
