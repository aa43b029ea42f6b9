"""The brain's HTTP contract, torch-free: the base every model of it shares (Contract, sampling, who and where),
chat, personas, consent, memory and facts, a member's export, and errors.

Two neighbours hold the rest of the contract: brain/api_feedback.py (ratings, the message map of a turn,
which-reply comparisons) and brain/api_openai.py (the OpenAI-compatible routes). The server (brain.service)
and the typed client (bot.client) both import them; the OpenAPI document is generated from them. Nothing here
may import torch or redis.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

PLATFORM_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"
# below this a sampled temperature divides logits into overflow; use 0 for greedy
MIN_TEMPERATURE = 0.01
MAX_CARD_JSON_CHARS = 64_000
REQUEST_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
# a fact about a member is one short sentence: every prompt of theirs states all of them
MAX_FACT_CHARS = 200
FACT_ID_PATTERN = r"^[0-9a-f]{8}$"
# a turn id (hex the brain draws for every reply), or "last": the member's last turn in the chat
RETRY_OF_PATTERN = r"^(last|[0-9a-f]{16})$"


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
