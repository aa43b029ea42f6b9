"""What /persona, /optin, /optout, /forget, /reset, /remember, /memory, /privacy, /help and /stats mean, once.

Platform-neutral: an adapter turns a platform event into a Speaker and a command line, calls
`run_command`, and renders the CommandReply (text plus buttons, each button being a command
line that the adapter runs as if the user had typed it). /retry is a chat, not a CommandReply: each adapter
streams its reply as it streams any other (bot.feedback.retry_request).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.client import BrainClient, BrainError, BrainUnavailable
from brain.api_models import MAX_FACT_CHARS, ChatKind, ChatRef, Fact, FactPin, PersonaSet, UserRef

COMMANDS: dict[str, str] = {
    "help": "What I can do",
    "persona": "Show or pick who I am: /persona NAME, or /persona custom TEXT",
    "optin": "Let me learn from our chats (asks first)",
    "optout": "Stop learning from our chats",
    "compare": "Now and then, let me ask which of two replies you prefer: /compare yes or /compare no",
    "forget": "Delete everything I keep about you (asks first)",
    "reset": "Clear my memory of this chat",
    "remember": "Pin a fact about you that I keep in mind: /remember I'm vegetarian",
    "memory": "What I remember of you here; /memory forget N or /memory clear forgets facts",
    "privacy": "What I store and why",
    "retry": "Answer again: my last reply, or the one you reply to (the first answer stays)",
}
RATING_HINT = "React 👍 or 👎 to my replies: I learn from what members like."
OPERATOR_COMMANDS: dict[str, str] = {"stats": "Usage figures (operators only)"}
CONFIRM = "yes"
EMPTY_MENTION = "Yes? Ask me anything, or try /help."
NOT_YOURS = "These buttons are for the person who asked."


@dataclass(frozen=True)
class Speaker:
    """Who sent a message, and where."""

    platform: str
    user_id: str
    chat_id: str
    chat_kind: ChatKind = ChatKind.direct
    display_name: str = ""
    is_chat_admin: bool = True
    is_operator: bool = False

    @property
    def user(self) -> UserRef:
        return UserRef(platform=self.platform, user_id=self.user_id)

    @property
    def chat(self) -> ChatRef:
        return ChatRef(platform=self.platform, user_id=self.user_id, chat_id=self.chat_id, chat_kind=self.chat_kind)


@dataclass(frozen=True)
class Button:
    label: str
    command: str


@dataclass
class CommandReply:
    text: str
    buttons: list[Button] = field(default_factory=list)


def may_press(owner_id: str, presser_id: str) -> bool:
    """Whether a member may press a button offered with a reply: only the member it was offered to, on every
    platform. A button runs its command as if its presser typed it, and most act on that person's own data
    (a consent, a deletion); a persona menu is the asker's too, and anyone else can ask for their own."""
    return owner_id == presser_id


