"""Consent and data: the privacy notice, opt-in, opt-out, forget, export, per-chat memory and reset."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter

from brain import personas as persona_lib
from brain.api_models import (
    ChatKind,
    ConsentState,
    ExportedMessage,
    ExportedPersona,
    ExportedRating,
    ExportedTurn,
    ForgetResult,
    LogEntry,
    MemoryView,
    OptOut,
    PrivacyNotice,
    ResetResult,
    Stats,
    UserExport,
)
from brain.consent import is_opted_in
from brain.service.auth import Authorized
from brain.service.deps import ChatIdPath, PlatformPath, RuntimeDep, UserIdPath
from brain.service.errors import responses
from brain.service.runtime import Runtime

router = APIRouter(dependencies=[Authorized], tags=["users"], responses=responses())

PRIVACY_TEXT = (
    "What I keep, and why.\n"
    "- Always: a short memory of our recent turns in each chat{summary}, so that I can "
    "answer in context, and the facts about you that you pin with /remember{extracted}.{recall} In a group I use "
    "only what you said in that group{private}. All of it expires after {ttl_days} days without talking; /reset "
    "clears a chat's memory, /memory lists your facts, /memory forget N or /memory clear deletes them. My replies "
    "are kept as long, so that they can be rated or tried again (/retry), without what others said around them.\n"
    "- Only if you opt in: a training log of your messages to me and my replies (the text, the chat id, the "
    "persona and the time). Every night it is cleaned (e-mail addresses, phone numbers, card numbers and "
    "secret-bearing links are removed) and used to fine-tune the community model and, once you have enough "
    "turns, a model of your own. A new model goes live only if it tests better than the current one.\n"
    "- Only if you opt in, and the member a reply answered has opted in too: your ratings of my replies (👍/👎, "
    "/good, /bad: which reply, the rating, the time), kept to learn what members like. Without both consents a "
    "rating is not kept. Counts of likes per model version are kept without names.\n"
    "- /optout stops the logging at once; /optout delete also deletes your log and your ratings. /forget deletes "
    "everything I keep about you, your own model included; by the next nightly run, community models that learned from "
    "you are retired too, and no later training run can use your data again."
)


def user_key(platform: str, user_id: str) -> str:
    """The store's name of a user whose platform and id have been validated (PlatformPath, UserIdPath)."""
    return f"{platform}:{user_id}"


def _at(ms: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc) if ms else None


async def _consent(runtime: Runtime, user: str) -> ConsentState:
    profile = await runtime.store.profiles.get(user)
    return ConsentState(
        opted_in=is_opted_in(profile),
        version=profile.get("consent_version"),
        at=_at(profile.get("consent_at")),
        logged_turns=await runtime.store.training_log.length(user),
    )


@router.get("/v1/privacy", response_model=PrivacyNotice)
async def privacy(runtime: RuntimeDep) -> PrivacyNotice:
    """What is collected and how it is used (shown before opting in)."""
    memory = runtime.settings.memory
    text = PRIVACY_TEXT.format(
        ttl_days=memory.ttl_s // 86400,
        summary=", and a summary of older ones" if memory.summaries else "",
        extracted=" and those I pick up from what you tell me" if memory.extract_facts else "",
        recall=" Your older messages come back when a new one matches them." if memory.recall_tokens else "",
        private=(
            " and, as this server is set up, what you told me in private"
            if memory.share_direct_in_groups
            else ", never what you told me in private"
        ),
    )
    return PrivacyNotice(version=runtime.settings.brain.consent_version, text=text)


@router.get("/v1/users/{platform}/{user_id}/consent", response_model=ConsentState)
async def consent(platform: PlatformPath, user_id: UserIdPath, runtime: RuntimeDep) -> ConsentState:
    """Whether the user is opted in, since when, under which consent version."""
    return await _consent(runtime, user_key(platform, user_id))


@router.post("/v1/users/{platform}/{user_id}/optin", response_model=ConsentState)
async def opt_in(platform: PlatformPath, user_id: UserIdPath, runtime: RuntimeDep) -> ConsentState:
    """Record consent (version and time): from now on the user's turns go to their training log."""
    user = user_key(platform, user_id)
    await runtime.store.profiles.opt_in(user, runtime.settings.brain.consent_version)
    return await _consent(runtime, user)


@router.post("/v1/users/{platform}/{user_id}/optout", response_model=ConsentState)
async def opt_out(
    platform: PlatformPath, user_id: UserIdPath, runtime: RuntimeDep, body: OptOut | None = None
) -> ConsentState:
    """Stop logging at once; with delete_logs, also delete the existing log."""
    user = user_key(platform, user_id)
    await runtime.store.profiles.opt_out(user, delete_logs=bool(body and body.delete_logs))
    return await _consent(runtime, user)


