-- KEYS: lock; ARGV: the holder's token, our token, ttl_ms. Takes the lock over only from that holder.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
