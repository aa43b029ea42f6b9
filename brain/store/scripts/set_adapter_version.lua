-- KEYS: profile; ARGV: adapter version ('' removes it). Never recreates the profile of a forgotten user.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'adapter_version') return 1 end
redis.call('HSET', KEYS[1], 'adapter_version', ARGV[1])
return 1