@router.post("/v1/users/{platform}/{user_id}/forget", response_model=ForgetResult)
async def forget(platform: PlatformPath, user_id: UserIdPath, runtime: RuntimeDep) -> ForgetResult:
    """Delete every key of the user, logs included, and leave a tombstone against later writes and exports."""
    deleted = await runtime.store.forgetting.forget(user_key(platform, user_id))
    runtime.memory.drop_pending(user_key(platform, user_id))
    await runtime.adapters.forget(user_key(platform, user_id))  # their own adapter, on every replica
    await runtime.backend.forget(user_key(platform, user_id))  # their conversations' cached keys and values
    runtime.rewrite_after_forget()  # and, soon, Redis's files on disk
    return ForgetResult(forgotten=True, deleted_keys=deleted)


async def _memory_view(runtime: Runtime, user: str, platform: str, chat_id: str, kind: ChatKind) -> MemoryView:
    remembered = await runtime.memory.chat(user, chat_id)
    if kind is ChatKind.group:
        stored = await runtime.store.personas.of_chat(platform, chat_id)
    else:
        stored = await runtime.store.personas.of_user(user)
    persona, _ = persona_lib.resolve(stored, runtime.presets, runtime.settings.brain.default_persona)
    return MemoryView(
        summary=remembered.summary,
        turns=remembered.turns,
        persona=persona.name,
        summaries=runtime.settings.memory.summaries,
    )


@router.get("/v1/users/{platform}/{user_id}/export", response_model=UserExport)
async def export(platform: PlatformPath, user_id: UserIdPath, runtime: RuntimeDep) -> UserExport:
    """Everything stored about the user, as JSON."""
    user = user_key(platform, user_id)
    turns = await runtime.store.turns.of(user)
    # a chat the member's replies came from as a group shows the group's persona, not their own
    groups = {t.chat_id for t in turns if t.chat_kind == ChatKind.group.value and t.platform == platform}
    chats = {
        chat: await _memory_view(runtime, user, platform, chat, ChatKind.group if chat in groups else ChatKind.direct)
        for chat in sorted(await runtime.store.chats.of(user))
    }
    log = [
        LogEntry(
            id=e["id"],
            chat_id=e["chat_id"],
            user_text=e["user_text"],
            reply=e["reply"],
            consent_version=e["consent_version"],
            persona=e["persona"],
            ts=int(e["ts"]) / 1000,
        )  # fmt: skip
        async for e in runtime.store.training_log.entries(user)
    ]
    return UserExport(
        user=user,
        profile=await runtime.store.profiles.get(user),
        chats=chats,
        log=log,
        facts=await runtime.memory.facts(user),
        earlier_turns=await runtime.memory.earlier_turns(user),
        ratings=[
            ExportedRating(turn_id=r.turn_id, rating=r.rating, served_by=r.served_by, at=r.at)
            for r in await runtime.store.ratings.of(user)
        ],
        turns=[
            ExportedTurn(
                turn_id=t.turn_id,
                platform=t.platform,
                chat_id=t.chat_id,
                chat_kind=t.chat_kind,
                prompt=t.prompt,
                reply=t.reply,
                adapter=t.served_by,
                retry_of=t.retry_of,
                at=t.at,
            )
            for t in turns
        ],
        personas=[
            ExportedPersona(
                platform=p.platform,
                chat_id=p.chat_id,
                name=str(p.persona.get("name", "")),
                system_prompt=str(p.persona.get("system_prompt", "")),
                in_use=p.in_use,
            )
            for p in await runtime.store.personas.authored(user)
        ],
        messages=[
            ExportedMessage(platform=p, chat_id=c, message_id=m, turn_id=t)
            for p, c, m, t in await runtime.store.messages.mapped(turns)
        ],
    )


@router.post("/v1/users/{platform}/{user_id}/chats/{chat_id}/reset", response_model=ResetResult)
async def reset(platform: PlatformPath, user_id: UserIdPath, chat_id: ChatIdPath, runtime: RuntimeDep) -> ResetResult:
    """Clear the memory of one chat (turns, summary and its turns kept for recall); the training log and the facts
    are not touched."""
    return ResetResult(cleared_turns=await runtime.memory.reset_chat(user_key(platform, user_id), chat_id))


@router.get("/v1/users/{platform}/{user_id}/chats/{chat_id}/memory", response_model=MemoryView)
async def memory(
    platform: PlatformPath,
    user_id: UserIdPath,
    chat_id: ChatIdPath,
    runtime: RuntimeDep,
    chat_kind: ChatKind = ChatKind.direct,
) -> MemoryView:
    """What the brain remembers of this chat."""
    return await _memory_view(runtime, user_key(platform, user_id), platform, chat_id, chat_kind)


@router.get("/v1/stats", response_model=Stats)
async def stats(runtime: RuntimeDep) -> Stats:
    """Usage figures for operators."""
    figures = await runtime.store.counts.stats()
    return Stats(model=runtime.model_name, **figures)
