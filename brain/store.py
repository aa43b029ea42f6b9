"""Redis key names and data layout of ownchat. Nothing else spells a key.

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
where OWNCHAT_ID_KEY is not given),
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

Every read-modify-write that must not interleave with another client's is one Lua script over keys of one user
(or one key); global keys stay outside scripts, since in a cluster they live in other slots.

A /forget deletes every key of the user (their turn records and the ratings they gave included), the ``oc:turnof``
keys of their turns and the ``oc:msgturn`` entries that point at them, the ratings others gave their replies (so the
like counts, counted from kept ratings, drop with them and with their own ratings) and their versions of group
personas, and takes them out of the global sets. ``/optout delete`` deletes the user's ratings with their log.
The operator's dashboard (typed in brain/operator_records.py): ``oc:runs`` (list of JSON RunSummaries that nightly
runs leave, newest first, bounded; a target gone for good is taken out of them), ``oc:audit`` (list of JSON
AuditRecords of the dashboard's actions, newest first, bounded) and ``oc:trainer:paused`` (JSON SchedulePause
while the nightly schedule is paused).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, ValidationError
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from brain.api_models import EarlierTurn, Fact, Turn
from brain.feedback_records import Canary, RatedTurn, RatingRecord, TurnRecord
from brain.operator_records import AuditRecord, RunSummary, SchedulePause
from brain.registry_records import LiveAdapter, RecordFormatError, RegistryEvent, ReloadEvent

log = logging.getLogger("brain.store")
USERS = "oc:users"
LOGGED_USERS = "oc:logged-users"
OPTED_IN = "oc:opted-in"
TOMBSTONES = "oc:tombstones"
PERSISTENCE_REWRITTEN = "oc:persistence:rewritten-at"
ID_KEY = "oc:id-key"
TRAINER_LOCK = "oc:trainer:lock"
REGISTRY = "oc:registry"
RELOAD_CHANNEL = "oc:registry:reload"
REQUESTS_SERVED = "oc:stats:requests"
REGISTRY_HISTORY_LENGTH = 100
# idempotency keys kept per user (a bot retries a message a few times, within a minute)
MAX_REQUEST_KEYS = 1000
RATERS = "oc:raters"
# like counters an older version kept apart from the ratings (they drifted); nothing counts with them now, and a
# removed target's fields go (delete_registry_record)
LIKES = "oc:likes"
DISLIKES = "oc:dislikes"
CANARY = "oc:registry:canary"
# the profile field of a member's agreement to comparisons: the consent_at of the opt-in it was given under
COMPARE_FIELD = "compare_for"
# the served_by of the base model in the like counters
BASE = "base"
# keys read per pipeline where a loop reads many (the export of rated turns)
READ_CHUNK = 500
# the operator's dashboard: run summaries, its audit log, the schedule's pause flag
RUN_SUMMARIES = "oc:runs"
RUN_SUMMARIES_KEPT = 60
AUDIT = "oc:audit"
AUDIT_KEPT = 1000
SCHEDULE_PAUSED = "oc:trainer:paused"
# what a run summary says instead of a target gone for good (a forgotten member's), as the reports on disk do
FORGOTTEN_TARGET = "[forgotten]"


def profile_key(user: str) -> str:
    return f"oc:profile:{{{user}}}"


def chats_key(user: str) -> str:
    return f"oc:chats:{{{user}}}"


def turns_key(user: str, chat_id: str) -> str:
    return f"oc:turns:{{{user}}}:{chat_id}"


def summary_key(user: str, chat_id: str) -> str:
    return f"oc:summary:{{{user}}}:{chat_id}"


def earlier_key(user: str) -> str:
    return f"oc:earlier:{{{user}}}"


def facts_key(user: str) -> str:
    return f"oc:facts:{{{user}}}"


def log_key(user: str) -> str:
    return f"oc:log:{{{user}}}"


def rate_key(user: str) -> str:
    return f"oc:rate:{{{user}}}"


def requests_key(user: str) -> str:
    return f"oc:requests:{{{user}}}"


def replied_key(user: str) -> str:
    return f"oc:replied:{{{user}}}"


def authored_key(user: str) -> str:
    return f"oc:authored:{{{user}}}"


def chat_persona_key(platform: str, chat_id: str) -> str:
    return f"oc:chatpersona:{{{platform}:chat:{chat_id}}}"


PERSONA_TEXTS_PREFIX = "oc:personatext:"


def persona_texts_key(platform: str, chat_id: str) -> str:
    return f"{PERSONA_TEXTS_PREFIX}{{{platform}:chat:{chat_id}}}"


def persona_digest(system_prompt: str) -> str:
    """What a kept turn names a custom group persona by (PersonaRef.digest): a digest of its system prompt."""
    return hashlib.sha256(system_prompt.strip().encode()).hexdigest()[:32]


def turn_records_key(user: str) -> str:
    return f"oc:turnrec:{{{user}}}"


def turn_order_key(user: str) -> str:
    return f"oc:turnorder:{{{user}}}"


def ratings_key(user: str) -> str:
    return f"oc:ratings:{{{user}}}"


def rating_order_key(user: str) -> str:
    return f"oc:ratingorder:{{{user}}}"


def turn_author_key(turn_id: str) -> str:
    return f"oc:turnof:{turn_id}"


def message_turns_key(platform: str, chat_id: str) -> str:
    return f"oc:msgturn:{{{platform}:chat:{chat_id}}}"


def message_order_key(platform: str, chat_id: str) -> str:
    return f"oc:msgorder:{{{platform}:chat:{chat_id}}}"


def registry_history_key(target: str) -> str:
    return f"oc:registry:history:{target}"


# the secret that keys every hash of a member's id (tombstones, adapter names); from the environment, else
# generated once and kept in Redis (ID_KEY): a dump without it names no one, and every replica uses the same
ID_KEY_ENV = "OWNCHAT_ID_KEY"
_id_key: bytes | None = None


def use_id_key(key: str | bytes) -> None:
    """Key the hashes of member ids with ``key`` in this process (Store.load_id_key calls it)."""
    global _id_key
    _id_key = key.encode() if isinstance(key, str) else key


def tombstone_member(user: str) -> str:
    """The keyed hash (HMAC-SHA-256) that stands for a member where their id must not: tombstones, adapter names."""
    key = os.environ.get(ID_KEY_ENV, "").encode() or _id_key  # the environment's, where given, wins
    if not key:
        raise RuntimeError(f"the id key is not loaded: set {ID_KEY_ENV}, or await Store.load_id_key() first")
    return hmac.new(key, user.encode(), hashlib.sha256).hexdigest()


LEGACY_PREFIX = "sha256:"


def legacy_tombstone_member(user: str) -> str:
    """The unkeyed SHA-256 that tombstones of earlier versions hold: still honoured, never written."""
    return hashlib.sha256(user.encode()).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


def connect(url: str, *, cluster: bool = False, password: str | None = None, timeout: float = 2.0) -> Any:
    """A redis.asyncio client (or cluster client) that fails fast while Redis is down and reconnects after."""
    options: dict[str, Any] = dict(
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        # after a Redis restart every pooled connection is dead: retry on a fresh one rather than fail the request
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    if cluster:
        return RedisCluster.from_url(url, **options)
    return aioredis.from_url(url, health_check_interval=10, **options)


# KEYS: profile, turns, log, chats, summary, earlier, facts
# ARGV: expected since ('' = new user), chat_id, user turn JSON, assistant turn JSON, max_turns,
#       max_tokens, ttl_s, now_ms, display_name, persona name, chat_kind, earlier turns to keep (0: none)
# Returns {status, logged, since, evicted turn JSON...}; status -1 = the user was forgotten meanwhile.
_RECORD_TURN = """
local since = redis.call('HGET', KEYS[1], 'since')
if ARGV[1] ~= '' and since ~= ARGV[1] then return {-1, 0, ''} end
if not since then
  since = ARGV[8]
  redis.call('HSET', KEYS[1], 'since', since, 'consent', 'out')
