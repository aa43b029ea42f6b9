-- KEYS: requests, replied; ARGV: request id, now_ms, ttl_ms, most kept. 1 if the id was not claimed within the TTL.
-- The ids the requests set drops (by age, then beyond the most kept) take their kept replies with them.
-- include: keep_bounded.lua
local now, ttl, most = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- an id claimed exactly ttl ms ago has expired: keep_bounded keeps scores equal to its bound
keep_bounded(KEYS[2], KEYS[1], now, ttl - 1, most)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
keep_bounded(KEYS[2], KEYS[1], now, ttl - 1, most)
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
