"""From a stream of token ids to a stream of text, for replies shown as they are generated.

    stream = TextStream(handle, tokenizer, stop=["\\nUser:"])
    async for delta in stream:      # str pieces; joined, they are exactly ``stream.text``
        send(delta)
    stream.text                     # the reply, without the stop string
    stream.finish_reason            # "stop" (EOS, stop id or stop string), "length" or "cancelled"

or ``text = await stream.complete()`` to wait for the whole reply.

Tokens are decoded in a small sliding window (the previous piece plus the new tokens) so that the
tokenizer sees the context it needs for spaces, and a delta is held back while it ends in an
incomplete UTF-8 character. Text that could be the start of a stop string is held back too; when a
stop string appears the text before it is released, the request is cancelled in the engine (freeing
its row) and the stream ends with reason ``stop``. Leaving the loop early or cancelling the task
that iterates cancels the request as well.

If the tokenizer fails on this reply's tokens, the request is cancelled and iterating raises
:class:`TextStreamError` (an EngineError); an error from the engine is raised as it is. Either way
``finish_reason`` is ``"error"``, and only this stream ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol

from brain.engine.batching import EngineError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

REPLACEMENT_CHAR = "\ufffd"


class TextStreamError(EngineError):
    """Turning one reply's tokens into text failed; that reply ends, the others go on."""


class TokenStream(Protocol):
    """What TextStream reads: an engine RequestHandle, or anything that streams ids the same way."""

    finish_reason: str | None

    def __aiter__(self) -> AsyncIterator[int]: ...

    def cancel(self) -> None: ...


class TextStream:
    """The text deltas of one streamed reply (see the module docstring); iterate it once."""

    def __init__(
        self,
        handle: TokenStream,
        tokenizer: PreTrainedTokenizerBase,
        *,
        stop: Sequence[str] = (),
        skip_special_tokens: bool = True,
    ) -> None:
        stop = [stop] if isinstance(stop, str) else stop
        if any(not isinstance(text, str) for text in stop):
            raise ValueError("stop strings must be text")
        if any(not text for text in stop):
            raise ValueError("stop strings must not be empty")
        self.handle = handle
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.skip_special_tokens = skip_special_tokens
        self.token_ids: list[int] = []
        self.text = ""
        self.finish_reason: str | None = None
        self._prefix_offset = 0  # the window decoded for context starts here
        self._read_offset = 0  # tokens before this one have been turned into text
        self._pending = ""  # decoded, not yet released: may be the start of a stop string

    def __aiter__(self) -> AsyncIterator[str]:
        return self._deltas()

    async def complete(self) -> str:
        """Wait for the whole reply and return its text."""
        async for _ in self:
            pass
        return self.text

    def cancel(self) -> None:
        self.handle.cancel()

    async def _deltas(self) -> AsyncIterator[str]:
        finished = False
        try:
            async for token in self.handle:
                self.token_ids.append(token)
                released, stopped = self._advance(final=False)
                if released:
                    yield released
                if stopped:
                    self.finish_reason = "stop"
                    self.handle.cancel()
                    finished = True
                    return
            released, stopped = self._advance(final=True)
            self.finish_reason = "stop" if stopped else self.handle.finish_reason
            finished = True
            if released:
                yield released
        except Exception:
            self.finish_reason = "error"
            raise
        finally:
            if not finished:  # an error, a consumer that left, a cancelled task: free the engine row
                self.handle.cancel()

    def _advance(self, *, final: bool) -> tuple[str, bool]:
        """Decode what the new tokens add and match it against the stop strings (see ``_release``)."""
        try:
            return self._release(self._decode_new(final=final), final=final)
        except Exception as error:  # say which step failed: a bare KeyError from a tokenizer explains nothing
            raise TextStreamError(
                f"turning the reply's tokens into text failed: {type(error).__name__}: {error}"
            ) from error

    def _decode_new(self, *, final: bool) -> str:
        window = self.token_ids[self._prefix_offset :]
        known = self._decode(self.token_ids[self._prefix_offset : self._read_offset])
        full = self._decode(window)
        if len(full) <= len(known) or (full.endswith(REPLACEMENT_CHAR) and not final):
            return ""  # nothing new yet, or a character whose bytes have not all arrived
        self._prefix_offset, self._read_offset = self._read_offset, len(self.token_ids)
        return full[len(known) :]

    def _decode(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(
            ids, skip_special_tokens=self.skip_special_tokens, clean_up_tokenization_spaces=False
        )
        assert isinstance(text, str)  # one list of ids decodes to one string; only a batch gives a list
        return text

    def _release(self, delta: str, *, final: bool = False) -> tuple[str, bool]:
        """Add ``delta`` to the held text; return what may be shown now and whether a stop string ended it."""
        released, self._pending, stopped = split_at_stop(self._pending + delta, self.stop, final=final)
        self.text += released
        return released, stopped


def split_at_stop(text: str, stop: Sequence[str], *, final: bool = False) -> tuple[str, str, bool]:
    """Split ``text`` into (shown now, held back, stopped).

    With a stop string in ``text``, everything before the earliest one is shown and ``stopped`` is
    true. Otherwise the longest ending of ``text`` that begins some stop string is held back, unless
    ``final``.
    """
    found = [index for index in (text.find(candidate) for candidate in stop) if index >= 0]
    if found:
        return text[: min(found)], "", True
    if final:
        return text, "", False
    hold = max((_overlap(text, candidate) for candidate in stop), default=0)
    return text[: len(text) - hold], text[len(text) - hold :], False


def _overlap(text: str, candidate: str) -> int:
    """The length of the longest ending of ``text`` that is a beginning of ``candidate``."""
    for size in range(min(len(text), len(candidate) - 1), 0, -1):
        if candidate.startswith(text[len(text) - size :]):
            return size
    return 0
