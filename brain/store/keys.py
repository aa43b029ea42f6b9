"""Redis key names and data layout of ownchat: the one module that spells a key. Every other module, the trainer's
included, builds a key by calling this one (tests/brain/store/test_keys.py holds them to it).

Every per-user key carries the hash tag ``{platform:user_id}`` so that one user's keys share a
Redis Cluster slot (the turn-writing script touches only those). Layout:

- ``oc:profile:{u}``         hash: display_name, since (creation ms, detects a forget mid-request),
                             consent (in/out), consent_version, consent_at, persona (JSON), adapter_version
- ``oc:chats:{u}``           set of chat ids the user has memory in
- ``oc:turns:{u}:CHAT``      list of JSON turns, oldest first, bounded by count and tokens, with a TTL
- ``oc:summary:{u}:CHAT``    rolling summary of turns that fell out of the window
- ``oc:earlier:{u}``         list of JSON turns that fell out of the window of any chat, oldest first, each with its
                             ``chat_id`` and ``chat_kind`` (for recall in later prompts); bounded by count, with the
                             memory TTL; kept only while recall is on
- ``oc:facts:{u}``           list of JSON facts about the user, oldest first: id, text, source (pinned by the user or
                             extracted from a message, then with the ``quote``), chat_id and chat_kind where it was
                             stated, ts; bounded by count, with the memory TTL (refreshed by every turn)
- ``oc:log:{u}``             stream of opted-in turns for training (only while opted in)
- ``oc:rate:{u}``            fixed-window request counter; the script that counts also gives it its TTL, so
                             it never outlives its window
- ``oc:requests:{u}``        sorted set: the idempotency keys of the user's chat requests -> when each was claimed
                             (ms), kept for the memory TTL: a retried request finds its key taken and stores
                             nothing. One key per user, so that /forget deletes them all
- ``oc:replied:{u}``         hash: idempotency key -> JSON ChatReply of the reply kept for that request (its turn
                             id with it), so that a request asked again is answered with the same reply; bounded by
                             the keys ``oc:requests:{u}`` still holds, with the memory TTL
- ``oc:authored:{u}``        set of the chat-persona keys of group personas the user set (a /forget deletes
                             those the user still authored)
- ``oc:chatpersona:{platform:chat:CHAT}``  a group chat's persona (JSON, with ``author``: the user who set it)
- ``oc:personatext:{platform:chat:CHAT}``  hash: digest (persona_digest) -> JSON {author, text} of every custom
                             persona set in the group: what kept turns name (PersonaRef) instead of copying the text.
                             Listed in its authors' ``oc:authored`` sets; a /forget deletes that author's versions,
                             and the turns that named them no longer resolve (as good as expired)
- ``oc:turnrec:{u}``         hash: turn id -> JSON TurnRecord (brain/feedback_records.py) of a reply the bot gave the
                             user, kept so it can be rated or retried; without the platform's thread context (other
                             members' messages). ``oc:turnorder:{u}`` (sorted set: turn id -> ms) orders them: both
                             bounded by count (feedback.turns_kept, oldest dropped) and age (the memory TTL)
- ``oc:ratings:{u}``         hash: turn id -> JSON RatingRecord of the user's latest rating of that turn, only while
                             they and the turn's author were both opted in when they rated; ``oc:ratingorder:{u}``
                             orders them; bounded like the turns (feedback.ratings_kept, the memory TTL)
- ``oc:msgturn:{platform:chat:CHAT}``  hash: platform message id -> the turn it shows (every piece of a split
                             reply); ``oc:msgorder:{platform:chat:CHAT}`` orders them; bounded by count
                             (feedback.messages_per_chat) and the memory TTL. No user id and no text
Global: ``oc:users`` (known users), ``oc:opted-in``, ``oc:logged-users`` (users with a log stream), ``oc:tombstones``
(sorted set: HMAC-SHA-256 of a forgotten user's id with the id key -> forget time in ms; the id itself is not kept;
SHA-256 members that earlier versions wrote are still honoured), ``oc:id-key`` (the id key, generated once with SET NX
where OWNCHAT_ID_KEY is not given), ``oc:stats:requests`` (requests served),
``oc:turnof:TURN`` (the user a turn answered, with the memory TTL: how a rating finds the turn), ``oc:raters`` (users
with ratings; the likes and dislikes of each served version are counted from their kept ratings, never stored
apart, so that no deletion can leave them behind; ``oc:likes`` and ``oc:dislikes``, the counters an older version
kept, lose a removed target's fields), ``oc:registry:canary`` (hash: target -> JSON
of its Canary, a candidate serving a share of opted-in members),
``oc:persistence:rewritten-at`` (ms when the nightly run last had Redis rewrite its append-only file, so that
forgotten data leaves the disk), ``oc:trainer:lock`` (JSON of the nightly run's holder: host, pid; with a TTL),
``oc:registry`` (hash: target -> JSON of its LiveAdapter), ``oc:registry:history:TARGET`` (list of JSON
RegistryEvents, newest first) and the ``oc:registry:reload`` channel (JSON ReloadEvents; all three typed, with their
layout's format, in brain/registry_records.py) that tell every brain replica to reload; brains also re-read
``oc:registry`` on a timer.
The operator's dashboard (typed in brain/operator_records.py): ``oc:runs`` (list of JSON RunSummaries that nightly
runs leave, newest first, bounded; a target gone for good is taken out of them), ``oc:audit`` (list of JSON
AuditRecords of the dashboard's actions, newest first, bounded) and ``oc:trainer:paused`` (JSON SchedulePause
while the nightly schedule is paused).
"""

