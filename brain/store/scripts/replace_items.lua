-- KEYS: a list; ARGV: pairs of an item and what replaces it. Replaces each such item wherever it still is (by value:
-- an item pushed meanwhile shifts the others).
local new = {}
for i = 1, #ARGV, 2 do new[ARGV[i]] = ARGV[i + 1] end
for index, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if new[raw] then redis.call('LSET', KEYS[1], index - 1, new[raw]) end
end
return 1
