"""The brain's HTTP contract: every request and response model, torch-free.

The server (brain.service) and the typed client (bot.client) both import this module;
the OpenAPI document is generated from it. Nothing here may import torch or redis.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from brain.feedback_records import FeedbackKind

PLATFORM_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"
# seeds are drawn into torch generators, which take 64-bit seeds; positive 63-bit ones are portable
MAX_SEED = 2**63 - 1
# below this a sampled temperature divides logits into overflow; use 0 for greedy
MIN_TEMPERATURE = 0.01
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 128
MAX_CARD_JSON_CHARS = 64_000
REQUEST_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
# a fact about a member is one short sentence: every prompt of theirs states all of them
MAX_FACT_CHARS = 200
FACT_ID_PATTERN = r"^[0-9a-f]{8}$"
# a turn id is hex the brain draws for every reply; "last" in retry_of means the member's last turn in the chat
TURN_ID_PATTERN = r"^[0-9a-f]{16}$"
RETRY_OF_PATTERN = r"^(last|[0-9a-f]{16})$"
# a reply split over several platform messages (Discord's 2000 characters, a stream's pieces) is mapped in one call
MAX_MESSAGES_PER_TURN = 16


def check_unicode(value: Any) -> Any:
    """Refuse text that is not valid Unicode (a lone surrogate from a JSON escape such as "\\udfff"), anywhere in
    ``value``: it could be stored, and would then break every later prompt that includes it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the text is not valid Unicode (it holds a lone surrogate)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_unicode(key)
            check_unicode(item)
    elif isinstance(value, list | tuple):
        for item in value:
            check_unicode(item)
    return value


