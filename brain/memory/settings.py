"""Memory's settings: the section ``memory`` of the one settings object (brain/settings.py composes it).

Here, not in brain/settings.py, because the memory service reads them and memory imports nothing above it: the
root imports the bots' and the trainer's settings (tests/brain/memory/test_import_direction.py). Only pydantic,
like the other parts' settings modules. Environment variables keep the root's nesting, for example
``OWNCHAT_MEMORY__RECALL_TOKENS=0``; the model profile (brain/profiles.py) fills the fields the operator leaves
unset.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class MemorySettings(BaseModel):
    # recent turns a chat's prompt carries (a message and its reply are two); older ones are folded into the summary
    # and can come back by recall. 2 suits the small default model: with more, it copies its own recent replies
    # instead of answering (bench/recall.py measures it; figures in README, The brain). Raise it with a capable
    # model (the model profile sets it where it is left unset)
    max_turns: int = Field(2, ge=2)
    # write a rolling summary of the turns that leave the window (one more generation per fold); the profile
    # decides where unset: off for the small default model, whose summaries were mostly invented
    summaries: bool = False
    # fold once this many turns have left the window since the last fold, not after every message
    fold_every_turns: int = Field(8, ge=1, le=256)
    max_tokens: int = Field(1536, ge=64)
    ttl_s: int = Field(7 * 24 * 3600, ge=60)
    summary_max_tokens: int = Field(96, ge=8)
    # the member's earlier messages that match a new one come back into its prompt, up to this many tokens;
    # 0 turns recall off (and turns that leave the window are then not kept at all)
    recall_tokens: int = Field(160, ge=0, le=1024)
    # facts picked out of what members say, in the background. Off by default: with the small default model the
    # picks are noisy (bench/recall.py measures it); turn it on with a capable model
    extract_facts: bool = False
    # in group chats, also use (and list) what a member told the bot in direct chats; off: groups see none of it
    share_direct_in_groups: bool = False