def parse_command(text: str) -> tuple[str, str] | None:
    """'/persona@my_bot pirate' -> ('persona', 'pirate'); None when the text is not a command."""
    text = text.strip()
    if not text.startswith("/") or len(text) < 2:
        return None
    head, _, args = text[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    return (name, args.strip()) if name else None


def help_text() -> str:
    lines = ["Talk to me in plain words. Commands:"]
    lines += [f"/{name} - {description}" for name, description in COMMANDS.items()]
    lines.append(RATING_HINT)
    return "\n".join(lines)


def friendly_error(exc: Exception) -> str:
    """A short sentence for the user; never a traceback."""
    if isinstance(exc, BrainUnavailable):
        return "I can't think right now: my brain is unavailable. Please try again in a moment."
    if isinstance(exc, BrainError):
        if exc.status == 429:
            wait = f" in {int(exc.retry_after)} s" if exc.retry_after else " later"
            return f"You're sending messages faster than I can answer. Try again{wait}."
        return exc.message
    return "Something went wrong on my side. Please try again."


async def run_command(client: BrainClient, who: Speaker, name: str, args: str = "") -> CommandReply | None:
    """Carry out one command; None means 'stay silent' (e.g. an operator command from anyone else)."""
    handler = _HANDLERS.get(name)
    if name in OPERATOR_COMMANDS and not who.is_operator:
        return None
    if handler is None:
        return CommandReply(f"I don't know /{name}. Try /help.")
    try:
        return await handler(client, who, args)
    except BrainError as exc:
        return CommandReply(friendly_error(exc))


async def _help(client: BrainClient, who: Speaker, args: str) -> CommandReply:
    text = help_text()
    if who.is_operator:
        text += "\n" + "\n".join(f"/{n} - {d}" for n, d in OPERATOR_COMMANDS.items())
    return CommandReply(text)


async def _persona(client: BrainClient, who: Speaker, args: str) -> CommandReply:
    if not args:
        current = await client.get_persona(who.user, who.chat_id, who.chat_kind.value)
        presets = await client.personas()
        lines = [f"I'm currently '{current.name}'. Pick one:"]
        lines += [f"- {p.name}: {p.description}" for p in presets]
        lines.append("Or set your own: /persona custom TEXT")
        buttons = [Button(p.name, f"/persona {p.name}") for p in presets]
        return CommandReply("\n".join(lines), buttons)
    if who.chat_kind is ChatKind.group and not who.is_chat_admin:
        return CommandReply("Only this chat's admins can change my persona here.")
    first, _, rest = args.partition(" ")
    if first.lower() == "custom":
        request = PersonaSet(**who.chat.model_dump(), custom=rest) if rest.strip() else None
        if request is None:
            return CommandReply("Tell me who to be: /persona custom You are a patient chess coach.")
    else:
        request = PersonaSet(**who.chat.model_dump(), preset=first.lower())
    state = await client.set_persona(request)
    where = "in this chat" if state.scope.value == "chat" else "for you"
    text = f"Persona set {where}: {state.name}."
    return CommandReply(f"{text}\n{state.greeting}" if state.greeting else text)


async def _optin(client: BrainClient, who: Speaker, args: str) -> CommandReply:
    if args.lower() != CONFIRM:
        notice = await client.privacy()
        return CommandReply(
            f"{notice.text}\n\nDo you agree? Send /optin {CONFIRM} to opt in.",
            [Button("Yes, opt me in", f"/optin {CONFIRM}")],
        )
    state = await client.opt_in(who.user)
    when = state.at.strftime("%Y-%m-%d %H:%M UTC") if state.at else "now"
    return CommandReply(
        f"Thank you: you are opted in (consent version {state.version}, {when}). "
        "From now on our chats help me learn. /optout stops it at any time."
    )


async def _compare(client: BrainClient, who: Speaker, args: str) -> CommandReply:
    answer = args.strip().lower()
    if answer not in ("yes", "no"):
        return CommandReply(
            "Now and then I may answer one of your messages twice and ask which reply you prefer; your choice "
            "helps me learn what you like. Only for members who opted in (/optin), and only if the operator turned "
            "it on. Do you agree?",
            [Button("Yes, ask me", "/compare yes"), Button("No", "/compare no")],
        )
    try:
        state = await client.agree_to_compare(who.user, answer == "yes")
    except BrainError as exc:
        if exc.status == 409:
            return CommandReply(exc.message)
        raise
    if not state.agreed:
        return CommandReply("I won't ask you which reply you prefer.")
    if state.share <= 0:
        return CommandReply("Thanks: you agreed. Comparisons are off on this bot for now; I'll ask once they are on.")
    return CommandReply(
        f"Thanks: now and then (about {state.share:.0%} of your messages) I'll ask which reply you prefer."
    )


async def _optout(client: BrainClient, who: Speaker, args: str) -> CommandReply:
    delete = args.lower() in ("delete", "delete-logs")
    state = await client.opt_out(who.user, delete_logs=delete)
    if delete:
        return CommandReply("You are opted out, and the conversations you had logged for training are deleted.")
    text = (
        "You are opted out: from now on nothing you say is kept for training. "
        f"{state.logged_turns} earlier turns are still in your training log."
    )
    buttons = [Button("Delete them too", "/optout delete")] if state.logged_turns else []
    return CommandReply(text, buttons)


async def _forget(client: BrainClient, who: Speaker, args: str) -> CommandReply:
    if args.lower() != CONFIRM:
        return CommandReply(
            "This deletes everything I keep about you: memory, persona, consent and training log, "
            f"everywhere on {who.platform}, and I will never train on it again. Send /forget {CONFIRM} to confirm.",
            [Button("Yes, forget me", f"/forget {CONFIRM}")],
        )
    result = await client.forget(who.user)
    return CommandReply(f"Done: I forgot you ({result.deleted_keys} records deleted).")


async def _reset(client: BrainClient, who: Speaker, args: str) -> CommandReply:
    result = await client.reset(who.user, who.chat_id)
    return CommandReply(f"Memory of this chat cleared ({result.cleared_turns} turns).")


async def _remember(client: BrainClient, who: Speaker, args: str) -> CommandReply:
    text = " ".join(args.split())
    if not text:
        return CommandReply("Tell me what to keep in mind, for example: /remember I'm vegetarian and live in Porto.")
    if len(text) > MAX_FACT_CHARS:
        return CommandReply(f"That's long for one fact: keep it under {MAX_FACT_CHARS} characters.")
    fact = await client.remember(FactPin(**who.chat.model_dump(), text=text))
    where = "in this group and when we talk in private" if who.chat_kind is ChatKind.group else "when we talk"
    return CommandReply(f'I\'ll keep this in mind {where}: "{fact.text}"\n/memory lists what I know about you.')


async def _memory(client: BrainClient, who: Speaker, args: str) -> CommandReply:
    action, _, rest = args.strip().partition(" ")
    if action.lower() == "forget":
        return await _forget_fact(client, who, rest.strip())
    if action.lower() == "clear":
        result = await client.clear_facts(who.user, who.chat_id, who.chat_kind.value)
        scope = "I kept from this group" if who.chat_kind is ChatKind.group else "I kept about you"
        count = "1 fact" if result.deleted == 1 else f"{result.deleted} facts"
        return CommandReply(f"Done: I forgot the {count} {scope}.")
    if action:
        return CommandReply("Try /memory, /memory forget N or /memory clear.")
    view = await client.memory(who.user, who.chat_id, who.chat_kind.value)
    consent = await client.consent(who.user)
    facts = await client.facts(who.user, who.chat_id, who.chat_kind.value)
    lines = [f"Persona: {view.persona}", f"Learning from our chats: {'yes' if consent.opted_in else 'no'}"]
    if not view.summaries:
        lines.append("Earlier talk is not summarised: your older messages are kept so that I can recall them.")
    else:
        lines.append(f"Summary of earlier talk: {view.summary}" if view.summary else "No summary of earlier talk yet.")
    lines.append(f"Recent turns remembered here: {len(view.turns)}")
    lines += [f"  {t.role}: {t.text[:80]}" for t in view.turns[-6:]]
    if facts:
        lines.append("What I know about you here:")
        lines += [f"{n}. {fact.text} ({_origin(fact, who)})" for n, fact in enumerate(facts, start=1)]
        lines.append("/memory forget N forgets one; /memory clear forgets them all.")
    else:
        lines.append("No facts about you here yet: /remember TEXT pins one.")
    return CommandReply("\n".join(lines))


async def _forget_fact(client: BrainClient, who: Speaker, number: str) -> CommandReply:
    facts = await client.facts(who.user, who.chat_id, who.chat_kind.value)
    if not number.isdigit() or not 1 <= int(number) <= len(facts):
        known = f"1 to {len(facts)}" if facts else "none yet"
        return CommandReply(f"Which one? Send /memory forget N, with N from the list in /memory ({known}).")
    fact = facts[int(number) - 1]
    await client.forget_fact(who.user, fact.id)
    return CommandReply(f'Forgotten: "{fact.text}"')


def _origin(fact: Fact, who: Speaker) -> str:
    """Where a fact came from: pinned by the member, or picked up from one of their messages (quoted)."""
    if fact.source.value == "pinned":
        origin = "you pinned it"
    else:
        quote = fact.quote if len(fact.quote) <= 60 else fact.quote[:59] + "…"
        origin = f'from what you said: "{quote}"'
    if who.chat_kind is ChatKind.direct and fact.chat_kind is ChatKind.group:
        origin += ", in a group"
    return origin


async def _privacy(client: BrainClient, who: Speaker, args: str) -> CommandReply:
    notice = await client.privacy()
    consent = await client.consent(who.user)
    state = f"You are opted in (version {consent.version})." if consent.opted_in else "You are not opted in."
    return CommandReply(f"{notice.text}\n\n{state}")


async def _stats(client: BrainClient, who: Speaker, args: str) -> CommandReply:
    s = await client.stats()
    return CommandReply(
        f"Model: {s.model}\nUsers: {s.users}\nOpted in: {s.opted_in}\n"
        f"Training log entries: {s.log_entries}\nReplies served: {s.requests_served}"
    )


_HANDLERS = {
    "help": _help,
    "start": _help,
    "persona": _persona,
    "optin": _optin,
    "optout": _optout,
    "compare": _compare,
    "forget": _forget,
    "reset": _reset,
    "remember": _remember,
    "memory": _memory,
    "privacy": _privacy,
    "stats": _stats,
}
