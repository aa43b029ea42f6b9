"""POST /v1/chat: one message in, one reply out (whole, or streamed as server-sent events); or, with retry_of or
retry_message, another reply to a message already answered (/retry).

Every reply is kept as a turn (brain/feedback_records.py TurnRecord) that members can rate; its id comes back in
ChatReply.turn_id. A /retry answers the kept prompt of the first reply again and changes no memory: the member's
message is not stored twice and the first reply stays in the conversation; the new turn names the first in
``retry_of``, so the two form a preference pair once either is rated.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request

from brain import personas as persona_lib
from brain.api_models import ChatKind, ChatReply, ChatRequest, SamplingOverrides, SamplingParams, StreamDelta, Turn
from brain.engine.backend import Generated
from brain.engine.prefix_cache import UNKNOWN_CONTRIBUTOR
from brain.feedback_records import PersonaRef, TurnRecord
from brain.prompt import Prompt, build_prompt, public_prefix, render
from brain.service.auth import Authorized
from brain.service.deps import RuntimeDep
from brain.service.errors import ApiError, responses
from brain.service.replays import answer_again, answered_before, carried, keep, kept_reply
from brain.service.routes.compare import should_compare
from brain.service.runtime import Runtime
from brain.service.streaming import EventStream, events_or_error, sse, stream_responses, unless_disconnected
from brain.store.chats import ChatState
from brain.store.personas import persona_digest

router = APIRouter(dependencies=[Authorized], tags=["chat"])

# what turns a finished generation into the stored turn and the ChatReply: (result, the adapter that served)
Finish = Callable[[Generated, str | None], Awaitable[ChatReply]]


def new_turn_id() -> str:
    return secrets.token_hex(8)


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def check_text(runtime: Runtime, body: ChatRequest) -> None:
    """The message is not empty, and it and its thread context are within their sizes (in characters: this
    runs before anything is tokenized)."""
    if not body.text.strip():
        raise ApiError(400, "empty_message", "The message is empty; send some text.")
    limits = runtime.settings.limits
    if len(body.text) > limits.max_message_chars:
        raise ApiError(
            413,
            "message_too_long",
            f"The message has {len(body.text)} characters; at most {limits.max_message_chars} are allowed.",
        )
    total = len(body.text) + sum(len(m.text) + len(m.author) for m in body.context)
    if total > limits.max_prompt_chars:
        raise ApiError(
            413,
            "prompt_too_long",
            f"The message and its thread context have {total} characters; at most {limits.max_prompt_chars} fit.",
        )


def check_rate(runtime: Runtime, state: ChatState) -> None:
    limit = runtime.settings.limits.rate_per_minute
    if state.requests_this_window > limit:
        raise ApiError(
            429,
            "rate_limited",
            f"Too many messages: at most {limit} a minute. Try again in {state.window_left_s} s.",
            {"Retry-After": str(state.window_left_s)},
        )


def check_beams(runtime: Runtime, stream: bool, num_beams: int) -> None:
    if num_beams > 1 and (stream or not runtime.backend.supports_beam_search):
        raise ApiError(
            400, "beam_not_streamable", "Beam search works only for non-streaming requests on the local engine."
        )


def sampling_for(persona_sampling: SamplingParams, overrides: SamplingOverrides | None, cap: int) -> SamplingParams:
    """The persona's sampling with the request's overrides; model.max_new_tokens caps the reply length."""
    values = {**persona_sampling.model_dump(), **(overrides.model_dump(exclude_none=True) if overrides else {})}
    values["max_new_tokens"] = min(int(values["max_new_tokens"]), cap)
    try:
        return SamplingParams.model_validate(values)
    except ValueError as exc:
        raise ApiError(422, "invalid_sampling", f"The sampling overrides are not valid: {exc}") from exc


@router.post(
    "/v1/chat",
    response_model=ChatReply,
    responses={
        **responses(400, 404, 429),
        **stream_responses("The reply; with `stream`, `delta` events then `done`.", ["delta", "done", "error"]),
    },
)
async def chat(body: ChatRequest, request: Request, runtime: RuntimeDep) -> Any:
    """Answer one message with the user's memory and persona; stream it with `"stream": true`.

    A streamed reply is a series of `delta` events (StreamDelta) and a last `done` event (ChatReply); if the
    reply fails after the stream started, the last event is an `error` event (ErrorBody) instead.

    With `retry_of` (a turn id, or "last") or `retry_message` (the bot's message it replies to), the member's
    message of that turn is answered again (/retry): `text` is ignored, nothing of the memory changes, and the new
    turn is paired with the first; 404 `unknown_turn` when there is no such turn of theirs in this chat.
    """
    started = time.perf_counter()
    if not body.is_retry:
        check_text(runtime, body)
    check_beams(runtime, body.stream, (body.sampling and body.sampling.num_beams) or 1)
    # a request asked again (its client did not learn what became of it) is answered with the reply kept for it
    again = await answered_before(runtime, body)
    if again is not None:
        if body.stream:
            return answer_again(events_or_error(_sse(again), lambda error: sse("error", error)))
        return await _whole(again)
    # nothing was stored and nothing counted for a request refused above; from here on it counts against the rate
    with runtime.admission.take() as slot:
        user = body.key
        group = body.chat_kind is ChatKind.group
        recall = runtime.memory.recalls and not body.is_retry
        state = await runtime.store.chats.load_state(user, body.platform, body.chat_id, group, earlier=recall)
        check_rate(runtime, state)
        stored = state.chat_persona if group else state.user_persona
        persona, custom = persona_lib.resolve(stored, runtime.presets, runtime.settings.brain.default_persona)
        # a group persona a member wrote is theirs: kept turns name it, and cached prompts are tagged with its author
        ref = None
        if group and custom and state.chat_persona_author:
            ref = PersonaRef(
                author=state.chat_persona_author,
                digest=persona_digest(persona.system_prompt),
                text=persona.system_prompt,
            )
        sampling = sampling_for(persona.sampling, body.sampling, runtime.settings.model.max_new_tokens)
        check_beams(runtime, body.stream, sampling.num_beams)
        finish: Finish
        if body.is_retry:
            first = await retried_turn(runtime, body)
            sampling = retry_sampling(runtime, sampling)
            ids = await runtime.off_loop(render, runtime.tokenizer, first.prompt)
            if len(ids) > runtime.prompt_budget(sampling.max_new_tokens):
                raise ApiError(413, "prompt_too_long", "The reply to try again no longer fits the model's context.")
            public = await runtime.off_loop(public_prefix, runtime.tokenizer, persona.system_prompt, ids)
            finish = functools.partial(_store_retry, runtime, body, state, persona.name, first, started)
            contributors = {first.persona_ref.author} if first.persona_ref else set()
        else:
            # off the loop too: it reads up to EARLIER_TURNS_KEPT earlier messages (milliseconds)
            recallable = await runtime.off_loop(runtime.memory.for_prompt, state, body.chat_id, group)
            window = runtime.memory.window(state)
            try:
                prompt = await runtime.off_loop(
                    build_prompt,
                    runtime.tokenizer,
                    system_prompt=persona.system_prompt,
                    summary=window.summary,
                    turns=window.turns,
                    text=body.text,
                    budget=runtime.prompt_budget(sampling.max_new_tokens),
                    context=body.context,
                    memory=recallable,
                )
            except ValueError as exc:
                raise ApiError(413, "message_too_long", str(exc)) from exc
            ids, public = prompt.ids, prompt.public
            quoted = recallable.quoted(prompt.facts, prompt.recalled)
            finish = functools.partial(_store_turn, runtime, body, state, persona.name, prompt, quoted, started, ref)
            contributors = {ref.author} if ref else set()
            if prompt.thread_used and any(not m.from_bot for m in body.context):
                # other members' words, known only by their display names: no forget could find the entry
                contributors.add(UNKNOWN_CONTRIBUTOR)
        reply = carried(
            runtime, body, _reply(runtime, user, state.profile, ids, public, sampling, finish, contributors - {user})
        )
        if body.stream:
            return EventStream(events_or_error(_sse(reply), lambda error: sse("error", error)), slot)
        return await unless_disconnected(request, _whole(reply))


async def retried_turn(runtime: Runtime, body: ChatRequest) -> TurnRecord:
    """The member's kept turn in this chat that a /retry names; 404 unknown_turn when there is none."""
    store = runtime.store
    turn: TurnRecord | None = None
    if body.retry_message is not None:
        turn_id = await store.messages.turn_of(body.platform, body.chat_id, body.retry_message)
        turn = await store.turns.get(turn_id) if turn_id else None
    elif body.retry_of == "last":
        turn = await store.turns.last(body.key, body.platform, body.chat_id)
    elif body.retry_of is not None:
        turn = await store.turns.get(body.retry_of)
    if turn is not None and turn.facts:
        # a fact it quotes that expired (deleting one drops the turn at once) must not come back in a new reply
        kept = {fact.id for fact in await runtime.memory.facts(turn.author)}
        turn = turn if set(turn.facts) <= kept else None
    if turn is None or (turn.author, turn.platform, turn.chat_id) != (body.key, body.platform, body.chat_id):
        raise ApiError(
            404,
            "unknown_turn",
            "There is no reply of mine to you in this chat to try again (it may have expired); "
            "send your message again instead.",
        )
    return turn


def retry_sampling(runtime: Runtime, sampling: SamplingParams) -> SamplingParams:
    """A retry of a greedy or beam-searched reply would give the same reply again: it samples instead."""
    if sampling.temperature > 0 and sampling.num_beams == 1:
        return sampling
    return sampling.model_copy(update={"temperature": runtime.settings.feedback.retry_temperature, "num_beams": 1})


async def _whole(items: AsyncIterator[str | ChatReply]) -> ChatReply:
    """The ChatReply of a non-streaming request, its deltas dropped."""
    async for item in items:
        if isinstance(item, ChatReply):
            return item
    raise ApiError(503, "cancelled", "The reply was cancelled before it finished; nothing was stored.")


async def _reply(
    runtime: Runtime,
    user: str,
    profile: dict[str, str],
    ids: list[int],
    public: int,
    sampling: SamplingParams,
    finish: Finish,
    contributors: set[str],
) -> AsyncIterator[str | ChatReply]:
    """The reply's text deltas, then, once the turn is stored, the ChatReply. The first ``public`` ids (the
    persona's system prompt) may reuse what other members' requests left cached; the rest only the member's own.
    ``contributors``: the other members whose words the prompt holds (what it leaves cached goes with any of their
    forgets)."""
    async with runtime.adapters.serving(user, profile) as adapter:
        result: Generated | None = None
        generated = runtime.generate(
            ids, sampling, adapter=adapter, user=user, public_prefix=public, contributors=frozenset(contributors)
        )
        async for item in generated:
            if isinstance(item, Generated):
                result = item
            else:
                yield item
        if result is None or result.finish_reason == "cancelled":
            runtime.metrics.replies.labels("cancelled").inc()
            return
        yield await finish(result, adapter)


def _turn(
    body: ChatRequest,
    prompt: list[dict[str, str]],
    result: Generated,
    adapter: str | None,
    ref: PersonaRef | None = None,
) -> TurnRecord:
    return TurnRecord(
        turn_id=new_turn_id(),
        author=body.key,
        platform=body.platform,
        chat_id=body.chat_id,
        chat_kind=body.chat_kind.value,
        prompt=prompt,
        reply=result.text,
        served_by=adapter,
        at=iso_now(),
        persona_ref=ref,
    )


def _answered(persona: str, result: Generated, adapter: str | None, *, logged: bool, turn_id: str | None) -> ChatReply:
    return ChatReply(
        reply=result.text,
        persona=persona,
        tokens=result.tokens,
        finish_reason=result.finish_reason,
        logged=logged,
        adapter=adapter,
        turn_id=turn_id,
    )


async def _store_turn(
    runtime: Runtime,
    body: ChatRequest,
    state: ChatState,
    persona: str,
    prompt: Prompt,
    quoted: tuple[list[str], list[str]],
    started: float,
    ref: PersonaRef | None,
    result: Generated,
    adapter: str | None,
) -> ChatReply:
    """Store the exchange in the member's memory (and log), keep the reply as a turn, and say so."""
    user = body.key
    ttl_s = runtime.settings.memory.ttl_s
    if body.request_id and not await runtime.store.idempotency.claim(user, body.request_id, ttl_s):
        # this message was answered and stored meanwhile (a bot asked again while another replica generated): the
        # reply kept for it stands; stored once
        runtime.metrics.replies.labels("ok").inc()
        kept = await kept_reply(runtime, body)
        return kept or _answered(persona, result, adapter, logged=False, turn_id=None)
    now = time.time()
    user_tokens = await runtime.off_loop(runtime.count, body.text)
    record = await runtime.memory.record_exchange(
        user,
        body.chat_id,
        chat_kind=body.chat_kind,
        since=state.since,
        summary=state.summary,
        message=Turn(role="user", text=body.text, ts=now, tokens=user_tokens),
        reply=Turn(role="assistant", text=result.text, ts=now, tokens=result.tokens),
        display_name=body.display_name,
        # a group persona a member wrote is named in the log as "custom": its name (a card's character) is theirs
        persona="custom" if ref else persona,
        turn=_turn(body, prompt.own_messages, result, adapter, ref).model_copy(
            update={"facts": quoted[0], "recalled_from": quoted[1]}
        ),
        turns_kept=runtime.settings.feedback.turns_kept,
    )
    runtime.metrics.replies.labels("ok").inc()
    runtime.metrics.request_latency.labels("chat").observe(time.perf_counter() - started)
    answered = _answered(persona, result, adapter, logged=record.logged, turn_id=record.turn_id)
    answered.compare = await should_compare(runtime, user, record.turn_id, retry=False)
    await keep(runtime, body, answered)
    return answered


async def _store_retry(
    runtime: Runtime,
    body: ChatRequest,
    state: ChatState,
    persona: str,
    first: TurnRecord,
    started: float,
    result: Generated,
    adapter: str | None,
) -> ChatReply:
    """Keep a /retry's reply as a turn paired with the first reply; the memory stays as it was."""
    ttl_s = runtime.settings.memory.ttl_s
    turn_id = None
    if not body.request_id or await runtime.store.idempotency.claim(body.key, body.request_id, ttl_s):
        # the first turn's persona reference too: the store keeps the reference, not the text it was resolved to;
        # and it quotes what the first quoted, and leaves with it
        update = {
            "retry_of": first.retry_of or first.turn_id,
            "facts": first.facts,
            "recalled_from": first.recalled_from,
        }
        turn = _turn(body, first.prompt, result, adapter, first.persona_ref).model_copy(update=update)
        turn_id = await runtime.store.turns.save(
            turn, since=state.since, ttl_s=ttl_s, turns_kept=runtime.settings.feedback.turns_kept
        )
    elif kept := await kept_reply(runtime, body):
        return kept
    runtime.metrics.replies.labels("ok").inc()
    runtime.metrics.request_latency.labels("chat").observe(time.perf_counter() - started)
    answered = _answered(persona, result, adapter, logged=False, turn_id=turn_id)
    await keep(runtime, body, answered)
    return answered


async def _sse(items: AsyncIterator[str | ChatReply]) -> AsyncIterator[str]:
    async for item in items:
        if isinstance(item, ChatReply):
            yield sse("done", item.model_dump_json())
        else:
            yield sse("delta", StreamDelta(delta=item).model_dump_json())
