"""Showing a reply while it is generated, on any platform: one message edited as text arrives, more past the
platform's length limit, and a reply cut off midway marked as such.

An adapter supplies a Screen (how to post a message and change one); everything else is decided here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Generic, Protocol, TypeVar

from bot.splitting import split_message

log = logging.getLogger(__name__)

M = TypeVar("M")
EMPTY_REPLY = "…"
CUT_OFF_MARK = " …"


class Screen(Protocol[M]):
    """Where a reply is shown: a platform's messages in one chat."""

    async def post(self, text: str) -> M:
        """Post a new message; returns what `edit` needs to change it."""
        ...

    async def edit(self, message: M, text: str) -> M:
        """Change a posted message's text; returns the message now showing it (a new one if it was deleted)."""
        ...


class StreamedReply(Generic[M]):
    """Renders a growing text onto a Screen: `add` deltas, then `finish` with the whole reply.

    Deltas only mark the reply as changed; one background task renders the latest text whenever it may,
    at most once per `interval_s` (the finished text at once), so a fast model costs no extra API calls
    and a platform that makes the bot wait delays the reply but loses nothing. Use as an async context
    manager, so that a reply abandoned midway leaves no task behind.
    """

    def __init__(self, screen: Screen[M], *, limit: int, interval_s: float = 0.0):
        self.screen = screen
        self.limit = limit
        self.interval_s = interval_s
        self.text = ""
        self._shown: list[tuple[M, str]] = []  # per message: what edits it, and the text it shows
        self._changed = asyncio.Event()
        self._finished = asyncio.Event()
        self._last_render = float("-inf")
        self._renderer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StreamedReply[M]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._renderer is not None and not self._renderer.done():
            self._renderer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renderer

    @property
    def started(self) -> bool:
        """Whether some of the reply is on screen."""
        return bool(self._shown)

    def add(self, delta: str) -> None:
        self.text += delta
        if self.text.strip():
            self._changed.set()
            self._start_rendering()

    async def finish(self, text: str) -> None:
        """Show `text` as the complete reply and return once every piece of it is on screen."""
        self.text = text
        self._finished.set()
        self._changed.set()
        self._start_rendering()
        assert self._renderer is not None
        await self._renderer

    async def cut_off(self) -> None:
        """The reply stops here: what was shown stays, marked as cut off (nothing is shown if nothing came)."""
        if self.text.strip():
            await self.finish(self.text.rstrip() + CUT_OFF_MARK)

    def _start_rendering(self) -> None:
        if self._renderer is None:
            self._renderer = asyncio.create_task(self._render_loop(), name="streamed-reply")

    async def _render_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._changed.wait()
            wait = self._last_render + self.interval_s - loop.time()
            if wait > 0 and not self._finished.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finished.wait(), wait)
            self._changed.clear()
            final = self._finished.is_set()
            try:
                await self._render(self.text, final)
            except Exception as exc:
                if final:
                    raise
                # a failed intermediate update is retried by the next render, which shows newer text anyway
                log.info("could not update a streamed reply yet: %s", exc)
            self._last_render = loop.time()
            if final:
                return

    async def _render(self, text: str, final: bool) -> None:
        pieces = split_message(text, self.limit) or ([EMPTY_REPLY] if final else [])
        for index, piece in enumerate(pieces):
            if index == len(self._shown):
                self._shown.append((await self.screen.post(piece), piece))
            elif self._shown[index][1] != piece:
                self._shown[index] = (await self.screen.edit(self._shown[index][0], piece), piece)
