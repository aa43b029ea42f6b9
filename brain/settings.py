"""The one settings object of ownchat: defaults < a YAML file < environment variables.

Each part owns the model of its section: the brain's (redis, model, limits, feedback, brain) are here, memory's
in brain/memory/settings.py, the bots' in bot/settings.py, the trainer's in trainer/settings.py. ``Settings``
composes them with the secrets, and ``load_settings`` reads them all at once, so ``brain config`` shows every
one. The root lives in the brain, whose torch-free modules (the API contract, these settings) every part
imports; the other settings modules hold pydantic models only and import nothing of the project, so no import
cycle forms.

Torch-free and redis-free, so bots import it too. Secrets (tokens, the brain API key, the
Redis password) come from the environment only: a YAML file that names one is refused.
Environment variables use the prefix OWNCHAT_ and ``__`` between levels, for example
``OWNCHAT_MODEL__NAME=/models/mine`` or ``OWNCHAT_LIMITS__RATE_PER_MINUTE=30``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bot.settings import BotSettings
from brain.memory.settings import MemorySettings
from brain.profiles import choose_profile
from trainer.settings import TrainerSettings

CONFIG_ENV = "OWNCHAT_CONFIG"
DEFAULT_CONFIG_FILE = "ownchat.yaml"
SECRET_NAMES = (
    "api_key",
    "redis_password",
    "telegram_token",
    "discord_token",
    "telegram_webhook_secret",
    "vllm_api_key",
    "operator_key",
    "id_key",
)
OPERATOR_KEY_MIN_CHARS = 32
PLACEHOLDERS = {"changeme", "change-me", "secret", "xxx", "your-token-here", "todo"}


class Secrets(BaseSettings):
    """Read from the environment only (OWNCHAT_API_KEY, OWNCHAT_TELEGRAM_TOKEN, ...)."""

    model_config = SettingsConfigDict(env_prefix="OWNCHAT_", extra="ignore")

    api_key: SecretStr | None = None
    redis_password: SecretStr | None = None
    telegram_token: SecretStr | None = None
    telegram_webhook_secret: SecretStr | None = None
    discord_token: SecretStr | None = None
    # the bearer key of an external generation server (model.engine: vllm started with --api-key)
    vllm_api_key: SecretStr | None = None
    # turns the operator's dashboard (/dashboard) on; at least OPERATOR_KEY_MIN_CHARS, and not the API key
    operator_key: SecretStr | None = None
    # keys the hashes that name members in tombstones and adapter names (brain and trainer must share it); unset,
    # a key generated once is kept in Redis, where a stolen dump of the whole Redis holds it too
    id_key: SecretStr | None = None

    @field_validator(*SECRET_NAMES)
    @classmethod
    def _refuse_placeholders(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if value.get_secret_value().strip().lower() in PLACEHOLDERS:
            raise ValueError("is a placeholder; set a real value or leave it unset")
        return value

    @model_validator(mode="after")
    def _operator_key_apart(self) -> Secrets:
        key = self.operator_key.get_secret_value() if self.operator_key else None
        if key is None:
            return self
        if len(key) < OPERATOR_KEY_MIN_CHARS:
            raise ValueError(
                f"OWNCHAT_OPERATOR_KEY must have at least {OPERATOR_KEY_MIN_CHARS} characters; make one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if self.api_key is not None and key == self.api_key.get_secret_value():
            raise ValueError("OWNCHAT_OPERATOR_KEY must differ from OWNCHAT_API_KEY: a chat client must not operate")
        return self


class RedisSettings(BaseModel):
    url: str = "redis://127.0.0.1:6379/0"
    cluster: bool = False
    # where no server answers at `url`, `brain serve --start-redis` starts one here
    local_dir: str = "var/redis"
    socket_timeout_s: float = 2.0
    # after a /forget, the brain has Redis rewrite its append-only file (which still holds the deleted data) this many
    # seconds later; forgets meanwhile join the same rewrite. 0: only the nightly run does it
    rewrite_after_forget_s: float = Field(600.0, ge=0)


class DrySettings(BaseModel):
    """DRY sampling for requests that do not set it (llama.cpp's meaning of each). Unset fields follow the model
    profile (`brain config` shows which)."""

    multiplier: float = Field(0.0, ge=0.0, le=5.0)  # 0: off
    base: float = Field(1.75, ge=1.0, le=4.0)
    allowed_length: int = Field(2, ge=1, le=64)
    penalty_last_n: int = Field(-1, ge=-1, le=131_072)  # tokens looked back over; -1: the whole context
    sequence_breakers: list[str] = Field(default_factory=lambda: ["\n", ":", '"', "*"], max_length=16)
    # look at the reply alone, not its prompt: a reply may quote what the member told without a penalty
    reply_only: bool = False


class ModelSettings(BaseModel):
    # a Hugging Face id, a local directory, or the offline default's alias
    name: str = "smollm2-135m-instruct"
    cache_dir: str = "~/.cache/ownchat/models"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_batch_size: int = Field(32, ge=1)
    context_tokens: int = Field(2048, ge=64)
    max_new_tokens: int = Field(256, ge=1)
    # CPU weights when dtype is auto: "auto" is bfloat16 on a CPU with bfloat16 instructions (AMX, AVX512-BF16),
    # with 4-bit copies of the weights that already are 4-bit (the default model); "int4": 4-bit copies of all
    cpu_weights: Literal["auto", "float32", "bfloat16", "int4"] = "auto"
    # the running batch's key/value cache, in tokens: a request joins once its prompt and reply budget fit
    kv_cache_tokens: int = Field(32_768, ge=64)
    # memory for finished requests' keys and values, kept for the next prompt that starts the same way; 0: off
    prefix_cache_mib: int = Field(1024, ge=0)
    # "local": generate in this process (transformers); "vllm": on an external OpenAI-compatible server
    # (vLLM) at vllm_url, with only the tokenizer of `name` loaded here to build prompts
    engine: Literal["local", "vllm"] = "local"
    vllm_url: str | None = None
    # which model profile fills the memory and DRY settings left unset: "auto" chooses by `name` (brain/profiles.py)
    profile: Literal["auto", "small", "capable"] = "auto"
    dry: DrySettings = DrySettings()

    @model_validator(mode="after")
    def _remote_engine_needs_url(self) -> ModelSettings:
        if self.engine == "vllm" and not (self.vllm_url or "").strip():
            raise ValueError(
                "model.engine is 'vllm' but model.vllm_url is not set; give the server's base URL, "
                "for example http://vllm:8000"
            )
        return self


class LimitSettings(BaseModel):
    rate_per_minute: int = Field(20, ge=1)
    max_message_chars: int = Field(4000, ge=1)
    # generations at once over every route; a request beyond it gets 503 with Retry-After, before any work
    max_concurrent: int = Field(64, ge=1)
    max_persona_chars: int = Field(1500, ge=1)
    # all the text of one prompt (message and thread context, or OpenAI messages), counted before tokenizing
    max_prompt_chars: int = Field(32_000, ge=1)
    # a request body larger than this is refused with 413 before it is parsed
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # a client must send its request headers, and then its whole body, within these (slow senders are cut off)
    header_timeout_s: float = Field(10.0, gt=0.0)
    body_timeout_s: float = Field(30.0, gt=0.0)
    # connections still waiting for a request's headers (new, or idle between requests): at most this many from one
    # client address (more are closed at once), and at most this many in all (a new one closes the oldest); behind
    # a proxy every client has the proxy's address, so the proxy must enforce its own (deploy/README.md)
    half_open_per_client: int = Field(32, ge=1)
    half_open_total: int = Field(512, ge=1)


class FeedbackSettings(BaseModel):
    """Members' ratings of the bot's replies (POST /v1/feedback) and /retry. Turns, ratings and the message map
    expire with the memory TTL (memory.ttl_s)."""

    # replies kept per member so that they can be rated or retried; the oldest go first
    turns_kept: int = Field(256, ge=1, le=10_000)
    # ratings kept per member for the nightly run; the oldest go first
    ratings_kept: int = Field(2000, ge=1, le=100_000)
    # platform messages mapped to their turns, per chat; the oldest go first
    messages_per_chat: int = Field(10_000, ge=16, le=1_000_000)
    # a /retry under a greedy persona samples at this temperature, so that the second reply can differ
    retry_temperature: float = Field(0.8, ge=0.01, le=5.0)
    # "which reply do you prefer?": the share of an agreeing member's messages answered with two replies to choose
    # from (only members opted in who also agreed to it; 0: never asked)
    compare_share: float = Field(0.0, ge=0.0, le=1.0)


class BrainSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    consent_version: str = "2026-11"
    default_persona: str = "assistant"
    # extra persona presets (YAML files) beside the shipped ones
    personas_dir: str | None = None
    # with an API key set, the OpenAPI document and the docs pages need it too, unless this opens them
    public_docs: bool = False


class _YamlSource(PydanticBaseSettingsSource):
    """Values from the YAML file named by OWNCHAT_CONFIG (or ./ownchat.yaml when present)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None):
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        data = yaml.safe_load(self.path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: the settings file must hold a mapping at the top level")
        found = [name for name in SECRET_NAMES if _mentions(data, name)] + (["secrets"] if "secrets" in data else [])
        if found:
            raise ValueError(
                f"{self.path}: secrets ({', '.join(found)}) may only come from the environment, "
                "for example OWNCHAT_API_KEY; remove them from the file"
            )
        return data


def _mentions(data: Any, name: str) -> bool:
    if isinstance(data, dict):
        return any(k == name or _mentions(v, name) for k, v in data.items())
    return False


def config_path() -> Path | None:
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{CONFIG_ENV} names {path}, which is not a file")
        return path
    local = Path(DEFAULT_CONFIG_FILE)
    return local if local.is_file() else None


class Settings(BaseSettings):
    """Every part's section, composed; the sections keep their YAML keys and OWNCHAT_<SECTION>__... names."""

    model_config = SettingsConfigDict(env_prefix="OWNCHAT_", env_nested_delimiter="__", extra="forbid")

    redis: RedisSettings = RedisSettings()
    model: ModelSettings = ModelSettings()
    memory: MemorySettings = MemorySettings()
    limits: LimitSettings = LimitSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    brain: BrainSettings = BrainSettings()
    bot: BotSettings = BotSettings()
    trainer: TrainerSettings = TrainerSettings()
    secrets: Secrets = Field(default_factory=Secrets, exclude=True)
    _profile: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _apply_model_profile(self) -> Settings:
        """Fill the memory and DRY settings the operator left unset from the model's profile."""
        profile, why = choose_profile(self.model.name, self.model.profile)
        filled: list[str] = []
        for section, values in ((self.memory, profile.memory_values()), (self.model.dry, profile.dry_values())):
            for name, value in values.items():
                if name not in section.model_fields_set:
                    object.__setattr__(section, name, value)  # not marked as set: a later load fills it again
                    filled.append(f"{'memory' if section is self.memory else 'model.dry'}.{name}")
        self._profile = {"name": profile.name, "why": why, "holds": profile.summary, "filled": filled}
        return self

    @property
    def profile(self) -> dict[str, Any]:
        """The model profile in force, why, and which settings it filled (the others were set explicitly)."""
        return dict(self._profile)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls, config_path()))

    def masked(self) -> dict[str, Any]:
        """The effective settings with every secret shown as set or unset, never its value."""
        data = self.model_dump(mode="json")
        data["secrets"] = {name: ("***" if getattr(self.secrets, name) is not None else None) for name in SECRET_NAMES}
        data["profile_in_force"] = self.profile
        return data


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