from __future__ import annotations

# global keys
USERS = "oc:users"
LOGGED_USERS = "oc:logged-users"
OPTED_IN = "oc:opted-in"
TOMBSTONES = "oc:tombstones"
ID_KEY = "oc:id-key"
REQUESTS_SERVED = "oc:stats:requests"
RATERS = "oc:raters"
# like counters an older version kept apart from the ratings (they drifted); nothing counts with them now, and a
# removed target's fields go (Registry.delete_record)
LIKES = "oc:likes"
DISLIKES = "oc:dislikes"
PERSISTENCE_REWRITTEN = "oc:persistence:rewritten-at"
TRAINER_LOCK = "oc:trainer:lock"
REGISTRY = "oc:registry"
CANARY = "oc:registry:canary"
RELOAD_CHANNEL = "oc:registry:reload"
# the operator's dashboard: run summaries, its audit log, the schedule's pause flag
RUN_SUMMARIES = "oc:runs"
AUDIT = "oc:audit"
SCHEDULE_PAUSED = "oc:trainer:paused"


# a user's own keys (hash tag: the user)


def profile(user: str) -> str:
    return f"oc:profile:{{{user}}}"


def chats(user: str) -> str:
    return f"oc:chats:{{{user}}}"


def turns(user: str, chat_id: str) -> str:
    """A chat's memory window; with chat_id '', the prefix that the chat id completes."""
    return f"oc:turns:{{{user}}}:{chat_id}"


def summary(user: str, chat_id: str) -> str:
    """A chat's rolling summary; with chat_id '', the prefix that the chat id completes."""
    return f"oc:summary:{{{user}}}:{chat_id}"


def earlier(user: str) -> str:
    return f"oc:earlier:{{{user}}}"


def facts(user: str) -> str:
    return f"oc:facts:{{{user}}}"


def log(user: str) -> str:
    return f"oc:log:{{{user}}}"


def rate(user: str) -> str:
    return f"oc:rate:{{{user}}}"


def requests(user: str) -> str:
    return f"oc:requests:{{{user}}}"


def replied(user: str) -> str:
    return f"oc:replied:{{{user}}}"


def authored(user: str) -> str:
    return f"oc:authored:{{{user}}}"


def turn_records(user: str) -> str:
    return f"oc:turnrec:{{{user}}}"


def turn_order(user: str) -> str:
    return f"oc:turnorder:{{{user}}}"


def ratings(user: str) -> str:
    return f"oc:ratings:{{{user}}}"


def rating_order(user: str) -> str:
    return f"oc:ratingorder:{{{user}}}"


# a chat's keys (hash tag: the chat)


def chat_persona(platform: str, chat_id: str) -> str:
    return f"oc:chatpersona:{{{platform}:chat:{chat_id}}}"


_PERSONA_TEXTS = "oc:personatext:"


def persona_texts(platform: str, chat_id: str) -> str:
    return f"{_PERSONA_TEXTS}{{{platform}:chat:{chat_id}}}"


def is_persona_texts(key: str) -> bool:
    """Whether an authored key (``oc:authored``) is a chat's persona texts rather than its persona."""
    return key.startswith(_PERSONA_TEXTS)


def message_turns(platform: str, chat_id: str) -> str:
    return f"oc:msgturn:{{{platform}:chat:{chat_id}}}"


def message_order(platform: str, chat_id: str) -> str:
    return f"oc:msgorder:{{{platform}:chat:{chat_id}}}"


def chat_of(key: str) -> tuple[str, str]:
    """The platform and chat id of a per-chat key (its hash tag is ``{platform:chat:CHAT}``)."""
    tag = key.split("{", 1)[1].rsplit("}", 1)[0]
    platform, _, chat_id = tag.split(":", 2)
    return platform, chat_id


# other keyed ones


def turn_author(turn_id: str) -> str:
    return f"oc:turnof:{turn_id}"


def registry_history(target: str) -> str:
    return f"oc:registry:history:{target}"
