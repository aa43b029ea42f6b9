"""Showing a reply while it is generated, on any platform: one message edited as text arrives, more past the
platform's length limit, and a reply cut off midway marked as such.

An adapter supplies a Screen (how to post a message, change one and take one away, and when the platform
would take a call); everything else is decided here once:

- text is taken only when the platform would take the call, so after any wait the next edit shows the newest;
- a message that vanished (deleted by a moderator, an auto-mod bot or the member) or whose edits are refused
  for good is replaced by a new one, and pieces after it move below it, so the whole reply still reads in order;
  a piece that vanished once it was complete counts the same: the platform says so (`vanished`), or the Screen
  finds out (`still_there`) before the reply ends, so that a reply is whole when it ends;
- a call refused with a flood wait is not made again with the text it had: the reply is drawn anew after the wait.
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


class MessageGone(Exception):
    """The message can no longer show the reply: it was deleted, or the platform refuses its edits for good."""


class TryLater(Exception):
    """The platform refused the call and asked the bot to wait; the Screen's `ready` waits it out."""

    def __init__(self, seconds: float):
        super().__init__(f"asked to wait {seconds:g} s")
        self.seconds = seconds


class Screen(Protocol[M]):
    """Where a reply is shown: a platform's messages in one chat."""

    async def ready(self) -> None:
        """Return once the platform would take a call in this chat (after its pacing, or a wait it asked for)."""
        ...

    async def post(self, text: str) -> M:
        """Post a new message; returns what `edit` needs to change it. May raise TryLater."""
        ...

    async def edit(self, message: M, text: str) -> None:
        """Change a posted message's text. Raises MessageGone if it cannot be changed any more; may raise TryLater."""
        ...

    async def delete(self, message: M) -> None:
        """Take a message away, if it is still there (never raises)."""
        ...

    async def still_there(self, message: M, text: str) -> None:
        """Raise MessageGone if a message that shows `text` has vanished; a platform that tells the bot of every
        deletion (StreamedReply.vanished) checks nothing here. May raise TryLater."""
        ...

    async def settle(self) -> None:
        """The reply is complete: whatever shows it only for now (a draft) is made to stay. May raise TryLater."""
        ...

    def message_id(self, message: M) -> str:
        """The platform's id of a posted message (what a reaction on it names)."""
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
        self._notice = ""  # shown until the first words come (see hold)
        self._trailer = ""  # a message of its own after the reply (see cut_off)
        self._shown: list[tuple[M, str]] = []  # per message: what edits it, and the text it shows
        self._vanished: set[str] = set()  # ids of shown messages the platform said were deleted
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
        """Whether some of the reply (or a notice held in its place) is on screen."""
        return bool(self._shown)

    @property
    def messages(self) -> list[M]:
        """The messages that show the reply now, first to last (a vanished one's replacement included)."""
        return [message for message, _ in self._shown]

    def add(self, delta: str) -> None:
        self.text += delta
        if self.text.strip():
            self._changed.set()
            self._start_rendering()

    def vanished(self, message_id: str) -> None:
        """The platform says a message was deleted: if it showed part of this reply, that part is shown anew (and
        the pieces after it move below it)."""
        if any(self.screen.message_id(message) == message_id for message, _ in self._shown):
            self._vanished.add(message_id)
            self._changed.set()
            self._start_rendering()

    def show(self, text: str) -> None:
        """Show `text` in place of the reply's words so far (the brain, asked again, sent another reply)."""
        self.text = text
        self._changed.set()
        self._start_rendering()

    def hold(self, notice: str) -> None:
        """Show `notice` while no words have come; the reply's first words then take its place, in its message."""
        self._notice = notice
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

    async def cut_off(self, notice: str) -> None:
        """The reply stops here: what was shown stays, marked as cut off, and `notice` follows it in a message of
        its own; if no words had come, the notice alone (in place of one held)."""
        if self.text.strip():
            self._trailer = notice
            await self.finish(self.text.rstrip() + CUT_OFF_MARK)
        else:
            await self.finish(notice)

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
            # the platform's waits come before the text is taken, so whatever is drawn after one is the newest
            await self.screen.ready()
            self._changed.clear()
            final = self._finished.is_set()
            try:
                await self._render(self.text, final)
            except TryLater as exc:
                # nothing is sent again as it was: the next round, after the wait, draws the text as it is then
                log.info("the platform asked to wait %.1f s before the reply is drawn again", exc.seconds)
                self._changed.set()
                continue
            except Exception as exc:
                if final:
                    raise
                # a failed intermediate update is retried by the next render, which shows newer text anyway
                log.info("could not update a streamed reply yet: %s", exc)
            self._last_render = loop.time()
            if final and not self._vanished:
                return
            if self._vanished:
                self._changed.set()  # a piece vanished: it is shown again in the next round

    async def _render(self, text: str, final: bool) -> None:
        await self._drop_vanished()
        placeholder = [EMPTY_REPLY] if final else [self._notice] if self._notice else []
        pieces = (split_message(text, self.limit) or placeholder) + split_message(self._trailer, self.limit)
        drawn = set()
        for index, piece in enumerate(pieces):
            if index == len(self._shown):
                self._shown.append((await self.screen.post(piece), piece))
                drawn.add(index)
            elif self._shown[index][1] != piece:
                await self._replace(index, piece)
                drawn.add(index)
        if final:
            # a final text shorter than the streamed one (the brain trimmed it) leaves no stale piece behind
            for message, _ in self._shown[len(pieces) :]:
                await self.screen.delete(message)
            del self._shown[len(pieces) :]
            await self.screen.settle()
            # a complete piece left as it was may have vanished meanwhile: the reply is whole only once each is seen
            # there (the last one was drawn up to the end: an edit into a vanished one fails)
            for index, (message, piece) in enumerate(self._shown[:-1]):
                if index not in drawn:
                    try:
                        await self.screen.still_there(message, piece)
                    except MessageGone:
                        self._vanished.add(self.screen.message_id(message))
                        break

    async def _drop_vanished(self) -> None:
        """Forget the pieces from the first vanished one on; the next render shows them again, in order."""
        ids = [self.screen.message_id(message) for message, _ in self._shown]
        first = next((index for index, id_ in enumerate(ids) if id_ in self._vanished), None)
        self._vanished.clear()
        if first is None:
            return
        log.info("a piece of a streamed reply was deleted; it and the pieces after it are shown again")
        stale = self._shown[first:]
        del self._shown[first:]
        for old, _ in stale[1:]:
            await self.screen.delete(old)

    async def _replace(self, index: int, piece: str) -> None:
        message, _ = self._shown[index]
        try:
            await self.screen.edit(message, piece)
        except MessageGone:
            log.info("a message of a streamed reply is gone; the reply goes on in a new one")
            # one whose edits are refused is still there, showing older text: it goes too; the pieces after it are
            # posted again below the new one (by the caller's loop), so that the reply still reads in order
            stale = self._shown[index:]
            del self._shown[index:]
            for old, _ in stale:
                await self.screen.delete(old)
            self._shown.append((await self.screen.post(piece), piece))
        else:
            self._shown[index] = (message, piece)
