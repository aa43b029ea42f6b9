-- KEYS: turns, summary, chats, earlier, turn records, turn order; ARGV: chat_id. Returns {how many turns were
-- cleared (those in the window), then the kept turns dropped (see drop_turns.lua): those of the chat, which quote its
-- memory, and those of other chats that recalled its messages}.
-- include: drop_turns.lua
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
