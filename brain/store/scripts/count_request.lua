-- KEYS: rate; ARGV: window_s. Returns {requests in this window, seconds left}. A counter found without a
-- TTL (left by an older, non-atomic version) gets one here too.
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
