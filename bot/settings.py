"""The bots' settings: the section ``bot`` of the one settings object (brain/settings.py composes it).

Only pydantic here, so that the root can import it without a cycle. Environment variables keep the root's
nesting, for example ``OWNCHAT_BOT__BRAIN_URL`` or ``OWNCHAT_BOT__TELEGRAM__PARSE_MODE``; the tokens are secrets
(brain.settings.Secrets), read from the environment only.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

# an emoji (with its modifiers), or a custom emoji's name
Reaction = Annotated[str, Field(min_length=1, max_length=64)]


class ReactionSettings(BaseModel):
    """Which reactions on the bot's replies rate them (bot/feedback.py): a like, a dislike; others mean nothing."""

    likes: list[Reaction] = Field(["👍"], min_length=1, max_length=20)
    dislikes: list[Reaction] = Field(["👎"], min_length=1, max_length=20)

    @model_validator(mode="after")
    def _apart(self) -> ReactionSettings:
        both = set(self.likes) & set(self.dislikes)
        if both:
            raise ValueError(f"a reaction cannot both like and dislike a reply: {sorted(both)}")
        return self


class TelegramSettings(BaseModel):
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = 8443
    # in groups: answer only when mentioned, replied to or commanded ("mentions"), or always ("all")
    group_replies: Literal["mentions", "all"] = "mentions"
    base_url: str | None = None
    operators: list[int] = []
    # a streamed reply edits its message at most once per this many seconds in a chat (flood limits)
    edit_interval_s: float = Field(1.0, ge=0.0)
    # model replies are sent with this parse mode; a reply Telegram cannot parse is resent as plain text
    parse_mode: Literal["plain", "Markdown", "MarkdownV2", "HTML"] = "plain"
    reactions: ReactionSettings = ReactionSettings()
    # 👍/👎 buttons under every reply, for groups where members' reactions do not reach the bot (it is no admin)
    rating_buttons: bool = False
    # in private chats, a reply streams as a native draft (sendMessageDraft), then is sent once whole; edits
    # otherwise (groups, or where Telegram refuses drafts)
    drafts: bool = True


class DiscordSettings(BaseModel):
    allowed_guilds: list[int] = []
    allowed_channels: list[int] = []
    allowed_roles: list[int] = []
    # channels where the bot answers every message, not only mentions
    reply_channels: list[int] = []
    operators: list[int] = []
    # None: one gateway connection; N: that many shards (AutoShardedBot); 0: as many as Discord advises
    shard_count: int | None = Field(None, ge=0)
    api_base: str | None = None
    gateway_url: str | None = None
    # a streamed reply is edited at most this often (Discord limits edits per channel)
    edit_interval_s: float = Field(1.0, ge=0.0)
    reactions: ReactionSettings = ReactionSettings()


class BotSettings(BaseModel):
    brain_url: str = "http://127.0.0.1:8080"
    timeout_s: float = 120.0
    # a message the brain could not take (it is down or restarting) is asked again for this long, under a
    # "still thinking…" notice, before the member is told it was not answered (0: told at once)
    retry_window_s: float = Field(60.0, ge=0.0)
    telegram: TelegramSettings = TelegramSettings()
    discord: DiscordSettings = DiscordSettings()
