"""Facts about a member: pin one (/remember), list them (/memory), forget one or all (/memory forget N, clear).

A listing is as public as the chat it is asked from, so it holds only the facts that chat may use
(brain.memory.facts.visible): everything in a direct chat, and in a group only what was stated in that group.
Every read and write goes through the memory service (brain/memory/service.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from brain.api_models import FACT_ID_PATTERN, ID_PATTERN, ChatKind, Fact, FactList, FactPin, FactsDeleted
from brain.memory.facts import MAX_FACTS
from brain.service.auth import Authorized
from brain.service.deps import PlatformPath, RuntimeDep, UserIdPath
from brain.service.errors import ApiError, responses
from brain.service.routes.users import user_key
from brain.store.facts import FactAdded

router = APIRouter(dependencies=[Authorized], tags=["memory"], responses=responses())

ChatQuery = Annotated[str, Query(pattern=ID_PATTERN, description="the chat the facts are shown in")]
FactIdPath = Annotated[str, Path(pattern=FACT_ID_PATTERN, examples=["0a1b2c3d"])]
FACTS = "/v1/users/{platform}/{user_id}/facts"


@router.get(FACTS, response_model=FactList)
async def list_facts(
    platform: PlatformPath,
    user_id: UserIdPath,
    chat_id: ChatQuery,
    runtime: RuntimeDep,
    chat_kind: ChatKind = ChatKind.direct,
) -> FactList:
    """The member's facts that this chat may use, oldest first: the numbering of /memory."""
    return FactList(facts=await runtime.memory.visible_facts(user_key(platform, user_id), chat_id, chat_kind))


@router.post(FACTS, response_model=Fact, status_code=201, responses=responses(400, 409))
async def pin_fact(platform: PlatformPath, user_id: UserIdPath, body: FactPin, runtime: RuntimeDep) -> Fact:
    """Pin a fact about the member, stated in every prompt of theirs that this chat's facts may reach."""
    if (body.platform, body.user_id) != (platform, user_id):
        raise ApiError(400, "user_mismatch", "The user in the body differs from the user in the path.")
    added, fact = await runtime.memory.pin(body.key, body.text, body.chat_id, body.chat_kind)
    if added is FactAdded.full:
        raise ApiError(
            409, "too_many_facts", f"I keep at most {MAX_FACTS} facts about you; forget one first (/memory)."
        )
    return fact


@router.delete(f"{FACTS}/{{fact_id}}", response_model=FactsDeleted, responses=responses(404))
async def forget_fact(
    platform: PlatformPath, user_id: UserIdPath, fact_id: FactIdPath, runtime: RuntimeDep
) -> FactsDeleted:
    """Forget one fact."""
    deleted = await runtime.memory.forget_facts(user_key(platform, user_id), [fact_id])
    if not deleted:
        raise ApiError(404, "unknown_fact", "There is no such fact (it may be forgotten already).")
    return FactsDeleted(deleted=deleted)


@router.delete(FACTS, response_model=FactsDeleted)
async def clear_facts(
    platform: PlatformPath,
    user_id: UserIdPath,
    chat_id: ChatQuery,
    runtime: RuntimeDep,
    chat_kind: ChatKind = ChatKind.direct,
) -> FactsDeleted:
    """Forget every fact that this chat may use (in a direct chat: all of them)."""
    user = user_key(platform, user_id)
    facts = await runtime.memory.visible_facts(user, chat_id, chat_kind)
    return FactsDeleted(deleted=await runtime.memory.forget_facts(user, [fact.id for fact in facts]))
