-- KEYS: profile, turns, log, chats, summary, earlier, facts
-- ARGV: expected since ('' = new user), chat_id, user turn JSON, assistant turn JSON, max_turns,
--       max_tokens, ttl_s, now_ms, display_name, persona name, chat_kind, earlier turns to keep (0: none)
-- Returns {status, logged, since, evicted turn JSON...}; status -1 = the user was forgotten meanwhile.
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
