"""The brain's HTTP contract for its OpenAI-compatible routes (/v1/chat/completions, /v1/completions): stateless,
a subset of the official schema with vLLM's and llama.cpp's extensions. Torch-free, like brain/api_models.py,
whose base it builds on.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from brain.api_models import Contract, DryFields, SamplingParams, Temperature

# seeds are drawn into torch generators, which take 64-bit seeds; positive 63-bit ones are portable
MAX_SEED = 2**63 - 1
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 128


class OAIMessage(Contract):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=100_000)


class OAIStreamOptions(Contract):
    include_usage: bool = False


class OAISampling(DryFields):
    """What the OpenAI-style requests share, with vLLM's extensions top_k (-1 or 0: off) and repetition_penalty,
    and llama.cpp's DRY fields."""

    model: str = "default"
    stream: bool = False
    stream_options: OAIStreamOptions | None = None
    temperature: Temperature = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(-1, ge=-1, le=100_000)
    repetition_penalty: float = Field(1.0, ge=1.0, le=3.0)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)

    @field_validator("stop")
    @classmethod
    def _bounded_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are allowed")
        if any(not text for text in stops):
            raise ValueError("a stop string must not be empty")
        if any(len(text) > MAX_STOP_CHARS for text in stops):
            raise ValueError(f"a stop string may be at most {MAX_STOP_CHARS} characters")
        return stop

    def sampling(self, max_new_tokens: int) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature, top_p=self.top_p, top_k=max(self.top_k, 0),
            repetition_penalty=self.repetition_penalty, max_new_tokens=max_new_tokens, **self.dry_values(),
        )  # fmt: skip

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class OAIChatRequest(OAISampling):
    messages: list[OAIMessage] = Field(min_length=1, max_length=1024)
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

    prompt: str | list[Annotated[int, Field(ge=0, lt=2**31)]] = Field(max_length=100_000)
    max_tokens: int = Field(16, ge=1, le=4096)

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, prompt: str | list[int]) -> str | list[int]:
        if not (prompt.strip() if isinstance(prompt, str) else prompt):
            raise ValueError("the prompt is empty")
        return prompt


class OAIChoice(Contract):
    index: int = 0
    message: OAIMessage
    finish_reason: Literal["stop", "length"]


class OAIUsage(Contract):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class OAIChatResponse(Contract):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[OAIChoice]
    usage: OAIUsage


class OAICompletionChoice(Contract):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"]


class OAICompletionResponse(Contract):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[OAICompletionChoice]
    usage: OAIUsage
