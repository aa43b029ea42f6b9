-- KEYS: profile, turn records, turn order, facts; ARGV: expected since, turn id, TurnRecord JSON, now_ms, ttl_s,
-- most kept, then the ids of the facts the turn quotes. Keeps the turn only while the profile created at ``since``
-- stands (no forget meanwhile) and every fact it quotes is still kept (none deleted while it was generated).
-- 1 kept, -1 forgotten, -2 a fact it quotes was deleted meanwhile.
-- include: keep_bounded.lua
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
keep_for(KEYS[2], KEYS[3], now, tonumber(ARGV[5]), tonumber(ARGV[6]))
return 1
