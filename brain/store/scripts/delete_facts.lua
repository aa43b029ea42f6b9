-- KEYS: facts, turn records, turn order; ARGV: ids. Returns {how many facts were deleted, then the dropped turns
-- that quoted one of them (see drop_turns.lua)}.
-- include: drop_turns.lua
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