class Contract(BaseModel):
    """Every model of the API: numbers are finite, and every text is valid Unicode."""

    model_config = ConfigDict(allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        return check_unicode(value)


# llama.cpp's default breakers: a repeat never reaches back across a line, a colon, a quote or an asterisk
DEFAULT_DRY_BREAKERS = ("\n", ":", '"', "*")
MAX_DRY_BREAKERS = 16  # llama.cpp's server bounds a breaker's tokens; these bound the count and the characters
MAX_DRY_BREAKER_CHARS = 20


def _dry_breakers(breakers: list[str] | None) -> list[str] | None:
    if breakers is None:
        return None
    if len(breakers) > MAX_DRY_BREAKERS:
        raise ValueError(f"at most {MAX_DRY_BREAKERS} DRY sequence breakers are allowed")
    if any(not text or len(text) > MAX_DRY_BREAKER_CHARS for text in breakers):
        raise ValueError(f"a DRY sequence breaker must be 1 to {MAX_DRY_BREAKER_CHARS} characters")
    return breakers


DryBreakers = Annotated[list[str] | None, AfterValidator(_dry_breakers)]


class DryFields(Contract):
    """DRY ("don't repeat yourself") sampling under llama.cpp's names; a field left out (None) takes the model
    profile's value (brain config shows it). dry_multiplier 0: off; dry_penalty_last_n -1: the whole context."""

    dry_multiplier: float | None = Field(None, ge=0.0, le=5.0)
    dry_base: float | None = Field(None, ge=1.0, le=4.0)
    dry_allowed_length: int | None = Field(None, ge=1, le=64)
    dry_penalty_last_n: int | None = Field(None, ge=-1, le=131_072)
    dry_sequence_breakers: DryBreakers = None
    # ownchat's own: DRY over the reply alone, not its prompt (llama.cpp looks over the whole context)
    dry_reply_only: bool | None = None

    def dry_values(self) -> dict[str, Any]:
        """The DRY fields this request sets, under llama.cpp's names (those llama.cpp knows)."""
        return {
            name: getattr(self, name)
            for name in DryFields.model_fields
            if getattr(self, name) is not None and name != "dry_reply_only"
        }


class ChatKind(str, Enum):
    direct = "direct"
    group = "group"


def _temperature(value: float | None) -> float | None:
    if value is not None and 0 < value < MIN_TEMPERATURE:
        raise ValueError(f"a temperature must be 0 (greedy) or at least {MIN_TEMPERATURE}")
    return value


Temperature = Annotated[float, AfterValidator(_temperature)]


class SamplingParams(DryFields):
    """How a reply is drawn. temperature 0 means greedy decoding."""

    temperature: Temperature = Field(0.7, ge=0.0, le=5.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    top_k: int = Field(50, ge=0, le=100_000)
    repetition_penalty: float = Field(1.1, ge=1.0, le=3.0)
    max_new_tokens: int = Field(256, ge=1, le=4096)
    # beam search (num_beams > 1) is deterministic and only for non-streaming requests
    num_beams: int = Field(1, ge=1, le=8)


class SamplingOverrides(DryFields):
    """A request's overrides of its persona's sampling; fields left out keep the persona's values."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    temperature: Temperature | None = Field(None, ge=0.0, le=5.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, le=100_000)
    repetition_penalty: float | None = Field(None, ge=1.0, le=3.0)
    max_new_tokens: int | None = Field(None, ge=1, le=4096)
    num_beams: int | None = Field(None, ge=1, le=8)


class UserRef(Contract):
    platform: str = Field(pattern=PLATFORM_PATTERN, examples=["telegram"])
    user_id: str = Field(pattern=ID_PATTERN, examples=["123456"])

    @property
    def key(self) -> str:
        """The namespaced id, e.g. ``telegram:123``."""
        return f"{self.platform}:{self.user_id}"


class ChatRef(UserRef):
    chat_id: str = Field(pattern=ID_PATTERN, examples=["123456"])
    chat_kind: ChatKind = ChatKind.direct


class ContextMessage(Contract):
    """An earlier message of a thread or reply chain that the platform shows the bot."""

    author: str = Field(max_length=128)
    text: str = Field(max_length=8000)
    from_bot: bool = False


class ChatRequest(ChatRef):
    display_name: str = Field("", max_length=128)
    text: str = Field("", description="the member's message; ignored (may be empty) with retry_of")
    stream: bool = False
    context: list[ContextMessage] = Field(default_factory=list, max_length=20)
    # overrides of the persona's sampling defaults, e.g. {"temperature": 0} for greedy replies
    sampling: SamplingOverrides | None = None
    request_id: str | None = Field(
        None,
        pattern=REQUEST_ID_PATTERN,
        description="an idempotency key (a bot uses the platform's message id): a request with a key that this user "
        "already sent within the memory TTL is answered again, but its turn is not stored twice",
    )
    retry_of: str | None = Field(
        None,
        pattern=RETRY_OF_PATTERN,
        description='/retry: a turn id of this member in this chat, or "last" (their last turn here); the brain '
        "answers that turn's message again (the message is not stored twice, the first reply is kept) and the "
        "new turn is paired with the first one. 404 unknown_turn when there is none",
    )
    retry_message: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="/retry as a reply to one of the bot's messages in this chat: that message's turn (as mapped by "
        "POST /v1/turns/{turn_id}/messages) is answered again, as with retry_of; give one of the two at most",
    )

    # the document says what the validator below checks, so that a request valid by it is never refused
    model_config = ConfigDict(
        json_schema_extra={
            "not": {"required": ["retry_of", "retry_message"]},
            "anyOf": [{"required": ["text"]}, {"required": ["retry_of"]}, {"required": ["retry_message"]}],
        }
    )

    @model_validator(mode="after")
    def _one_retry(self) -> ChatRequest:
        if self.retry_of is not None and self.retry_message is not None:
            raise ValueError("give retry_of or retry_message, not both")
        if "text" not in self.model_fields_set and not self.is_retry:
            raise ValueError("text is missing: only a retry (retry_of, retry_message) may leave it out")
        return self

    @property
    def is_retry(self) -> bool:
        return self.retry_of is not None or self.retry_message is not None


FinishReason = Literal["stop", "length", "cancelled"]


class ChatReply(Contract):
    reply: str
    persona: str
    tokens: int
    finish_reason: FinishReason
    logged: bool = Field(description="whether this turn went into the user's training log (opted in)")
    adapter: str | None = None
    turn_id: str | None = Field(
        None,
        description="the id of this reply, to rate it (POST /v1/feedback) or map its messages to it; None when it "
        "was not kept (a request_id answered again, or the member was forgotten meanwhile)",
    )
    compare: bool = Field(
        False,
        description="ask the member which reply they prefer: have this message answered again (retry_of this "
        "turn), show both, and send their choice to POST /v1/compare",
    )


class CompareConsent(Contract):
    """A member agrees (or no longer agrees) to be asked now and then which of two replies they prefer."""

    agreed: bool


class CompareConsentState(Contract):
    agreed: bool = Field(description="asked which reply they prefer: opted in, and agreed since their opt-in")
    opted_in: bool
    share: float = Field(description="of an agreeing member's messages, the share answered with two replies")


class ComparisonRequest(ChatRef):
    """The member (user_id) preferred one of two replies to their message: the first and its retry, or the other
    way round. Kept as one preference pair."""

    chosen_turn_id: str = Field(pattern=TURN_ID_PATTERN)
    rejected_turn_id: str = Field(pattern=TURN_ID_PATTERN)

    @model_validator(mode="after")
    def _two_replies(self) -> ComparisonRequest:
        if self.chosen_turn_id == self.rejected_turn_id:
            raise ValueError("the chosen and the rejected reply must be two different turns")
        return self


class ComparisonResult(Contract):
    stored: bool
    reason: str = Field(description="what happened, in words a member can be shown")


class StreamDelta(Contract):
    """One server-sent ``delta`` event of a streamed chat reply; a final ``done`` event carries ChatReply."""

    delta: str


class ErrorDetail(Contract):
    code: str
    message: str


class ErrorBody(Contract):
    error: ErrorDetail


class Persona(Contract):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$")
    description: str = Field("", max_length=300)
    system_prompt: str = Field(min_length=1, max_length=8000)
    greeting: str = Field("", max_length=1000)
    sampling: SamplingParams = SamplingParams()


class PersonaList(Contract):
    presets: list[Persona]


class PersonaScope(str, Enum):
    user = "user"
    chat = "chat"


class PersonaSet(ChatRef):
    """Pick a preset, set a custom system prompt, or import a SillyTavern chara_card_v2 card: exactly one."""

    # the document says what the validators below check, so that a request valid by it is never refused
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": [name], "not": {"anyOf": [{"required": [other]} for other in others]}}
                for name, others in (("preset", ("custom", "card")), ("custom", ("preset", "card")),
                                     ("card", ("preset", "custom")))
            ]
        }
    )  # fmt: skip

    preset: str | None = Field(None, max_length=48)
    custom: str | None = Field(None, max_length=100_000, pattern=r"\S")
    card: dict[str, Any] | None = None

    @field_validator("card")
    @classmethod
    def _card_size(cls, card: dict[str, Any] | None) -> dict[str, Any] | None:
        # measured before any macro of the card is expanded
        if card is not None and len(json.dumps(card)) > MAX_CARD_JSON_CHARS:
            raise ValueError(f"the card is larger than {MAX_CARD_JSON_CHARS} characters of JSON")
        return card

    @model_validator(mode="after")
    def _exactly_one(self) -> PersonaSet:
        given = [v for v in (self.preset, self.custom, self.card) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of preset, custom or card")
        if self.custom is not None and not self.custom.strip():
            raise ValueError("a custom persona needs some text")
        return self


class PersonaState(Contract):
    name: str
    custom: bool
    scope: PersonaScope
    system_prompt: str
    greeting: str = ""


class PrivacyNotice(Contract):
    version: str
    text: str


class OptOut(Contract):
    # strict: deleting a member's data is asked for with true, never with 1, 0.0 or "yes"
    delete_logs: StrictBool = False


class ConsentState(Contract):
    opted_in: bool
    version: str | None = None
    at: datetime | None = None
    logged_turns: int = 0


class ForgetResult(Contract):
    forgotten: bool
    deleted_keys: int


class Turn(Contract):
    role: Literal["user", "assistant"]
    text: str
    ts: float
    tokens: int = 0


class MemoryView(Contract):
    summary: str
    turns: list[Turn]
    persona: str
    # False where no summaries are written (memory.summaries): older turns are kept for recall instead
    summaries: bool = True


class ResetResult(Contract):
    cleared_turns: int


class LogEntry(Contract):
    id: str
    chat_id: str
    user_text: str
    reply: str
    consent_version: str
    persona: str
    ts: float


class FactSource(str, Enum):
    pinned = "pinned"
    extracted = "extracted"


class Fact(Contract):
    """A fact about the member, stated in their prompts where the chat may use it."""

    id: str = Field(pattern=FACT_ID_PATTERN)
    text: str
    source: FactSource = Field(description="pinned by the member (/remember), or extracted from a message")
    chat_id: str = Field(description="the chat it was stated in")
    chat_kind: ChatKind = Field(description="a fact from a group chat is used only in that group")
    ts: float
    quote: str = Field("", description="for an extracted fact: the message it was picked out of")


class FactList(Contract):
    """The member's facts that the chat asked about may use (all of them in a direct chat), oldest first."""

    facts: list[Fact]


class FactPin(ChatRef):
    """A fact the member pins (/remember TEXT) in this chat."""

    text: str = Field(min_length=1, max_length=MAX_FACT_CHARS)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("the fact is empty")
        return " ".join(text.split())


class FactsDeleted(Contract):
    deleted: int


class EarlierTurn(Turn):
    """A turn that left a chat's window, kept so that it can be recalled when a later message matches it."""

    chat_id: str
    chat_kind: ChatKind


class TurnMessages(Contract):
    """Which platform messages show a turn (every piece of a split reply), so a reaction on one finds its turn."""

    platform: str = Field(pattern=PLATFORM_PATTERN, examples=["discord"])
    chat_id: str = Field(pattern=ID_PATTERN)
    message_ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(min_length=1, max_length=MAX_MESSAGES_PER_TURN)


class TurnMessagesResult(Contract):
    turn_id: str
    mapped: int = Field(description="how many message ids now point at the turn")


def _exact_rating(value: Any) -> Any:
    # JSON's true and 1.0 are not ratings: only the integers the contract names are
    if type(value) is not int:
        raise ValueError("a rating is the integer -1, 0 or 1")
    return value


RatingValue = Annotated[Literal[-1, 0, 1], BeforeValidator(_exact_rating), Field(json_schema_extra={"type": "integer"})]


class FeedbackRequest(ChatRef):
    """A member (user_id: the RATER) rates one of the bot's replies, named by its turn id or by one of its
    platform messages (exactly one of the two). rating 0: the reaction was removed (the rating is deleted)."""

    # the document says what the validator below checks, so that a request valid by it is never refused
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["turn_id"], "not": {"required": ["message_id"]}},
                {"required": ["message_id"], "not": {"required": ["turn_id"]}},
            ]
        }
    )

    turn_id: str | None = Field(None, pattern=TURN_ID_PATTERN)
    message_id: str | None = Field(None, pattern=ID_PATTERN)
    rating: RatingValue
    kind: FeedbackKind = "reaction"

    @model_validator(mode="after")
    def _exactly_one_target(self) -> FeedbackRequest:
        if (self.turn_id is None) == (self.message_id is None):
            raise ValueError("give exactly one of turn_id or message_id")
        return self


