-- KEYS: the user's own keys (forgetting.py member_keys: profile, chats, log, rate, authored, earlier, facts, requests,
-- turn records, turn order, ratings, rating order, replied); ARGV: turns key prefix, summary key prefix.
-- Deletes every key of the user, the memory of each chat in the chats set at this moment included.
-- Returns {keys deleted, how many authored keys follow, the chat-persona keys the user authored..., then
-- "platform TAB chat_id TAB turn id" of each turn record}; those personas, turn authors and message maps live in
-- other slots.
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