end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'display_name', ARGV[9]) end
redis.call('RPUSH', KEYS[2], ARGV[3], ARGV[4])
local max_turns = tonumber(ARGV[5])
local max_tokens = tonumber(ARGV[6])
local items = redis.call('LRANGE', KEYS[2], 0, -1)
local total = 0
local sizes = {}
for i, raw in ipairs(items) do
  -- a turn that is not a JSON object (an older version's, a damaged one) counts nothing and leaves first
  local ok, turn = pcall(cjson.decode, raw)
  sizes[i] = ok and type(turn) == 'table' and tonumber(turn['tokens']) or 0
  total = total + sizes[i]
end
local evicted = {}
local count = #items
local i = 1
while count > 2 and (count > max_turns or total > max_tokens) do
  table.insert(evicted, items[i])
  total = total - sizes[i]
  count = count - 1
  i = i + 1
end
if #evicted > 0 then redis.call('LTRIM', KEYS[2], #evicted, -1) end
local keep = tonumber(ARGV[12])
if keep > 0 and #evicted > 0 then
  for _, raw in ipairs(evicted) do
    local ok, turn = pcall(cjson.decode, raw)
    if ok and type(turn) == 'table' then
      turn['chat_id'] = ARGV[2]
      turn['chat_kind'] = ARGV[11]
      redis.call('RPUSH', KEYS[6], cjson.encode(turn))
    end
  end
  redis.call('LTRIM', KEYS[6], -keep, -1)
end
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('EXPIRE', KEYS[5], ARGV[7])
redis.call('EXPIRE', KEYS[6], ARGV[7])
redis.call('EXPIRE', KEYS[7], ARGV[7])
redis.call('SADD', KEYS[4], ARGV[2])
local logged = 0
local consent = redis.call('HMGET', KEYS[1], 'consent', 'consent_version')
if consent[1] == 'in' then
  local u = cjson.decode(ARGV[3])
  local a = cjson.decode(ARGV[4])
  redis.call('XADD', KEYS[3], '*', 'chat_id', ARGV[2], 'user_text', u['text'], 'reply', a['text'],
             'consent_version', consent[2] or '', 'persona', ARGV[10], 'ts', ARGV[8])
  logged = 1
end
local out = {1, logged, since}
for _, raw in ipairs(evicted) do table.insert(out, raw) end
return out
"""


# KEYS: rate; ARGV: window_s. Returns {requests in this window, seconds left}. A counter found without a
# TTL (left by an older, non-atomic version) gets one here too.
_COUNT_REQUEST = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""

# KEYS: chats, summary; ARGV: chat_id, summary, ttl_s. Writes only while the chat still exists.
_FOLD_SUMMARY = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""

# KEYS: profile, log, ratings, rating order; ARGV: now_ms, delete the log and the ratings ('1'/'0'), then field,
# value pairs. Creates the profile where there is none (since now, consent out), then sets the fields.
_UPDATE_PROFILE = """
redis.call('HSETNX', KEYS[1], 'since', ARGV[1])
redis.call('HSETNX', KEYS[1], 'consent', 'out')
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
if ARGV[2] == '1' then redis.call('DEL', KEYS[2], KEYS[3], KEYS[4]) end
return 1
"""

# A user's kept turns that quote what is being deleted leave with it (a /retry could bring it back, and training
# would learn it). Shared by the scripts below: drops from the turn records and their order every turn for which
# ``quotes(turn)`` holds, and appends "platform TAB chat_id TAB turn id" of each to ``out`` (their author keys and
# message maps live in other slots).
_DROP_TURNS = """
local function drop_turns(records, order, quotes, out)
  local fields = redis.call('HGETALL', records)
  for i = 1, #fields, 2 do
    local ok, turn = pcall(cjson.decode, fields[i + 1])
    if ok and type(turn) == 'table' and quotes(turn) then
      redis.call('HDEL', records, fields[i])
      redis.call('ZREM', order, fields[i])
      table.insert(out, tostring(turn['platform']) .. '\t' .. tostring(turn['chat_id']) .. '\t' .. fields[i])
    end
  end
end
local function holds(list, value)
  if type(list) ~= 'table' then return false end
  for _, item in ipairs(list) do if item == value then return true end end
  return false
end
"""

# KEYS: turns, summary, chats, earlier, turn records, turn order; ARGV: chat_id. Returns {how many turns were
# cleared (those in the window), then the kept turns dropped (see _DROP_TURNS): those of the chat, which quote its
# memory, and those of other chats that recalled its messages}.
_RESET_CHAT = (
    _DROP_TURNS
    + """
local cleared = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
local kept = {}
local dropped = false
for _, raw in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do
  local ok, turn = pcall(cjson.decode, raw)
  if ok and type(turn) == 'table' and turn['chat_id'] ~= ARGV[1] then table.insert(kept, raw) else dropped = true end
end
if dropped then
  local ttl = redis.call('TTL', KEYS[4])
  redis.call('DEL', KEYS[4])
  for _, raw in ipairs(kept) do redis.call('RPUSH', KEYS[4], raw) end
  if #kept > 0 and ttl > 0 then redis.call('EXPIRE', KEYS[4], ttl) end
end
local out = {cleared}
drop_turns(KEYS[5], KEYS[6], function(turn)
  return turn['chat_id'] == ARGV[1] or holds(turn['recalled_from'], ARGV[1])
end, out)
return out
"""
)

# KEYS: facts, profile; ARGV: fact JSON, max facts, ttl_s, now_ms, expected since ('' = none expected: a fact the
# user pins, which creates the profile where there is none), make room ('1': an extracted fact, which replaces the
# oldest extracted fact when the list is full). Facts are compared by their text, lower-cased, without punctuation.
# Returns 1 added, 0 already known, -1 the user was forgotten meanwhile, -2 full.
_ADD_FACT = """
local function norm(text)
  return (string.gsub(string.lower(text), '[%s%p]+', ' ')):match('^%s*(.-)%s*$')
end
local since = redis.call('HGET', KEYS[2], 'since')
if ARGV[5] ~= '' and since ~= ARGV[5] then return -1 end
local function text_of(raw)
  -- a fact that is not a JSON object with a text (an older version's, a damaged one) matches nothing
  local ok, item = pcall(cjson.decode, raw)
  if ok and type(item) == 'table' and type(item['text']) == 'string' then return item end
  return nil
end
local fact = cjson.decode(ARGV[1])
local wanted = norm(fact['text'])
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for _, raw in ipairs(items) do
  local item = text_of(raw)
  if item and norm(item['text']) == wanted then return 0 end
end
if #items >= tonumber(ARGV[2]) then
  if ARGV[6] ~= '1' then return -2 end
  local oldest = nil
  for _, raw in ipairs(items) do
    local item = text_of(raw)
    if not item or item['source'] == 'extracted' then oldest = raw break end
  end
  if not oldest then return -2 end
  redis.call('LREM', KEYS[1], 1, oldest)
end
if not since then redis.call('HSET', KEYS[2], 'since', ARGV[4], 'consent', 'out') end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: facts, turn records, turn order; ARGV: ids. Returns {how many facts were deleted, then the dropped turns
# that quoted one of them (see _DROP_TURNS)}.
_DELETE_FACTS = (
    _DROP_TURNS
    + """
local wanted = {}
for _, id in ipairs(ARGV) do wanted[id] = true end
local deleted = 0
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ok, fact = pcall(cjson.decode, raw)
  if ok and type(fact) == 'table' and wanted[fact['id']] then
    deleted = deleted + redis.call('LREM', KEYS[1], 1, raw)
  end
end
local out = {deleted}
drop_turns(KEYS[2], KEYS[3], function(turn)
  if type(turn['facts']) ~= 'table' then return false end
  for _, id in ipairs(turn['facts']) do if wanted[id] then return true end end
  return false
end, out)
return out
"""
)

# KEYS: the user's own keys (_own_keys: profile, chats, log, rate, authored, earlier, facts, requests, turn records,
# turn order, ratings, rating order); ARGV: turns key prefix, summary key prefix.
# Deletes every key of the user, the memory of each chat in the chats set at this moment included.
# Returns {keys deleted, how many authored keys follow, the chat-persona keys the user authored..., then
# "platform TAB chat_id TAB turn id" of each turn record}; those personas, turn authors and message maps live in
# other slots.
_FORGET = """
local deleted = 0
for _, chat in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  deleted = deleted + redis.call('DEL', ARGV[1] .. chat, ARGV[2] .. chat)
end
local authored = redis.call('SMEMBERS', KEYS[5])
local out = {0, #authored}
for _, key in ipairs(authored) do table.insert(out, key) end
for _, raw in ipairs(redis.call('HVALS', KEYS[9])) do
  local ok, turn = pcall(cjson.decode, raw)
  if ok and type(turn) == 'table' then
    local line = tostring(turn['platform']) .. '\t' .. tostring(turn['chat_id'])
    table.insert(out, line .. '\t' .. tostring(turn['turn_id']))
  end
end
out[1] = deleted + redis.call('DEL', unpack(KEYS))
return out
"""

# KEYS: a chat persona; ARGV: user. Deletes it only while that user is its author (another may have replaced it).
_DELETE_AUTHORED = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, persona = pcall(cjson.decode, raw)
if ok and type(persona) == 'table' and persona['author'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: a chat's persona texts; ARGV: user. Deletes the versions that user wrote.
_DELETE_AUTHORED_TEXTS = """
local deleted = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local ok, version = pcall(cjson.decode, entries[i + 1])
  if not ok or type(version) ~= 'table' or version['author'] == ARGV[1] then
    deleted = deleted + redis.call('HDEL', KEYS[1], entries[i])
  end
end
return deleted
"""

# KEYS: a rater's ratings, rating order; ARGV: turn ids. Deletes the rater's ratings of those turns (their author was
# forgotten); returns how many there were.
_UNRATE_TURNS = """
local deleted = 0
for _, id in ipairs(ARGV) do
  deleted = deleted + redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return deleted
"""

# KEYS: a list; ARGV: pairs of an item and what replaces it. Replaces each such item wherever it still is (by value:
# an item pushed meanwhile shifts the others).
_REPLACE_ITEMS = """
local new = {}
for i = 1, #ARGV, 2 do new[ARGV[i]] = ARGV[i + 1] end
for index, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if new[raw] then redis.call('LSET', KEYS[1], index - 1, new[raw]) end
end
return 1
"""

# KEYS: lock; ARGV: the holder's token, our token, ttl_ms. Takes the lock over only from that holder.
_TAKE_OVER_LOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS: lock; ARGV: token, ttl_ms. Extends the lock only while this token still holds it.
_RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: lock; ARGV: token. Deletes the lock only while this token still holds it.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: profile; ARGV: adapter version ('' removes it). Never recreates the profile of a forgotten user.
_SET_ADAPTER_VERSION = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'adapter_version') return 1 end
redis.call('HSET', KEYS[1], 'adapter_version', ARGV[1])
return 1
"""

# A hash of records with a sorted set (id -> ms) that orders them: drops those older than the age, then the oldest
# beyond the count, from both. Shared by the scripts below; returns the ids dropped.
_KEEP_BOUNDED = """
local function keep_bounded(hash, order, now, max_age_ms, max_count)
  local dropped = redis.call('ZRANGEBYSCORE', order, '-inf', '(' .. (now - max_age_ms))
  local over = redis.call('ZCARD', order) - #dropped - max_count
  if over > 0 then
    for _, id in ipairs(redis.call('ZRANGE', order, #dropped, #dropped + over - 1)) do table.insert(dropped, id) end
  end
  for i = 1, #dropped, 500 do
    local part = {unpack(dropped, i, math.min(i + 499, #dropped))}
    redis.call('ZREM', order, unpack(part))
    redis.call('HDEL', hash, unpack(part))
  end
  return dropped
end
"""

# KEYS: requests, replied; ARGV: request id, now_ms, ttl_ms, most kept. 1 if the id was not claimed within the TTL.
# The ids the requests set drops (by age, then beyond the most kept) take their kept replies with them.
_CLAIM_REQUEST = (
    _KEEP_BOUNDED
    + """
local now, ttl, most = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- an id claimed exactly ttl ms ago has expired: keep_bounded keeps scores equal to its bound
keep_bounded(KEYS[2], KEYS[1], now, ttl - 1, most)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
keep_bounded(KEYS[2], KEYS[1], now, ttl - 1, most)
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""
)

# KEYS: replied; ARGV: request id, reply JSON, ttl_ms. Keeps the reply of a claimed request (bounded by the claims).
_KEEP_REPLY = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: profile, turn records, turn order, facts; ARGV: expected since, turn id, TurnRecord JSON, now_ms, ttl_s,
# most kept, then the ids of the facts the turn quotes. Keeps the turn only while the profile created at ``since``
# stands (no forget meanwhile) and every fact it quotes is still kept (none deleted while it was generated).
# 1 kept, -1 forgotten, -2 a fact it quotes was deleted meanwhile.
_SAVE_TURN = (
    _KEEP_BOUNDED
    + """
local since = redis.call('HGET', KEYS[1], 'since')
if not since or since ~= ARGV[1] then return -1 end
if #ARGV > 6 then
  local kept = {}
  for _, raw in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do
    local ok, fact = pcall(cjson.decode, raw)
    if ok and type(fact) == 'table' and fact['id'] then kept[fact['id']] = true end
  end
  for i = 7, #ARGV do if not kept[ARGV[i]] then return -2 end end
end
local now = tonumber(ARGV[4])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], now, ARGV[2])
keep_bounded(KEYS[2], KEYS[3], now, tonumber(ARGV[5]) * 1000, tonumber(ARGV[6]))
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return 1
"""
)

# KEYS: turn records, turn order; ARGV: platform, chat_id. The user's newest turn in that chat (JSON), or false.
_LAST_TURN = """
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[2], 0, -1)) do
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then
    local turn = cjson.decode(raw)
    if turn['platform'] == ARGV[1] and turn['chat_id'] == ARGV[2] then return raw end
  end
end
return false
"""

# KEYS: rater's profile, ratings, rating order; ARGV: turn id, rating (-1, 0, 1), the author opted in ('1'/'0'),
# RatingRecord JSON, now_ms, ttl_s, most kept. The rating replaces the rater's previous one of the turn; it is kept
# only while the rater (read here) and the author (read just before) are both opted in, and a rating that cannot be
# kept deletes the previous one too. Returns {previous rating (0: none), kept (1/0), rater opted in (1/0)}.
_RATE_TURN = (
    _KEEP_BOUNDED
    + """
local previous = 0
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if raw then previous = tonumber(cjson.decode(raw)['rating']) or 0 end
local rater_in = redis.call('HGET', KEYS[1], 'consent') == 'in'
local rating = tonumber(ARGV[2])
if rating == 0 or not rater_in or ARGV[3] ~= '1' then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {previous, 0, rater_in and 1 or 0}
end
local now = tonumber(ARGV[5])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[3], now, ARGV[1])
keep_bounded(KEYS[2], KEYS[3], now, tonumber(ARGV[6]) * 1000, tonumber(ARGV[7]))
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[6])
return {previous, 1, 1}
"""
)

# KEYS: message turns, message order (one chat); ARGV: turn id, now_ms, ttl_s, most kept, most per turn, only a first
# mapping ('1': do nothing when the turn has messages already), message ids... A message is mapped once: one that
# points at another turn stays as it is; a turn gets at most ``most per turn`` messages. Returns how many of the
# message ids point at the turn afterwards, or -1 when only a first mapping was asked for and this is not one.
_MAP_MESSAGES = (
    _KEEP_BOUNDED
    + """
local held = 0
for _, turn in ipairs(redis.call('HVALS', KEYS[1])) do
  if turn == ARGV[1] then held = held + 1 end
end
if ARGV[6] == '1' and held > 0 then return -1 end
local now = tonumber(ARGV[2])
local most = tonumber(ARGV[5])
for i = 7, #ARGV do
  if held < most and redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[1]) == 1 then
    redis.call('ZADD', KEYS[2], now, ARGV[i])
    held = held + 1
  end
end
keep_bounded(KEYS[1], KEYS[2], now, tonumber(ARGV[3]) * 1000, tonumber(ARGV[4]))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local mapped = 0
for i = 7, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then mapped = mapped + 1 end
end
return mapped
"""
)

# KEYS: message turns, message order (one chat); ARGV: turn ids. Deletes the messages that point at those turns.
_UNMAP_TURNS = """
local gone = {}
for _, id in ipairs(ARGV) do gone[id] = true end
local deleted = 0
local pairs_ = redis.call('HGETALL', KEYS[1])
for i = 1, #pairs_, 2 do
  if gone[pairs_[i + 1]] then
    redis.call('HDEL', KEYS[1], pairs_[i])
    redis.call('ZREM', KEYS[2], pairs_[i])
    deleted = deleted + 1
  end
end
return deleted
"""


@dataclass
class ChatState:
    """Everything one chat message needs from Redis, loaded in one pipelined round trip."""

    profile: dict[str, str]
    turns: list[dict[str, Any]]
    summary: str
    chat_persona: dict[str, Any] | None
    requests_this_window: int
    window_left_s: int
    # who set the group's persona (a kept turn names a custom one by reference, so that its author's forget reaches it)
    chat_persona_author: str | None = None
    # the user's facts and the turns that left the window of any of their chats (empty unless asked for)
    facts: list[dict[str, Any]] = field(default_factory=list)
    earlier: list[dict[str, Any]] = field(default_factory=list)

    @property
    def since(self) -> str:
        return self.profile.get("since", "")

    @property
    def opted_in(self) -> bool:
        return self.profile.get("consent") == "in"

    @property
    def user_persona(self) -> dict[str, Any] | None:
        return _json_object(self.profile.get("persona"), "persona")


@dataclass
class RecordResult:
    stored: bool
    logged: bool
    evicted: list[dict[str, Any]] = field(default_factory=list)
    # the profile's creation time: work done later for this turn (an extracted fact) checks it is unchanged
    since: str = ""
    # the reply's turn record, kept to be rated (None: none was given, or the user was forgotten meanwhile)
    turn_id: str | None = None


@dataclass
class RatingOutcome:
    """What a rating did: ``kept`` for training, or not and why (who was not opted in)."""

    kept: bool
    previous: int  # the rater's kept rating of the turn before (0: none)
    rater_opted_in: bool
    author_opted_in: bool


@dataclass
class AuthoredPersona:
    """A group persona a member wrote (``persona``: the stored choice, without its author)."""

    platform: str
    chat_id: str
    persona: dict[str, Any]
    in_use: bool


class FactAdded(Enum):
    added = 1
    known = 0
    forgotten = -1
    full = -2


@dataclass
class MemberCounts:
    """The operator's view of members: counts only. ``forgotten`` and ``ratings``: since the time asked for."""

    members: int
    opted_in: int
    opted_out: int
    forgotten: int
    ratings: int


class Store:
    """Every Redis read and write of ownchat, over one redis.asyncio client."""

    def __init__(self, client: Any, *, rate_window_s: int = 60):
        self.r = client
        self.rate_window_s = rate_window_s
        self._record_turn = client.register_script(_RECORD_TURN)
        self._renew_lock = client.register_script(_RENEW_LOCK)
        self._release_lock = client.register_script(_RELEASE_LOCK)
        self._claim_request = client.register_script(_CLAIM_REQUEST)
        self._keep_reply = client.register_script(_KEEP_REPLY)
        self._set_adapter_version = client.register_script(_SET_ADAPTER_VERSION)
        self._fold_summary = client.register_script(_FOLD_SUMMARY)
        self._reset_chat = client.register_script(_RESET_CHAT)
        self._take_over_lock = client.register_script(_TAKE_OVER_LOCK)
        self._replace_items = client.register_script(_REPLACE_ITEMS)
        self._add_fact = client.register_script(_ADD_FACT)
        self._delete_facts = client.register_script(_DELETE_FACTS)
        self._last_turn = client.register_script(_LAST_TURN)
        self._rate_turn = client.register_script(_RATE_TURN)
        self._map_messages = client.register_script(_MAP_MESSAGES)

    async def ping(self) -> bool:
        return bool(await self.r.ping())

    async def load_id_key(self) -> None:
        """Key the hashes of member ids (tombstone_member) with OWNCHAT_ID_KEY, or else with the key kept in Redis,
        generated by the first process that finds none (SET NX: every replica ends up with the same key)."""
        key = os.environ.get(ID_KEY_ENV)
        if not key:
            await self.r.set(ID_KEY, secrets.token_hex(32), nx=True)
            key = await self.r.get(ID_KEY)
        use_id_key(key)

    async def _member(self, user: str) -> str:
        if _id_key is None and not os.environ.get(ID_KEY_ENV):
            await self.load_id_key()
        return tombstone_member(user)

    async def close(self) -> None:
        await self.r.aclose()

    # chat path

    async def load_chat_state(
        self, user: str, platform: str, chat_id: str, group: bool, *, earlier: bool = False
    ) -> ChatState:
        """The user's state for one message; with ``earlier``, also the turns kept for recall."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(profile_key(user))
        pipe.lrange(turns_key(user, chat_id), 0, -1)
        pipe.get(summary_key(user, chat_id))
        # count and expiry in one script: the window starts with the first request and always ends
        _eval(pipe, _COUNT_REQUEST, [rate_key(user)], [self.rate_window_s])
        pipe.lrange(facts_key(user), 0, -1)
        if earlier:
            pipe.lrange(earlier_key(user), 0, -1)
        if group:  # last and only when needed: a cluster pipeline refuses keyless fillers such as ECHO
            pipe.get(chat_persona_key(platform, chat_id))
        profile, turns, summary, (count, ttl), facts, *rest = await pipe.execute()
        kept = rest.pop(0) if earlier else []
        return ChatState(
            profile=profile,
            turns=_readable(turns, Turn, "memory turn"),
            summary=summary or "",
            chat_persona=_chat_persona(rest[0] if rest else None),
            chat_persona_author=_chat_persona_author(rest[0] if rest else None),
            requests_this_window=int(count),
            window_left_s=max(int(ttl), 1),
            facts=_readable(facts, Fact, "fact"),
            # read by Memory.for_chat, off the event loop, which takes what it can of each: only JSON is checked here
            earlier=[turn for turn in (_json_object(raw, "earlier turn") for raw in kept) if turn is not None],
        )

    async def record_turn(
        self,
        user: str,
        chat_id: str,
        *,
        since: str,
        user_turn: dict[str, Any],
        assistant_turn: dict[str, Any],
        max_turns: int,
        max_tokens: int,
        ttl_s: int,
        display_name: str,
        persona: str,
        chat_kind: str = "direct",
        keep_earlier: int = 0,
        turn: TurnRecord | None = None,
        turns_kept: int = 256,
    ) -> RecordResult:
        """Store one exchange; log it for training only if the user is opted in at this moment. Turns that
        leave the window are kept for recall (the last ``keep_earlier`` of them, over every chat). ``turn``, the
        reply's record, is kept so that it can be rated (``turns_kept`` of the user's, for ``ttl_s``)."""
        keys = [
            profile_key(user),
            turns_key(user, chat_id),
            log_key(user),
            chats_key(user),
            summary_key(user, chat_id),
            earlier_key(user),
            facts_key(user),
        ]
        args = [
            since, chat_id, json.dumps(user_turn), json.dumps(assistant_turn),
            max_turns, max_tokens, ttl_s, now_ms(), display_name, persona, chat_kind, keep_earlier,
        ]  # fmt: skip
        result = await self._record_turn(keys=keys, args=args)
        status, logged = int(result[0]), bool(int(result[1]))
        if status < 0:
            return RecordResult(stored=False, logged=False)
        since = str(result[2])
        if turn is not None:
            await self._member(turn.author)  # loads the id key that a kept turn's persona reference is keyed with
        pipe = self.r.pipeline(transaction=False)
        if turn is not None:
            self._queue_save_turn(pipe, turn, since=since, ttl_s=ttl_s, turns_kept=turns_kept)
        pipe.sadd(USERS, user)
        pipe.incr(REQUESTS_SERVED)
        if logged:
            pipe.sadd(LOGGED_USERS, user)
        replies = await pipe.execute()
        turn_id = None
        if turn is not None:
            turn_id = await self._saved_turn(turn, int(replies[1]))
        evicted = [turn for turn in (_json_object(raw, "memory turn") for raw in result[3:]) if turn is not None]
        return RecordResult(stored=True, logged=logged, evicted=evicted, since=since, turn_id=turn_id)

    async def claim_request(self, user: str, request_id: str, ttl_s: int) -> bool:
        """Whether this is the first time the user's request with this idempotency key stores its turn."""
        args = [request_id, now_ms(), ttl_s * 1000, MAX_REQUEST_KEYS]
        keys = [requests_key(user), replied_key(user)]
        return bool(int(await self._claim_request(keys=keys, args=args)))

    async def keep_reply(self, user: str, request_id: str, reply: str, ttl_s: int) -> None:
        """Keep the reply (JSON) that answered the user's request with this idempotency key."""
        await self._keep_reply(keys=[replied_key(user)], args=[request_id, reply, ttl_s * 1000])

    async def kept_reply(self, user: str, request_id: str) -> str | None:
        """The reply (JSON) kept for the user's request with this idempotency key, if any."""
        raw = await self.r.hget(replied_key(user), request_id)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def fold_summary(self, user: str, chat_id: str, summary: str, ttl_s: int) -> None:
        # only while the chat still exists: a /forget or /reset meanwhile must not bring it back
        keys = [chats_key(user), summary_key(user, chat_id)]
        await self._fold_summary(keys=keys, args=[chat_id, summary, ttl_s])

    async def count_request(self) -> None:
        await self.r.incr(REQUESTS_SERVED)

    # personas

    async def set_user_persona(self, user: str, persona: dict[str, Any]) -> None:
        await self._update_profile(user, {"persona": json.dumps(persona)}, users=(USERS,))

    async def set_chat_persona(self, platform: str, chat_id: str, persona: dict[str, Any], *, author: str) -> None:
        """A group chat's persona, noted among the author's keys so that their /forget deletes it."""
        key = chat_persona_key(platform, chat_id)
        pipe = self.r.pipeline(transaction=False)
        # the persona first: a /forget landing between the two leaves it listed, so a later one finds it
        pipe.set(key, json.dumps({**persona, "author": author}))
        pipe.sadd(authored_key(author), key)
        if persona.get("custom") and persona.get("system_prompt"):
            # the version kept turns name (PersonaRef), so they resolve after the persona changes, until a forget
            texts = persona_texts_key(platform, chat_id)
            version = json.dumps({"author": author, "text": persona["system_prompt"]})
            pipe.hset(texts, persona_digest(persona["system_prompt"]), version)
            pipe.sadd(authored_key(author), texts)
        await pipe.execute()

    async def get_user_persona(self, user: str) -> dict[str, Any] | None:
        return _json_object(await self.r.hget(profile_key(user), "persona"), "persona")

    async def get_chat_persona(self, platform: str, chat_id: str) -> dict[str, Any] | None:
        return _chat_persona(await self.r.get(chat_persona_key(platform, chat_id)))

    # consent and data

    async def profile(self, user: str) -> dict[str, str]:
        return await self.r.hgetall(profile_key(user))

    async def opt_in(self, user: str, version: str) -> int:
        at = now_ms()
        fields = {"consent": "in", "consent_version": version, "consent_at": at}
        await self._update_profile(user, fields, at=at, users=(USERS, OPTED_IN))
        return at

    async def agree_to_compare(self, user: str, agreed: bool) -> bool:
        """Record (or withdraw) the member's agreement to be asked which of two replies they prefer. It holds for
        their present opt-in only: it names the opt-in's time, so an opt-out ends it and a later opt-in asks
        again. False (nothing changed) for a member who is not opted in."""
        consent, consent_at = await self.r.hmget(profile_key(user), ["consent", "consent_at"])
        if consent != "in":
            return False
        await self.r.hset(profile_key(user), COMPARE_FIELD, consent_at if agreed else "")
        return True

    @staticmethod
    def agreed_to_compare(profile: dict[str, str]) -> bool:
        """Opted in, and agreed to comparisons since that opt-in (agree_to_compare)."""
        return (
            profile.get("consent") == "in"
            and bool(profile.get(COMPARE_FIELD))
            and (profile.get(COMPARE_FIELD) == profile.get("consent_at"))
        )

    async def opt_out(self, user: str, *, delete_logs: bool) -> int:
        at = now_ms()
        unlisted = (OPTED_IN, LOGGED_USERS, RATERS) if delete_logs else (OPTED_IN,)
        await self._update_profile(user, {"consent": "out", "consent_at": at}, at=at, delete_log=delete_logs,
                                   unlisted=unlisted)  # fmt: skip
        return at

    async def _update_profile(
        self,
        user: str,
        fields: dict[str, Any],
        *,
        at: int | None = None,
        delete_log: bool = False,
        users: tuple[str, ...] = (),
        unlisted: tuple[str, ...] = (),
    ) -> None:
        """Set profile fields (creating the profile where there is none) in one script, then the global sets."""
        pipe = self.r.pipeline(transaction=False)
        args: list[Any] = [at or now_ms(), "1" if delete_log else "0"]
        for name, value in fields.items():
            args += [name, value]
        _eval(
            pipe, _UPDATE_PROFILE, [profile_key(user), log_key(user), ratings_key(user), rating_order_key(user)], args
        )
        for name in users:
            pipe.sadd(name, user)
        for name in unlisted:
            pipe.srem(name, user)
        await pipe.execute()

    async def log_length(self, user: str) -> int:
        return int(await self.r.xlen(log_key(user)))

    async def user_keys(self, user: str) -> list[str]:
        chats = await self.r.smembers(chats_key(user))
        keys = _own_keys(user)
        for chat in chats:
            keys += [turns_key(user, chat), summary_key(user, chat)]
        return keys

    async def forget(self, user: str) -> int:
        """Delete every key of the user and the group personas they authored, and leave a tombstone (a hash
        of the id, with the time). Returns how many keys were deleted."""
        pipe = self.r.pipeline(transaction=False)
        # the tombstone first: an export racing this call already sees the user as forgotten
        at = now_ms()
        # also the keyed form of the unkeyed hash that adapters trained by earlier versions name their members by
        legacy = await self._member(LEGACY_PREFIX + legacy_tombstone_member(user))
        pipe.zadd(TOMBSTONES, {await self._member(user): at, legacy: at})
        pipe.smembers(authored_key(user))
        _, authored = await pipe.execute()
        # the personas before the set that lists them: a crash in between leaves them findable
        deleted = await self._delete_authored(user, authored)
        pipe = self.r.pipeline(transaction=False)
        _eval(pipe, _FORGET, _own_keys(user), [turns_key(user, ""), summary_key(user, "")])
        for name in (USERS, LOGGED_USERS, OPTED_IN, RATERS):
            pipe.srem(name, user)
        (removed, n_listed, *rest), *_ = await pipe.execute()
        listed, turns = rest[: int(n_listed)], rest[int(n_listed) :]
        late = set(listed) - set(authored)  # set by the user while this ran
        deleted += int(removed) + await self._delete_authored(user, late)
        lines = [line.split("\t") for line in turns]
        await self._unrate_turns(sorted({t[2] for t in lines if len(t) == 3}))
        return deleted + await self._forget_turns(lines)

    async def _unrate_turns(self, turn_ids: list[str]) -> None:
        """Delete every member's ratings of these turns (a forgotten user's replies); like_counts, counted from the
        kept ratings, drops them with it."""
        if not turn_ids:
            return
        for raters in _chunks(sorted(await self.r.smembers(RATERS)), READ_CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for rater in raters:
                _eval(pipe, _UNRATE_TURNS, [ratings_key(rater), rating_order_key(rater)], turn_ids)
            await pipe.execute()

    async def _forget_turns(self, turns: list[list[str]]) -> int:
        """Delete the author keys of a forgotten user's turns and the platform messages that point at them."""
        if not turns:
            return 0
        by_chat: dict[tuple[str, str], list[str]] = {}
        for platform, chat_id, turn_id in (t for t in turns if len(t) == 3):
            by_chat.setdefault((platform, chat_id), []).append(turn_id)
        authors = sorted({t[2] for t in turns if len(t) == 3})
        pipe = self.r.pipeline(transaction=False)
        for turn_id in authors:
            pipe.delete(turn_author_key(turn_id))
        for (platform, chat_id), ids in sorted(by_chat.items()):
            _eval(pipe, _UNMAP_TURNS, [message_turns_key(platform, chat_id), message_order_key(platform, chat_id)], ids)
        replies = await pipe.execute()
        return sum(int(n) for n in replies[: len(authors)])  # keys deleted; the map's entries are not keys

    async def _delete_authored(self, user: str, keys: Any) -> int:
        if not keys:
            return 0
        pipe = self.r.pipeline(transaction=False)
        for key in sorted(keys):
            # a chat's persona versions hold other authors' too: only this user's go
            texts = key.startswith(PERSONA_TEXTS_PREFIX)
            _eval(pipe, _DELETE_AUTHORED_TEXTS if texts else _DELETE_AUTHORED, [key], [user])
        return sum(int(n) for n in await pipe.execute())

    async def forgotten_at(self, user: str) -> int | None:
        # a tombstone an earlier version left holds the unkeyed hash
        scores = await self.r.zmscore(TOMBSTONES, [await self._member(user), legacy_tombstone_member(user)])
        found = [int(score) for score in scores if score is not None]
        return max(found) if found else None

    async def tombstone_members(self) -> list[str]:
        """Every forgotten user, as the hash of their id (see tombstone_member)."""
        return list(await self.r.zrange(TOMBSTONES, 0, -1))

    async def tombstoned(self, members: list[str]) -> set[str]:
        """Which of these tombstone members (hashes of user ids, see tombstone_member) are forgotten users."""
        if not members:
            return set()
        # a member may be the unkeyed hash an earlier version wrote (an adapter's meta.json): its keyed form counts
        legacy = [await self._member(LEGACY_PREFIX + member) for member in members]
        scores = await self.r.zmscore(TOMBSTONES, members + legacy)
        found = [score is not None for score in scores]
        return {member for i, member in enumerate(members) if found[i] or found[len(members) + i]}

    async def reset_chat(self, user: str, chat_id: str) -> int:
        """Clear one chat's memory: its turns, its summary and its turns kept for recall, and the replies kept to be
        rated or retried that quote any of it. Returns how many turns of the window were cleared."""
        keys = [
            turns_key(user, chat_id), summary_key(user, chat_id), chats_key(user), earlier_key(user),
            turn_records_key(user), turn_order_key(user),
        ]  # fmt: skip
        cleared, *dropped = await self._reset_chat(keys=keys, args=[chat_id])
        await self._forget_turns([line.split("\t") for line in dropped])
        return int(cleared)

    async def earlier_turns(self, user: str) -> list[dict[str, Any]]:
        """The turns kept for recall, oldest first, each with its chat_id and chat_kind."""
        return _readable(await self.r.lrange(earlier_key(user), 0, -1), EarlierTurn, "earlier turn")

    # facts about the user

    async def facts(self, user: str) -> list[dict[str, Any]]:
        """Every fact about the user, oldest first."""
        return _readable(await self.r.lrange(facts_key(user), 0, -1), Fact, "fact")

    async def add_fact(
        self, user: str, fact: dict[str, Any], *, max_facts: int, ttl_s: int, since: str | None = None
    ) -> FactAdded:
        """Add a fact unless one with the same text is known. A pinned fact (``since`` None) creates the
        profile where there is none and is refused when the list is full; an extracted one is added only while
        the profile created at ``since`` stands (no forget meanwhile) and replaces the oldest extracted fact."""
        keys = [facts_key(user), profile_key(user)]
        args = [json.dumps(fact), max_facts, ttl_s, now_ms(), since or "", "0" if since is None else "1"]
        status = FactAdded(int(await self._add_fact(keys=keys, args=args)))
        if status is FactAdded.added and since is None:
            await self.r.sadd(USERS, user)
        return status

    async def delete_facts(self, user: str, ids: list[str]) -> int:
        """Delete the facts with these ids; returns how many there were."""
        if not ids:
            return 0
        keys = [facts_key(user), turn_records_key(user), turn_order_key(user)]
        deleted, *dropped = await self._delete_facts(keys=keys, args=ids)
        await self._forget_turns([line.split("\t") for line in dropped])
        return int(deleted)

    async def chat_memory(self, user: str, chat_id: str) -> tuple[str, list[dict[str, Any]]]:
        pipe = self.r.pipeline(transaction=False)
        pipe.get(summary_key(user, chat_id))
        pipe.lrange(turns_key(user, chat_id), 0, -1)
        summary, turns = await pipe.execute()
        return summary or "", _readable(turns, Turn, "memory turn")

    async def chat_ids(self, user: str) -> set[str]:
        return set(await self.r.smembers(chats_key(user)))

    async def log_entries(self, user: str, *, since_id: str = "-", count: int = 1000) -> AsyncIterator[dict[str, Any]]:
        """The user's training log, oldest first; nothing for a forgotten user or from before the forget."""
        forgotten = await self.forgotten_at(user)
        start = since_id
        while True:
            batch = await self.r.xrange(log_key(user), min=start, max="+", count=count)
            if not batch:
                return
            for entry_id, fields in batch:
                if forgotten is None or int(entry_id.split("-")[0]) > forgotten:
                    yield {"id": entry_id, **fields}
            start = "(" + batch[-1][0]

    async def logged_users(self) -> set[str]:
        return set(await self.r.smembers(LOGGED_USERS))

    async def stats(self) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        pipe.scard(USERS)
        pipe.scard(OPTED_IN)
        pipe.smembers(LOGGED_USERS)
        pipe.get(REQUESTS_SERVED)
        users, opted, logged, served = await pipe.execute()
        pipe = self.r.pipeline(transaction=False)
        for user in logged:
            pipe.xlen(log_key(user))
        lengths = await pipe.execute() if logged else []
        return {
            "users": int(users),
            "opted_in": int(opted),
            "log_entries": sum(int(n) for n in lengths),
            "requests_served": int(served or 0),
        }

    # turns: the bot's replies, kept so that members can rate them and /retry them

    def _queue_save_turn(self, pipe: Any, turn: TurnRecord, *, since: str, ttl_s: int, turns_kept: int) -> None:
        """Queue what keeps a turn: its author key (global, so first: a forget that follows finds it through the
        record), then the record, in one script that checks the author was not forgotten meanwhile."""
        pipe.set(turn_author_key(turn.turn_id), turn.author, ex=ttl_s)
        keys = [
            profile_key(turn.author), turn_records_key(turn.author), turn_order_key(turn.author), facts_key(turn.author)
        ]  # fmt: skip
        args = [since, turn.turn_id, _stored_turn(turn), now_ms(), ttl_s, turns_kept, *turn.facts]
        _eval(pipe, _SAVE_TURN, keys, args)

    async def _saved_turn(self, turn: TurnRecord, status: int) -> str | None:
        if status < 0:  # the author was forgotten, or a fact it quotes deleted, meanwhile: it may not stay
            await self.r.delete(turn_author_key(turn.turn_id))
            return None
        return turn.turn_id

    async def save_turn(self, turn: TurnRecord, *, since: str, ttl_s: int, turns_kept: int) -> str | None:
        """Keep a reply that changed no memory (a /retry's) so that it can be rated: its id, or None when the
        profile created at ``since`` is gone (a /forget meanwhile)."""
        await self._member(turn.author)  # loads the id key that a kept turn's persona reference is keyed with
        pipe = self.r.pipeline(transaction=False)
        self._queue_save_turn(pipe, turn, since=since, ttl_s=ttl_s, turns_kept=turns_kept)
        pipe.incr(REQUESTS_SERVED)
        _, status, _ = await pipe.execute()
        return await self._saved_turn(turn, int(status))

    async def turn(self, turn_id: str) -> TurnRecord | None:
        """A kept turn (None: unknown, expired, dropped for newer ones, or its author was forgotten)."""
        author = await self.r.get(turn_author_key(turn_id))
        if not author:
            return None
        return await self._resolve(_turn_record(await self.r.hget(turn_records_key(author), turn_id)))

    async def last_turn(self, user: str, platform: str, chat_id: str) -> TurnRecord | None:
        """The user's newest kept turn in that chat."""
        keys = [turn_records_key(user), turn_order_key(user)]
        return await self._resolve(_turn_record(await self._last_turn(keys=keys, args=[platform, chat_id])))

    async def user_turns(self, user: str) -> list[TurnRecord]:
        """The user's kept turns, oldest first."""
        records = [_turn_record(raw) for raw in await self.r.hvals(turn_records_key(user))]
        # a turn whose persona is gone is shown as kept: without that persona's text
        turns = [(await self._resolve(t)) or t for t in records if t is not None]
        return sorted(turns, key=lambda t: t.at)

    async def authored_personas(self, user: str) -> list[AuthoredPersona]:
        """The group personas the user wrote: those groups use now, and earlier versions kept turns still name."""
        found: list[AuthoredPersona] = []
        for key in sorted(await self.r.smembers(authored_key(user))):
            platform, chat_id = _chat_of_key(key)
            if key.startswith(PERSONA_TEXTS_PREFIX):
                current = _chat_persona(await self.r.get(chat_persona_key(platform, chat_id))) or {}
                for raw in (await self.r.hgetall(key)).values():
                    version = _json_object(raw, "persona version") or {}
                    text = version.get("text")
                    if version.get("author") == user and isinstance(text, str) and text != current.get("system_prompt"):
                        persona = {"name": "custom", "system_prompt": text}
                        found.append(AuthoredPersona(platform, chat_id, persona, in_use=False))
            else:
                raw = await self.r.get(key)
                if raw and _chat_persona_author(raw) == user:
                    found.append(AuthoredPersona(platform, chat_id, _chat_persona(raw) or {}, in_use=True))
        return found

    async def mapped_messages(self, turns: list[TurnRecord]) -> list[tuple[str, str, str, str]]:
        """The platform messages mapped to these turns: (platform, chat_id, message_id, turn_id)."""
        ids = {t.turn_id for t in turns}
        chats = sorted({(t.platform, t.chat_id) for t in turns})
        pipe = self.r.pipeline(transaction=False)
        for platform, chat_id in chats:
            pipe.hgetall(message_turns_key(platform, chat_id))
        found = []
        for (platform, chat_id), mapping in zip(chats, await pipe.execute() if chats else [], strict=True):
            found += [(platform, chat_id, m, t) for m, t in sorted(mapping.items()) if t in ids]
        return found

    async def _resolve(self, turn: TurnRecord | None) -> TurnRecord | None:
        """The turn with its referenced persona's text put back; None when that persona is gone (its author was
        forgotten, or the version expired): a turn never outlives the words it quotes."""
        if turn is None or turn.persona_ref is None:
            return turn
        ref = turn.persona_ref
        pipe = self.r.pipeline(transaction=False)
        pipe.get(chat_persona_key(turn.platform, turn.chat_id))
        pipe.hget(persona_texts_key(turn.platform, turn.chat_id), ref.digest)
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
            if not isinstance(author, str) or await self._member(author) != ref.author:
                continue
            text = found.get("system_prompt") if raw is current else found.get("text")
            if isinstance(text, str) and persona_digest(text) == ref.digest:
                return turn.resolved(text, author)
        return None

    async def turn_of_message(self, platform: str, chat_id: str, message_id: str) -> str | None:
        """The turn a platform message shows, as a bot mapped it."""
        return await self.r.hget(message_turns_key(platform, chat_id), message_id)

    async def map_messages(
        self,
        turn: TurnRecord,
        message_ids: list[str],
        *,
        ttl_s: int,
        most_kept: int,
        most_per_turn: int = 16,
        first_only: bool = False,
    ) -> int | None:
        """Point these messages of the turn's chat at the turn, each message once (one that shows another turn stays
        so) and at most ``most_per_turn`` for the turn; how many do. With ``first_only``, None (and nothing mapped)
        when the turn has messages already."""
        keys = [message_turns_key(turn.platform, turn.chat_id), message_order_key(turn.platform, turn.chat_id)]
        args = [turn.turn_id, now_ms(), ttl_s, most_kept, most_per_turn, "1" if first_only else "0", *message_ids]
        mapped = int(await self._map_messages(keys=keys, args=args))
        return None if mapped < 0 else mapped

    # ratings

    async def take_rate(self, user: str) -> tuple[int, int]:
        """Count one request against the user's rate window: (requests in this window, seconds it has left)."""
        count, ttl = await self.r.eval(_COUNT_REQUEST, 1, rate_key(user), self.rate_window_s)
        return int(count), max(int(ttl), 1)

    async def rate_turn(
        self, turn: TurnRecord, rater: str, rating: int, *, ttl_s: int, ratings_kept: int
    ) -> RatingOutcome:
        """The rater's rating of the turn (0: withdrawn) replaces their previous one. It is kept for training only
        while rater and author are both opted in; like_counts counts it from there."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(profile_key(turn.author), "consent")
        pipe.hget(profile_key(rater), "consent")
        author_consent, rater_consent = await pipe.execute()
        author_in = author_consent == "in"
        if rating != 0 and author_in and rater_consent == "in":
            # listed before it is kept: a /forget of the rater that follows takes them off the list again
            await self.r.sadd(RATERS, rater)
        record = ""
        if rating != 0:
            at = datetime.now(timezone.utc).isoformat()
            record = RatingRecord(
                turn_id=turn.turn_id, rater=rater, rating=rating, served_by=turn.served_by, at=at
            ).dumps()
        keys = [profile_key(rater), ratings_key(rater), rating_order_key(rater)]
        args = [turn.turn_id, rating, "1" if author_in else "0", record, now_ms(), ttl_s, ratings_kept]
        previous, kept, rater_in = (int(n) for n in await self._rate_turn(keys=keys, args=args))
        return RatingOutcome(
            kept=bool(kept), previous=previous, rater_opted_in=bool(rater_in), author_opted_in=author_in
        )

    async def ratings(self, user: str) -> list[RatingRecord]:
        """The ratings the user gave that are kept, oldest first."""
        records = [_rating_record(raw) for raw in await self.r.hvals(ratings_key(user))]
        return sorted((r for r in records if r is not None), key=lambda r: r.at)

    async def like_counts(self) -> dict[str, tuple[int, int]]:
        """Kept ratings per served version (``base``: the base model): {served_by: (likes, dislikes)}.

        Counted from the kept ratings themselves, so they always equal them, whatever deleted a rating (a withdrawn
        or changed one, /optout delete, /forget, the memory TTL): stored counters drifted from the ratings they
        counted, and one member could inflate a version's like-rate by rating and deleting again and again."""
        counts: dict[str, list[int]] = {}
        for raters in _chunks(sorted(await self.r.smembers(RATERS)), READ_CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for rater in raters:
                pipe.hvals(ratings_key(rater))
            for values in await pipe.execute():
                for record in filter(None, map(_rating_record, values)):
                    pair = counts.setdefault(record.served_by or BASE, [0, 0])
                    pair[0 if record.rating > 0 else 1] += 1
        return {name: (likes, dislikes) for name, (likes, dislikes) in sorted(counts.items())}

    async def rated_turns(self) -> AsyncIterator[RatedTurn]:
        """What the nightly run learns from: every kept turn that was rated, with its kept ratings, and the other
        replies to the same message (a /retry's pair), rated or not. Only turns of authors opted in now and not
        forgotten. By author, oldest turn first."""
        by_turn: dict[str, list[RatingRecord]] = {}
        for raters in _chunks(sorted(await self.r.smembers(RATERS)), READ_CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for rater in raters:
                pipe.hvals(ratings_key(rater))
            for values in await pipe.execute():
                for record in filter(None, map(_rating_record, values)):
                    by_turn.setdefault(record.turn_id, []).append(record)
        by_author: dict[str, set[str]] = {}
        for turn_ids in _chunks(sorted(by_turn), READ_CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for turn_id in turn_ids:
                pipe.get(turn_author_key(turn_id))
            for turn_id, author in zip(turn_ids, await pipe.execute(), strict=True):
                if author:
                    by_author.setdefault(author, set()).add(turn_id)
        for author, rated in sorted(by_author.items()):
            pipe = self.r.pipeline(transaction=False)
            pipe.hget(profile_key(author), "consent")
            pipe.zmscore(TOMBSTONES, [await self._member(author), legacy_tombstone_member(author)])
            pipe.hvals(turn_records_key(author))
            consent, forgotten, raws = await pipe.execute()
            if consent != "in" or any(score is not None for score in forgotten):
                continue
            kept = [await self._resolve(t) for t in filter(None, map(_turn_record, raws))]
            turns = sorted(filter(None, kept), key=lambda t: t.at)
            groups = {t.retry_of or t.turn_id for t in turns if t.turn_id in rated}
            for turn in turns:
                if (turn.retry_of or turn.turn_id) in groups:
                    ratings = sorted(by_turn.get(turn.turn_id, []), key=lambda r: r.at)
                    yield RatedTurn(turn=turn, ratings=ratings)

    # canaries: a candidate that passed the gate, serving a share of opted-in members

    async def canaries(self) -> dict[str, Canary]:
        """The canary of every target that has one (RecordFormatError for a record of another format)."""
        return {target: Canary.loads(raw) for target, raw in (await self.r.hgetall(CANARY)).items()}

    async def get_canary(self, target: str) -> Canary | None:
        raw = await self.r.hget(CANARY, target)
        return Canary.loads(raw) if raw else None

    async def set_canary(self, canary: Canary) -> None:
        """Start (or change) the target's canary, and tell every brain to serve it."""
        await self.r.hset(CANARY, canary.target, canary.dumps())
        await self.publish_reload(ReloadEvent(target=canary.target, version=canary.version, action="canary"))

    async def clear_canary(self, target: str) -> bool:
        """End the target's canary (promoted or rolled back), and tell every brain; False if there was none."""
        removed = bool(await self.r.hdel(CANARY, target))
        await self.publish_reload(ReloadEvent(target=target, version=None, action="canary"))
        return removed

    # the operator's dashboard: what nightly runs left, what operators did, the schedule's pause, member counts

    async def add_run_summary(self, summary: RunSummary) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.lpush(RUN_SUMMARIES, summary.dumps())
        pipe.ltrim(RUN_SUMMARIES, 0, RUN_SUMMARIES_KEPT - 1)
        await pipe.execute()

    async def run_summaries(self, count: int = RUN_SUMMARIES_KEPT) -> list[RunSummary]:
        """The latest runs' summaries, newest first; one of another format is skipped (and said in the log)."""
        summaries = []
        for raw in await self.r.lrange(RUN_SUMMARIES, 0, count - 1):
            try:
                summaries.append(RunSummary.loads(raw))
            except RecordFormatError as error:
                log.error("a run summary was skipped: %s", error)
        return summaries

    async def add_audit(self, record: AuditRecord) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.lpush(AUDIT, record.dumps())
        pipe.ltrim(AUDIT, 0, AUDIT_KEPT - 1)
        await pipe.execute()

    async def audit_log(self, count: int = 50) -> list[AuditRecord]:
        records = []
        for raw in await self.r.lrange(AUDIT, 0, count - 1):
            try:
                records.append(AuditRecord.loads(raw))
            except RecordFormatError as error:
                log.error("an audit record was skipped: %s", error)
        return records

    async def set_schedule_pause(self, pause: SchedulePause | None) -> None:
        """Pause the nightly schedule (``trainer schedule`` skips its runs), or resume it with None."""
        if pause is None:
            await self.r.delete(SCHEDULE_PAUSED)
        else:
            await self.r.set(SCHEDULE_PAUSED, pause.dumps())

    async def schedule_pause(self) -> SchedulePause | None:
        raw = await self.r.get(SCHEDULE_PAUSED)
        return SchedulePause.loads(raw) if raw else None

    async def member_counts(self, since_ms: int) -> MemberCounts:
        """How many members there are, opted in and out, forgotten and ratings kept since ``since_ms``: counts,
        never who."""
        pipe = self.r.pipeline(transaction=False)
        pipe.scard(USERS)
        pipe.scard(OPTED_IN)
        pipe.zcount(TOMBSTONES, since_ms, "+inf")
        pipe.smembers(RATERS)
        members, opted_in, forgotten, raters = await pipe.execute()
        ratings = 0
        for chunk in _chunks(sorted(raters), READ_CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for rater in chunk:
                pipe.zcount(rating_order_key(rater), since_ms, "+inf")
            ratings += sum(int(n) for n in await pipe.execute())
        return MemberCounts(
            members=int(members), opted_in=int(opted_in), opted_out=max(0, int(members) - int(opted_in)),
            forgotten=int(forgotten), ratings=ratings,
        )  # fmt: skip

    # trainer: its lock, the registry record of live adapters and the reload channel

    async def acquire_trainer_lock(self, token: str, ttl_ms: int) -> bool:
        return bool(await self.r.set(TRAINER_LOCK, token, nx=True, px=ttl_ms))

    async def take_over_trainer_lock(self, holder: str, token: str, ttl_ms: int) -> bool:
        """Replace ``holder``'s token by ours, only while ``holder`` still holds the lock."""
        return bool(int(await self._take_over_lock(keys=[TRAINER_LOCK], args=[holder, token, ttl_ms])))

    async def renew_trainer_lock(self, token: str, ttl_ms: int) -> bool:
        return bool(int(await self._renew_lock(keys=[TRAINER_LOCK], args=[token, ttl_ms])))

    async def release_trainer_lock(self, token: str) -> bool:
        return bool(int(await self._release_lock(keys=[TRAINER_LOCK], args=[token])))

    async def trainer_lock_holder(self) -> str | None:
        return await self.r.get(TRAINER_LOCK)

    async def registry_records(self) -> dict[str, LiveAdapter]:
        """The live adapter of every target (RecordFormatError for a record of another format)."""
        return {target: LiveAdapter.loads(raw) for target, raw in (await self.r.hgetall(REGISTRY)).items()}

    async def registry_record(self, target: str) -> LiveAdapter | None:
        raw = await self.r.hget(REGISTRY, target)
        return LiveAdapter.loads(raw) if raw else None

    async def set_registry_record(self, target: str, record: LiveAdapter, event: RegistryEvent) -> None:
        """Make ``record`` the target's live adapter (one atomic HSET) and append ``event`` to its history."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(REGISTRY, target, record.dumps())
        pipe.lpush(registry_history_key(target), event.dumps())
        pipe.ltrim(registry_history_key(target), 0, REGISTRY_HISTORY_LENGTH - 1)
        await pipe.execute()

    async def delete_registry_record(
        self, target: str, *, event: RegistryEvent | None = None, history: bool = False
    ) -> None:
        """Take the target out of service, noting ``event`` in its history, or deleting the history too: then the
        target is gone for good (a forgotten user's), and so are its versions' fields in the like counters an older
        version kept (nothing counts them now, but they would still name it) and what run summaries say of it."""
        counters: list[list[str]] = []
        if history:
            pipe = self.r.pipeline(transaction=False)
            pipe.hkeys(LIKES)
            pipe.hkeys(DISLIKES)
            counters = [[f for f in fields if f.startswith(f"{target}@")] for fields in await pipe.execute()]
        pipe = self.r.pipeline(transaction=False)
        pipe.hdel(REGISTRY, target)
        for name, fields in zip((LIKES, DISLIKES), counters, strict=False):
            if fields:
                pipe.hdel(name, *fields)
        if history:
            pipe.delete(registry_history_key(target))
        elif event is not None:
            pipe.lpush(registry_history_key(target), event.dumps())
            pipe.ltrim(registry_history_key(target), 0, REGISTRY_HISTORY_LENGTH - 1)
        await pipe.execute()
        if history:
            await self._unname_in_run_summaries(target)

    async def _unname_in_run_summaries(self, target: str) -> None:
        """Take a target gone for good out of the run summaries the dashboard reads, as the nightly run takes it
        out of its reports on disk (trainer/nightly/runs.py redact_reports)."""
        pairs: list[str] = []
        for raw in await self.r.lrange(RUN_SUMMARIES, 0, -1):
            if target not in raw:
                continue
            try:
                summary = RunSummary.loads(raw)
            except RecordFormatError:
                pairs += [raw, raw.replace(target, FORGOTTEN_TARGET)]
                continue
            kept = summary.model_copy(
                update={
                    "targets": [t for t in summary.targets if t.target != target],
                    "like_counts": {k: v for k, v in summary.like_counts.items() if not k.startswith(f"{target}@")},
                }
            )
            # anything else that names it, such as another target's reason
            pairs += [raw, kept.dumps().replace(target, FORGOTTEN_TARGET)]
        if pairs:
            await self._replace_items(keys=[RUN_SUMMARIES], args=pairs)

    async def registry_history(self, target: str, count: int = REGISTRY_HISTORY_LENGTH) -> list[RegistryEvent]:
        """The target's promotions, rollbacks and removals, newest first."""
        raws = await self.r.lrange(registry_history_key(target), 0, count - 1)
        return [RegistryEvent.loads(raw) for raw in raws]

    async def set_adapter_version(self, user: str, version: int | None) -> bool:
        """Point the user's profile at their adapter (None removes it); False when the user has no profile."""
        value = "" if version is None else str(version)
        return bool(int(await self._set_adapter_version(keys=[profile_key(user)], args=[value])))

    async def publish_reload(self, event: ReloadEvent) -> int:
        return int(await self.r.publish(RELOAD_CHANNEL, event.dumps()))

    async def reload_events(
        self, on_subscribed: Callable[[], Awaitable[Any]] | None = None
    ) -> AsyncIterator[ReloadEvent]:
        """Reload events as they are published; ends (by raising) when the connection to Redis is lost.
        ``on_subscribed`` runs once the subscription stands, before the first event is read."""
        if isinstance(self.r, RedisCluster):
            # a cluster client learns its slot map on first use; a subscription may be that first use
            await self.r.initialize()
        pubsub = self.r.pubsub()
        await pubsub.subscribe(RELOAD_CHANNEL)
        try:
            # the server's confirmation: from here on no event is missed
            while ((await pubsub.get_message(timeout=None)) or {}).get("type") != "subscribe":
                pass
            if on_subscribed is not None:
                await on_subscribed()
            while True:
                message = await pubsub.get_message(timeout=None)
                if message and message.get("type") == "message":
                    try:
                        event = ReloadEvent.loads(message["data"])
                    except RecordFormatError as error:  # refused, and said why; the reconcile timer still reads
                        log.error("a reload event was refused: %s", error)
                        continue
                    yield event
        finally:
            await pubsub.aclose()

    # persistence: after a /forget, Redis's own files must lose the forgotten data too

    async def forgotten_since_rewrite(self) -> bool:
        """Whether a user was forgotten after the last rewrite of the append-only file."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zrange(TOMBSTONES, -1, -1, withscores=True)
        pipe.get(PERSISTENCE_REWRITTEN)
        latest, rewritten = await pipe.execute()
        return bool(latest) and latest[0][1] > int(rewritten or 0)

    async def rewrite_persistence(self, *, timeout_s: float = 600.0, poll_s: float = 0.2) -> bool:
        """Have every Redis node with an append-only file rewrite it from memory (BGREWRITEAOF), so that
        deleted data leaves the disk, and wait until they are done. False where no node keeps one."""
        if not any(int(info.get("aof_enabled", 0)) for info in await self._on_each_node("INFO", "persistence")):
            return False
        deadline = time.monotonic() + timeout_s
        await self._rewrites_done(deadline, poll_s)  # one already running may have copied the data before
        started = now_ms()
        await self._on_each_node("BGREWRITEAOF")
        nodes = await self._rewrites_done(deadline, poll_s)
        if any(node.get("aof_last_bgrewrite_status", "ok") != "ok" for node in nodes):
            raise RuntimeError("Redis could not rewrite its append-only file (aof_last_bgrewrite_status: err)")
        await self.r.set(PERSISTENCE_REWRITTEN, started)
        return True

    async def _rewrites_done(self, deadline: float, poll_s: float) -> list[dict[str, Any]]:
        """Wait until no node rewrites its append-only file or has a rewrite scheduled; their INFO then."""
        busy = ("aof_rewrite_in_progress", "aof_rewrite_scheduled")
        while True:
            nodes = await self._on_each_node("INFO", "persistence")
            if not any(int(node.get(name, 0)) for node in nodes for name in busy):
                return nodes
            if time.monotonic() > deadline:
                raise TimeoutError("Redis did not finish rewriting its append-only file in time")
            await asyncio.sleep(poll_s)

    async def _on_each_node(self, *command: str) -> list[Any]:
        """A server command on every node (each master and replica of a cluster keeps files of its own)."""
        if isinstance(self.r, RedisCluster):
            await self.r.initialize()
            # the nodes themselves: a node flag such as ALL_NODES fails for commands the client has no policy for
            replies = await self.r.execute_command(*command, target_nodes=self.r.get_nodes())
            return list(replies.values()) if isinstance(replies, dict) else [replies]
        return [await self.r.execute_command(*command)]


def _stored_turn(turn: TurnRecord) -> str:
    """A turn as it is kept: a referenced persona's text left out, and its author named by their keyed hash (the
    id key is loaded by then: record_turn and save_turn see to it)."""
    record = turn.stored()
    ref = record.persona_ref
    if ref is not None:
        record = record.model_copy(
            update={"persona_ref": ref.model_copy(update={"author": tombstone_member(ref.author)})}
        )
    return record.dumps()


def _own_keys(user: str) -> list[str]:
    """The user's keys that are not per chat, in the order the forget script takes them."""
    return [
        profile_key(user), chats_key(user), log_key(user), rate_key(user), authored_key(user),
        earlier_key(user), facts_key(user), requests_key(user), turn_records_key(user), turn_order_key(user),
        ratings_key(user), rating_order_key(user), replied_key(user),
    ]  # fmt: skip


def _eval(pipe: Any, script: str, keys: list[str], args: list[Any]) -> None:
    """Queue a script on a pipeline. The source travels with it, because a cluster pipeline cannot load
    scripts on the nodes the way a plain pipeline does before EVALSHA."""
    pipe.eval(script, len(keys), *keys, *args)


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _turn_record(raw: str | None) -> TurnRecord | None:
    """A stored turn; None for one of another format (said in the log), which is then as good as expired."""
    if not raw:
        return None
    try:
        return TurnRecord.loads(raw)
    except RecordFormatError as error:
        log.error("a turn record was skipped: %s", error)
        return None


def _rating_record(raw: str | None) -> RatingRecord | None:
    if not raw:
        return None
    try:
        return RatingRecord.loads(raw)
    except RecordFormatError as error:
        log.error("a rating was skipped: %s", error)
        return None


def _chat_of_key(key: str) -> tuple[str, str]:
    """The platform and chat id of a per-chat key (its hash tag is ``{platform:chat:CHAT}``)."""
    tag = key.split("{", 1)[1].rsplit("}", 1)[0]
    platform, _, chat_id = tag.split(":", 2)
    return platform, chat_id


def _chat_persona_author(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        author = json.loads(raw).get("author")
    except (ValueError, AttributeError):
        return None
    return author if isinstance(author, str) else None


def _chat_persona(raw: str | None) -> dict[str, Any] | None:
    """A stored chat persona as its choice, without the author it is stored with."""
    persona = _json_object(raw, "chat persona")
    if persona is not None:
        persona.pop("author", None)
    return persona


def _json_object(raw: str | None, what: str) -> dict[str, Any] | None:
    """A stored JSON object; None for none, and for one that is not (said in the log): a value an older version
    wrote, or a damaged one, is skipped rather than failing every request that reads it."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError as error:
        log.error("a stored %s was skipped: not JSON (%s)", what, error)
        return None
    if not isinstance(value, dict):
        log.error("a stored %s was skipped: not a JSON object", what)
        return None
    return value


def _readable(raws: list[str], model: type[BaseModel], what: str) -> list[dict[str, Any]]:
    """The stored items that the API's model of them accepts, as stored; each other one is said in the log and
    skipped, so that what is read back is always what the routes can answer with."""
    items = []
    for raw in raws:
        item = _json_object(raw, what)
        if item is None:
            continue
        try:
            model.model_validate(item)
        except ValidationError as error:
            log.error("a stored %s was skipped: %s", what, error)
            continue
        items.append(item)
    return items
