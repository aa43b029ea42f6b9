-- KEYS: message turns, message order (one chat); ARGV: turn ids. Deletes the messages that point at those turns.
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
