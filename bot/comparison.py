""" "Which reply do you prefer?", written once for every platform (brain/service/routes/compare.py has the rules).

When the brain marks a reply (ChatReply.compare), the bot asks for a second reply to the same message (a /retry
of the first), shows it under a question, with two buttons; the member's press names the reply they prefer
and the other one, and the brain keeps the two as one preference pair. Only the member who asked may answer.
"""

from __future__ import annotations

import logging

from bot.client import BrainClient, BrainError
from bot.commands import Speaker, friendly_error
from brain.api_feedback import ComparisonRequest
from brain.api_models import ChatReply, ChatRequest

log = logging.getLogger(__name__)

QUESTION = "Here is another reply to your message. Which one do you prefer?"
PREFER_FIRST = "The first"
PREFER_SECOND = "This one"
NOT_YOURS = "Only the member who asked can choose between these replies."


async def second_reply(client: BrainClient, request: ChatRequest, first: ChatReply | None) -> ChatReply | None:
    """The other reply to compare ``first`` with, when the brain asked for a comparison; None otherwise (or when
    it could not be had: a comparison is a nicety, never worth a failure the member sees)."""
    if first is None or not first.compare or first.turn_id is None:
        return None
    again = request.model_copy(
        update={
            "text": "",
            "retry_of": first.turn_id,
            "retry_message": None,
            "request_id": f"{request.request_id}:compare" if request.request_id else None,
        }
    )
    try:
        second = await client.chat(again)
    except BrainError as exc:
        log.warning("no second reply to compare with: %s %s", exc.code, exc.message)
        return None
    return second if second.turn_id is not None else None


async def choose(client: BrainClient, who: Speaker, chosen: str, rejected: str) -> tuple[str, bool]:
    """Send the member's choice: what to tell them, and whether the question is answered (the buttons can go).
    Someone else's press is refused by the brain (the two replies are not theirs) and leaves the buttons."""
    request = ComparisonRequest(**who.chat.model_dump(), chosen_turn_id=chosen, rejected_turn_id=rejected)
    try:
        return (await client.compare(request)).reason, True
    except BrainError as exc:
        if exc.status == 404:
            return NOT_YOURS, False
        return (exc.message if exc.status in (403, 409) else friendly_error(exc)), False
