"""Personas: the one a member picked for themselves (in their profile), the one a group chat uses, and every custom
version of a group's persona that kept turns name (PersonaRef) instead of copying its text."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from brain.feedback_records import TurnRecord
from brain.store import keys, scripts
from brain.store.ids import MemberIds
from brain.store.profiles import Profiles
from brain.store.stored import chat_persona, chat_persona_author, json_object


def persona_digest(system_prompt: str) -> str:
    """What a kept turn names a custom group persona by (PersonaRef.digest): a digest of its system prompt."""
    return hashlib.sha256(system_prompt.strip().encode()).hexdigest()[:32]


@dataclass
class AuthoredPersona:
    """A group persona a member wrote (``persona``: the stored choice, without its author)."""

    platform: str
    chat_id: str
    persona: dict[str, Any]
    in_use: bool


class Personas:
    """Members' and group chats' personas, and who wrote each group persona (so that their /forget reaches it)."""

    def __init__(self, client: Any, profiles: Profiles, ids: MemberIds):
        self.r = client
        self.profiles = profiles
        self.ids = ids
        self._delete_authored = scripts.register(client, "delete_authored")
        self._delete_authored_texts = scripts.register(client, "delete_authored_texts")

    async def set_user(self, user: str, persona: dict[str, Any]) -> None:
        await self.profiles.update(user, {"persona": json.dumps(persona)}, users=(keys.USERS,))

    async def of_user(self, user: str) -> dict[str, Any] | None:
        return json_object(await self.r.hget(keys.profile(user), "persona"), "persona")

    async def set_chat(self, platform: str, chat_id: str, persona: dict[str, Any], *, author: str) -> None:
        """A group chat's persona, noted among the author's keys so that their /forget deletes it."""
        key = keys.chat_persona(platform, chat_id)
        pipe = self.r.pipeline(transaction=False)
        # the persona first: a /forget landing between the two leaves it listed, so a later one finds it
        pipe.set(key, json.dumps({**persona, "author": author}))
        pipe.sadd(keys.authored(author), key)
        if persona.get("custom") and persona.get("system_prompt"):
            # the version kept turns name (PersonaRef), so they resolve after the persona changes, until a forget
            texts = keys.persona_texts(platform, chat_id)
            version = json.dumps({"author": author, "text": persona["system_prompt"]})
            pipe.hset(texts, persona_digest(persona["system_prompt"]), version)
            pipe.sadd(keys.authored(author), texts)
        await pipe.execute()

    async def of_chat(self, platform: str, chat_id: str) -> dict[str, Any] | None:
        return chat_persona(await self.r.get(keys.chat_persona(platform, chat_id)))

    async def authored(self, user: str) -> list[AuthoredPersona]:
        """The group personas the user wrote: those groups use now, and earlier versions kept turns still name."""
        found: list[AuthoredPersona] = []
        for key in sorted(await self.r.smembers(keys.authored(user))):
            platform, chat_id = keys.chat_of(key)
            if keys.is_persona_texts(key):
                current = chat_persona(await self.r.get(keys.chat_persona(platform, chat_id))) or {}
                for raw in (await self.r.hgetall(key)).values():
                    version = json_object(raw, "persona version") or {}
                    text = version.get("text")
                    if version.get("author") == user and isinstance(text, str) and text != current.get("system_prompt"):
                        persona = {"name": "custom", "system_prompt": text}
                        found.append(AuthoredPersona(platform, chat_id, persona, in_use=False))
            else:
                raw = await self.r.get(key)
                if raw and chat_persona_author(raw) == user:
                    found.append(AuthoredPersona(platform, chat_id, chat_persona(raw) or {}, in_use=True))
        return found

    async def resolve(self, turn: TurnRecord | None) -> TurnRecord | None:
        """The turn with its referenced persona's text put back; None when that persona is gone (its author was
        forgotten, or the version expired): a turn never outlives the words it quotes."""
        if turn is None or turn.persona_ref is None:
            return turn
        ref = turn.persona_ref
        pipe = self.r.pipeline(transaction=False)
        pipe.get(keys.chat_persona(turn.platform, turn.chat_id))
        pipe.hget(keys.persona_texts(turn.platform, turn.chat_id), ref.digest)
        current, version = await pipe.execute()
        for raw in (current, version):
            try:
                found: Any = json.loads(raw) if raw else None
            except ValueError:
                continue
            if not isinstance(found, dict):
                continue
            # the reference names its author by their keyed hash; in memory it is the id again (for the engine)
            author = found.get("author")
            if not isinstance(author, str) or await self.ids.member(author) != ref.author:
                continue
            text = found.get("system_prompt") if raw is current else found.get("text")
            if isinstance(text, str) and persona_digest(text) == ref.digest:
                return turn.resolved(text, author)
        return None

    async def delete_authored(self, user: str, authored: Any) -> int:
        """Delete these authored keys (``oc:authored`` members) where the user still wrote them: a chat's persona
        only while it is theirs, and of a chat's persona texts only their versions. How many went."""
        if not authored:
            return 0
        pipe = self.r.pipeline(transaction=False)
        for key in sorted(authored):
            # a chat's persona versions hold other authors' too: only this user's go
            script = self._delete_authored_texts if keys.is_persona_texts(key) else self._delete_authored
            scripts.queue(pipe, script, [key], [user])
        return sum(int(n) for n in await pipe.execute())
