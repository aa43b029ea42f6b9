-- KEYS: a rater's ratings, rating order; ARGV: turn ids. Deletes the rater's ratings of those turns (their author was
-- forgotten); returns how many there were.
local deleted = 0
for _, id in ipairs(ARGV) do
  deleted = deleted + redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return deleted
