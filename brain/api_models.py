"""The brain's HTTP contract: every request and response model, torch-free.

The server (brain.service) and the typed client (bot.client) both import this module;
the OpenAPI document is generated from it. Nothing here may import torch or redis.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

PLATFORM_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"


class ChatKind(str, Enum):
    direct = "direct"
    group = "group"


class SamplingParams(BaseModel):
    """How a reply is drawn. temperature 0 means greedy decoding."""

    temperature: float = Field(0.7, ge=0.0, le=5.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    top_k: int = Field(50, ge=0)
    repetition_penalty: float = Field(1.1, ge=1.0, le=3.0)
    max_new_tokens: int = Field(256, ge=1, le=4096)
    # beam search (num_beams > 1) is deterministic and only for non-streaming requests
    num_beams: int = Field(1, ge=1, le=8)


class UserRef(BaseModel):
    platform: str = Field(pattern=PLATFORM_PATTERN, examples=["telegram"])
    user_id: str = Field(pattern=ID_PATTERN, examples=["123456"])

    @property
    def key(self) -> str:
        """The namespaced id, e.g. ``telegram:123``."""
        return f"{self.platform}:{self.user_id}"


class ChatRef(UserRef):
    chat_id: str = Field(pattern=ID_PATTERN, examples=["123456"])
    chat_kind: ChatKind = ChatKind.direct


class ContextMessage(BaseModel):
    """An earlier message of a thread or reply chain that the platform shows the bot."""

    author: str = Field(max_length=128)
    text: str = Field(max_length=8000)
    from_bot: bool = False


class ChatRequest(ChatRef):
    display_name: str = Field("", max_length=128)
    text: str
    stream: bool = False
    context: list[ContextMessage] = Field(default_factory=list, max_length=20)
    # overrides of the persona's sampling defaults, e.g. {"temperature": 0} for greedy replies
    sampling: dict[str, float | int] | None = None


FinishReason = Literal["stop", "length", "cancelled"]


class ChatReply(BaseModel):
    reply: str
    persona: str
    tokens: int
    finish_reason: FinishReason
    logged: bool = Field(description="whether this turn went into the user's training log (opted in)")
    adapter: str | None = None


class StreamDelta(BaseModel):
    """One server-sent ``delta`` event of a streamed chat reply; a final ``done`` event carries ChatReply."""

    delta: str


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Persona(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$")
    description: str = Field("", max_length=300)
    system_prompt: str = Field(min_length=1, max_length=8000)
    greeting: str = Field("", max_length=1000)
    sampling: SamplingParams = SamplingParams()


class PersonaList(BaseModel):
    presets: list[Persona]


class PersonaScope(str, Enum):
    user = "user"
    chat = "chat"


class PersonaSet(ChatRef):
    """Pick a preset, set a custom system prompt, or import a SillyTavern chara_card_v2 card: exactly one."""

    preset: str | None = None
    custom: str | None = None
    card: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PersonaSet:
        given = [v for v in (self.preset, self.custom, self.card) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of preset, custom or card")
        if self.custom is not None and not self.custom.strip():
            raise ValueError("a custom persona needs some text")
        return self


class PersonaState(BaseModel):
    name: str
    custom: bool
    scope: PersonaScope
    system_prompt: str
    greeting: str = ""


class PrivacyNotice(BaseModel):
    version: str
    text: str


class OptOut(BaseModel):
    delete_logs: bool = False


class ConsentState(BaseModel):
    opted_in: bool
    version: str | None = None
    at: datetime | None = None
    logged_turns: int = 0


class ForgetResult(BaseModel):
    forgotten: bool
    deleted_keys: int


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    text: str
    ts: float
    tokens: int = 0


class MemoryView(BaseModel):
    summary: str
    turns: list[Turn]
    persona: str


class ResetResult(BaseModel):
    cleared_turns: int


class LogEntry(BaseModel):
    id: str
    chat_id: str
    user_text: str
    reply: str
    consent_version: str
    persona: str
    ts: float


class UserExport(BaseModel):
    user: str
    profile: dict[str, str]
    chats: dict[str, MemoryView]
    log: list[LogEntry]


class Stats(BaseModel):
    users: int
    opted_in: int
    log_entries: int
    requests_served: int
    model: str


# OpenAI-compatible /v1/chat/completions (stateless; a subset of the official schema)


class OAIMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class OAIStreamOptions(BaseModel):
    include_usage: bool = False


class OAISampling(BaseModel):
    """What the OpenAI-style requests share, with vLLM's extensions top_k (-1 or 0: off) and repetition_penalty."""

    model: str = "default"
    stream: bool = False
    stream_options: OAIStreamOptions | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(-1, ge=-1)
    repetition_penalty: float = Field(1.0, ge=1.0, le=3.0)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    seed: int | None = None

    def sampling(self, max_new_tokens: int) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature, top_p=self.top_p, top_k=max(self.top_k, 0),
            repetition_penalty=self.repetition_penalty, max_new_tokens=max_new_tokens,
        )  # fmt: skip

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class OAIChatRequest(OAISampling):
    messages: list[OAIMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)

    @field_validator("messages")
    @classmethod
    def _has_content(cls, messages: list[OAIMessage]) -> list[OAIMessage]:
        if not any(m.content.strip() for m in messages):
            raise ValueError("the messages hold no text")
        return messages


class OAICompletionRequest(OAISampling):
    """A text completion: the prompt as text, or as token ids (the way vLLM takes a prompt rendered elsewhere)."""

    prompt: str | list[int]
    max_tokens: int = Field(16, ge=1, le=4096)

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, prompt: str | list[int]) -> str | list[int]:
        if not (prompt.strip() if isinstance(prompt, str) else prompt):
            raise ValueError("the prompt is empty")
        return prompt


class OAIChoice(BaseModel):
    index: int = 0
    message: OAIMessage
    finish_reason: Literal["stop", "length"]


class OAIUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class OAIChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[OAIChoice]
    usage: OAIUsage


class OAICompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"]


class OAICompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[OAICompletionChoice]
    usage: OAIUsage
