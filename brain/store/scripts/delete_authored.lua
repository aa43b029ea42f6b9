-- KEYS: a chat persona; ARGV: user. Deletes it only while that user is its author (another may have replaced it).
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, persona = pcall(cjson.decode, raw)
if ok and type(persona) == 'table' and persona['author'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
