"""Persona presets, and each user's (or group chat's) persona."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from brain import personas as persona_lib
from brain.api_models import ID_PATTERN, ChatKind, Persona, PersonaList, PersonaScope, PersonaSet, PersonaState
from brain.service.auth import Authorized
from brain.service.deps import PersonaNamePath, PlatformPath, RuntimeDep, UserIdPath
from brain.service.errors import ApiError, responses
from brain.service.routes.users import user_key

router = APIRouter(dependencies=[Authorized], tags=["personas"], responses=responses())


@router.get("/v1/personas", response_model=PersonaList)
async def list_personas(runtime: RuntimeDep) -> PersonaList:
    """The persona presets."""
    return PersonaList(presets=list(runtime.presets.values()))


@router.get("/v1/personas/{name}", response_model=Persona, responses=responses(404))
async def get_persona(name: PersonaNamePath, runtime: RuntimeDep) -> Persona:
    """One preset."""
    if name not in runtime.presets:
        raise ApiError(404, "unknown_persona", f"There is no persona called '{name}'.")
    return runtime.presets[name]


# The two query parameters as one form-style object, so that the document can say what the route checks: a group
# chat's persona needs its chat_id (dependentRequired cannot be said of separate parameters).
PERSONA_QUERY = {
    "name": "chat",
    "in": "query",
    "style": "form",
    "explode": True,
    "required": False,
    "schema": {
        "type": "object",
        "properties": {
            "chat_id": {"type": "string", "pattern": ID_PATTERN, "description": "the chat, for a group chat's persona"},
            "chat_kind": {"type": "string", "enum": [kind.value for kind in ChatKind], "default": "direct"},
        },
        "if": {"properties": {"chat_kind": {"const": "group"}}, "required": ["chat_kind"]},
        "then": {"required": ["chat_id"]},
    },
}


@router.get(
    "/v1/users/{platform}/{user_id}/persona",
    response_model=PersonaState,
    responses=responses(400),
    openapi_extra={"parameters": [PERSONA_QUERY]},
)
async def current_persona(
    platform: PlatformPath,
    user_id: UserIdPath,
    runtime: RuntimeDep,
    chat_id: Annotated[str | None, Query(pattern=ID_PATTERN, include_in_schema=False)] = None,
    chat_kind: Annotated[ChatKind, Query(include_in_schema=False)] = ChatKind.direct,
) -> PersonaState:
    """The persona that answers this user in this chat (a group chat's own persona in groups)."""
    user = user_key(platform, user_id)
    if chat_kind is ChatKind.group:
        if chat_id is None:
            raise ApiError(400, "missing_chat", "A group chat's persona needs its chat_id.")
        stored, scope = await runtime.store.personas.of_chat(platform, chat_id), PersonaScope.chat
    else:
        stored, scope = await runtime.store.personas.of_user(user), PersonaScope.user
    persona, custom = persona_lib.resolve(stored, runtime.presets, runtime.settings.brain.default_persona)
    return persona_lib.state(persona, custom, scope)


@router.put("/v1/users/{platform}/{user_id}/persona", response_model=PersonaState, responses=responses(400, 404))
async def set_persona(
    platform: PlatformPath, user_id: UserIdPath, body: PersonaSet, runtime: RuntimeDep
) -> PersonaState:
    """Pick a preset, set a custom persona, or import a chara_card_v2 card."""
    if (body.platform, body.user_id) != (platform, user_id):
        raise ApiError(400, "user_mismatch", "The user in the body differs from the user in the path.")
    limit = runtime.settings.limits.max_persona_chars
    try:
        if body.preset is not None:
            choice = persona_lib.preset_choice(body.preset, runtime.presets)
        elif body.custom is not None:
            choice = persona_lib.custom_persona(body.custom, limit)
        else:
            choice = persona_lib.persona_from_card(body.card or {}, limit)
        # what is stored is what every later chat reads back: checked by the same model first, so that a value
        # the read side would refuse is refused here, before anything is written
        persona, custom = persona_lib.persona_of(choice, runtime.presets, runtime.settings.brain.default_persona)
    except persona_lib.PersonaError as exc:
        status = 404 if body.preset is not None else 413 if "at most" in str(exc) else 400
        raise ApiError(status, "invalid_persona", str(exc)) from exc
    if body.chat_kind is ChatKind.group:
        await runtime.store.personas.set_chat(platform, body.chat_id, choice, author=body.key)
        scope = PersonaScope.chat
    else:
        await runtime.store.personas.set_user(body.key, choice)
        scope = PersonaScope.user
    return persona_lib.state(persona, custom, scope)