class FeedbackResult(Contract):
    turn_id: str
    rating: Literal[-1, 0, 1]
    stored: bool = Field(description="kept for training: rater and author were both opted in")
    reason: str = Field(description="why it was or was not kept, in words a member can be shown")


class ExportedRating(Contract):
    """One rating the member gave that is kept for training."""

    turn_id: str
    rating: Literal[-1, 1]
    served_by: str | None = None
    at: str


class ExportedTurn(Contract):
    """One reply of the bot to the member, kept so that it can be rated or retried: what the model saw and said."""

    turn_id: str
    platform: str
    chat_id: str
    chat_kind: str
    prompt: list[dict[str, str]]
    reply: str
    adapter: str | None = Field(None, description="the adapter that wrote the reply; none: the base model")
    retry_of: str | None = None
    at: str


class ExportedPersona(Contract):
    """A group persona the member wrote: the one a group uses now, or an earlier version kept turns still name."""

    platform: str
    chat_id: str
    name: str
    system_prompt: str
    in_use: bool = Field(description="whether the group uses it now")


class ExportedMessage(Contract):
    """A platform message (a piece of one of the bot's replies to the member) mapped to its turn, for ratings."""

    platform: str
    chat_id: str
    message_id: str
    turn_id: str


class UserExport(Contract):
    user: str
    profile: dict[str, str]
    chats: dict[str, MemoryView]
    log: list[LogEntry]
    facts: list[Fact] = []
    earlier_turns: list[EarlierTurn] = []
    ratings: list[ExportedRating] = []
    turns: list[ExportedTurn] = []
    personas: list[ExportedPersona] = []
    messages: list[ExportedMessage] = []


class Stats(Contract):
    users: int
    opted_in: int
    log_entries: int
    requests_served: int
    model: str


# OpenAI-compatible /v1/chat/completions (stateless; a subset of the official schema)


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
