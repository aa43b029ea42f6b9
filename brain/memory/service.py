"""The brain's memory of its members as one service: what a prompt gets of it, what an exchange adds to it, the
facts a member pins or forgets, and the work it does in the background (rolling summaries, facts picked out of
messages) in one pattern (jobs.py).

The chat, facts and users routes call it; it reads and writes through the store (which spells every key) and
reaches the model only through the BackgroundModel it is given (records.py), so that memory imports neither the
service, nor the prompt, nor the engine (tests/brain/memory/test_import_direction.py). What it hands out is typed:
api_models' Turn, EarlierTurn and Fact, records.ChatMemory. The store still reads and writes dicts: they are
converted here, at the boundary, until the store takes the records itself.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from brain.api_models import ChatKind, EarlierTurn, Fact, FactSource, Turn
from brain.feedback_records import TurnRecord
from brain.memory.context import EARLIER_TURNS_KEPT, Memory
from brain.memory.extract import SAMPLING as EXTRACTION_SAMPLING
from brain.memory.extract import extraction_messages, grounded_facts, worth_mining
from brain.memory.facts import MAX_FACTS, new_fact, same_fact, stored_fact, visible_facts
from brain.memory.jobs import BackgroundJobs
from brain.memory.records import BackgroundModel, BackgroundPrompt, ChatMemory
from brain.memory.settings import MemorySettings
from brain.memory.summary import fold_messages, fold_sampling, unsaid_words
from brain.store import Store
from brain.store.chats import ChatState, RecordResult
from brain.store.facts import FactAdded

log = logging.getLogger("brain")
R = TypeVar("R", bound=BaseModel)
# chats whose turns wait to be folded into their summary, kept in this process; past it the longest-waiting chat's
# turns are left out of its summary (they are still kept for recall)
MAX_CHATS_AWAITING_FOLD = 10_000
ChatKey = tuple[str, str]  # (user, chat_id)


def _uncounted(outcome: str) -> None:
    pass


class MemoryService:
    """One per brain process (Runtime.memory). ``settings`` is read at every use: the memory section may be
    replaced while the brain runs (bench/recall.py tries several)."""

    def __init__(
        self,
        store: Store,
        settings: Callable[[], MemorySettings],
        model: BackgroundModel,
        *,
        on_background: Callable[[str], None] = _uncounted,
    ) -> None:
        self.store = store
        self._settings = settings
        self._model = model
        # counts background outcomes with the engine's (Metrics.on_background): here, folds that became one
        self._on_background = on_background
        self.jobs = BackgroundJobs()
        self._summary_locks: weakref.WeakValueDictionary[ChatKey, asyncio.Lock] = weakref.WeakValueDictionary()
        # the evicted lines of each chat's fold that has not started yet: a later fold adds its own lines to it
        self._waiting_folds: dict[ChatKey, list[Turn]] = {}
        # turns that left a chat's window since its last fold: a fold waits for memory.fold_every_turns of them
        self._awaiting_fold: OrderedDict[ChatKey, list[Turn]] = OrderedDict()

    @property
    def settings(self) -> MemorySettings:
        return self._settings()

    @property
    def background(self) -> set[asyncio.Task[None]]:
        """The background jobs that have not finished."""
        return self.jobs.running

    @property
    def recalls(self) -> bool:
        """Whether earlier messages come back into prompts (and turns that leave a window are kept for it)."""
        return self.settings.recall_tokens > 0

    def stop(self) -> None:
        self.jobs.cancel()

    # what a prompt gets

    def window(self, state: ChatState) -> ChatMemory:
        """The chat's summary and recent turns, as loaded with the message."""
        # a summary left from when summaries were on is not used: the profile turned them off
        summary = state.summary if self.settings.summaries else ""
        return ChatMemory(summary=summary, turns=_typed(Turn, state.turns, "memory turn"))

    def for_prompt(self, state: ChatState, chat_id: str, group: bool) -> Memory:
        """The member's facts and earlier messages that a prompt in this chat may use (facts.visible). It reads up
        to EARLIER_TURNS_KEPT earlier messages (milliseconds): call it off the event loop."""
        settings = self.settings
        # only the member's own messages are ever recalled: the bot's replies are not worth reading here
        mine = [turn for turn in state.earlier if turn.get("role") == "user"]
        return Memory.for_chat(
            _typed(Fact, state.facts, "fact"),
            _typed(EarlierTurn, mine, "earlier turn"),
            chat_id=chat_id,
            group=group,
            share_direct=settings.share_direct_in_groups,
            recall_tokens=settings.recall_tokens,
        )

    # what an exchange adds

    async def record_exchange(
        self,
        user: str,
        chat_id: str,
        *,
        chat_kind: ChatKind,
        since: str,
        summary: str,
        message: Turn,
        reply: Turn,
        display_name: str,
        persona: str,
        turns_kept: int,
        turn: TurnRecord | None = None,
    ) -> RecordResult:
        """Store the member's message and the reply in the chat's window, with the reply's ``turn`` record (kept to
        be rated) and its log entry (store.chats.record_turn); then, in the background, fold the turns that left the
        window into the chat's ``summary`` and pick facts out of the message."""
        settings = self.settings
        record = await self.store.chats.record_turn(
            user,
            chat_id,
            since=since,
            user_turn=message.model_dump(),
            assistant_turn=reply.model_dump(),
            max_turns=settings.max_turns,
            max_tokens=settings.max_tokens,
            ttl_s=settings.ttl_s,
            display_name=display_name,
            persona=persona,
            chat_kind=chat_kind.value,
            keep_earlier=EARLIER_TURNS_KEPT if self.recalls else 0,
            turn=turn,
            turns_kept=turns_kept,
        )
        if record.evicted and settings.summaries:
            self.fold_later(user, chat_id, summary, _typed(Turn, record.evicted, "memory turn"))
        if record.stored and settings.extract_facts:
            self.extract_later(user, chat_id, chat_kind, record.since, message.text)
        return record

    # a chat's memory, and what forgets it

    async def chat(self, user: str, chat_id: str) -> ChatMemory:
        """What the brain remembers of one chat (its summary only where summaries are written)."""
        summary, turns = await self.store.chats.memory(user, chat_id)
        # never a summary the profile no longer writes (or trusts)
        return ChatMemory(summary=summary if self.settings.summaries else "", turns=_typed(Turn, turns, "memory turn"))

    async def earlier_turns(self, user: str) -> list[EarlierTurn]:
        """The turns kept for recall, oldest first, over every chat of the member."""
        return _typed(EarlierTurn, await self.store.chats.earlier_turns(user), "earlier turn")

    async def reset_chat(self, user: str, chat_id: str) -> int:
        """Clear one chat's memory (its turns, summary and turns kept for recall); returns how many turns it had."""
        self.drop_pending(user, chat_id)
        return await self.store.chats.reset(user, chat_id)

    def drop_pending(self, user: str, chat_id: str | None = None) -> None:
        """Forget the turns of ``user`` (of one chat, or all) that wait to be folded: after a /forget or a
        /reset nothing they said may reach a summary."""
        for key in [key for key in self._awaiting_fold if key[0] == user and chat_id in (None, key[1])]:
            del self._awaiting_fold[key]
        # folds that have not started fold nothing now, and later lines start a fold of their own (with the
        # summary as it is after the reset, not the one these folds were given)
        for key in [key for key in self._waiting_folds if key[0] == user and chat_id in (None, key[1])]:
            self._waiting_folds.pop(key).clear()

    # facts

    async def facts(self, user: str) -> list[Fact]:
        """Every fact about the member, oldest first."""
        return _typed(Fact, await self.store.facts.of(user), "fact")

    async def visible_facts(self, user: str, chat_id: str, chat_kind: ChatKind) -> list[Fact]:
        """The member's facts that this chat may use, oldest first (the numbering of /memory)."""
        group = chat_kind is ChatKind.group
        return visible_facts(await self.facts(user), chat_id, group, self.settings.share_direct_in_groups)

    async def pin(self, user: str, text: str, chat_id: str, chat_kind: ChatKind) -> tuple[FactAdded, Fact]:
        """Pin a fact (/remember); ``known``: the fact the member had pinned with the same text."""
        fact = new_fact(text, FactSource.pinned, chat_id, chat_kind)
        added = await self.store.facts.add(user, stored_fact(fact), max_facts=MAX_FACTS, ttl_s=self.settings.ttl_s)
        if added is FactAdded.known:
            fact = next((known for known in await self.facts(user) if same_fact(known.text, fact.text)), fact)
        return added, fact

    async def forget_facts(self, user: str, fact_ids: list[str]) -> int:
        """Delete these facts (and the kept turns that quote them); returns how many there were."""
        return await self.store.facts.delete(user, fact_ids)

    # background work: a rolling summary per chat, and facts picked out of messages

    def fold_later(self, user: str, chat_id: str, summary: str, evicted: list[Turn]) -> None:
        """Fold the turns that left the window once memory.fold_every_turns of them have gathered: one summary
        generation every few exchanges, not one per message. The fold runs as background work; while a chat's
        previous fold has not started yet, the new lines join it and one generation folds both."""
        key = (user, chat_id)
        waiting = self._awaiting_fold.pop(key, []) + evicted
        if len(waiting) < self.settings.fold_every_turns:
            self._awaiting_fold[key] = waiting
            while len(self._awaiting_fold) > MAX_CHATS_AWAITING_FOLD:
                self._awaiting_fold.popitem(last=False)
            return
        queued = self._waiting_folds.get(key)
        if queued is not None:  # this chat's previous fold has not started: one generation folds both
            queued.extend(waiting)
            self._on_background("coalesced")
            return
        self._waiting_folds[key] = waiting
        self.jobs.start(self._fold(user, chat_id, summary, waiting), f"folding the summary of {chat_id}")

    async def _fold(self, user: str, chat_id: str, summary: str, evicted: list[Turn]) -> None:
        # one fold of a chat at a time (in this process): each starts from the summary the one before it wrote
        lock = self._summary_locks.setdefault((user, chat_id), asyncio.Lock())
        async with lock:
            if self._waiting_folds.get((user, chat_id)) is evicted:  # started: later lines need a fold of their own
                del self._waiting_folds[(user, chat_id)]
            if not evicted:  # dropped by a /forget or /reset while it waited
                return
            current, _ = await self.store.chats.memory(user, chat_id)
            before = current or summary
            settings = self.settings
            # owned by the member: a /forget drops the cached keys and values of this prompt too
            prompt = BackgroundPrompt(
                user, fold_messages(before, evicted), fold_sampling(settings.summary_max_tokens), keep_end=True
            )
            text = await self._model(prompt)
            unsaid = unsaid_words(text, [before, *(turn.text for turn in evicted)])
            if unsaid:  # a summary that says what nobody said is worse than the one before it
                log.info("a summary of %s was not kept: it holds words nobody said (%s)", chat_id, unsaid[:8])
            elif text:
                await self.store.chats.fold_summary(user, chat_id, text, settings.ttl_s)

    def extract_later(self, user: str, chat_id: str, chat_kind: ChatKind, since: str, message: str) -> None:
        """Start picking facts out of ``message`` (a member's, just stored); the reply never waits for it."""
        if worth_mining(message):
            work = self._extract(user, chat_id, chat_kind, since, message)
            self.jobs.start(work, f"extracting facts from a message of {chat_id}")

    async def _extract(self, user: str, chat_id: str, chat_kind: ChatKind, since: str, message: str) -> None:
        # owned by the member: a /forget drops the cached keys and values of this prompt too
        answer = await self._model(BackgroundPrompt(user, extraction_messages(message), EXTRACTION_SAMPLING))
        for text in grounded_facts(answer, message):
            fact = new_fact(text, FactSource.extracted, chat_id, chat_kind, quote=message)
            added = await self.store.facts.add(
                user, stored_fact(fact), max_facts=MAX_FACTS, ttl_s=self.settings.ttl_s, since=since
            )
            if added is FactAdded.forgotten:  # a /forget meanwhile: nothing of the message may come back
                return


def _typed(model: type[R], items: list[dict[str, Any]], what: str) -> list[R]:
    """The store's dicts as records; one that does not fit is logged and left out (as the store leaves out what
    the API's models refuse)."""
    records = []
    for item in items:
        try:
            records.append(model.model_validate(item))
        except ValidationError as error:
            log.error("a stored %s was skipped: %s", what, error)
    return records
