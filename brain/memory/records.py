"""The records memory passes around besides the API's own (brain/api_models.py: Turn, a turn of a chat's window;
EarlierTurn, one kept for recall; Fact): what one chat holds, and a generation memory asks of the model."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from brain.api_models import SamplingParams, Turn


@dataclass(frozen=True)
class ChatMemory:
    """What one chat of a member holds: the rolling summary of the turns that left its window, and the window."""

    summary: str  # "" where there is none, or where summaries are off (memory.summaries)
    turns: list[Turn]  # oldest first


@dataclass(frozen=True)
class BackgroundPrompt:
    """A generation that memory asks of the model and no member waits for: a summary fold, a fact extraction."""

    user: str  # whose words it holds: their /forget drops what it left cached in the engine
    messages: list[dict[str, str]]  # chat messages, put in the model's template by whoever runs the model
    sampling: SamplingParams
    # a prompt longer than the model's context keeps its end (a fold's newest lines) rather than failing
    keep_end: bool = False


# how memory reaches the model: the text it answers to a BackgroundPrompt, generated with the engine's background
# priority (brain/service/runtime.py gives it); memory never imports the service, the prompt or the engine
BackgroundModel = Callable[[BackgroundPrompt], Awaitable[str]]
