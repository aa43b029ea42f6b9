-- KEYS: a chat's persona texts; ARGV: user. Deletes the versions that user wrote.
local deleted = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local ok, version = pcall(cjson.decode, entries[i + 1])
  if not ok or type(version) ~= 'table' or version['author'] == ARGV[1] then
    deleted = deleted + redis.call('HDEL', KEYS[1], entries[i])
  end
end
return deleted
