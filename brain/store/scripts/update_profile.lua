-- KEYS: profile, log, ratings, rating order; ARGV: now_ms, delete the log and the ratings ('1'/'0'), then field,
-- value pairs. Creates the profile where there is none (since now, consent out), then sets the fields.
redis.call('HSETNX', KEYS[1], 'since', ARGV[1])
redis.call('HSETNX', KEYS[1], 'consent', 'out')
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
if ARGV[2] == '1' then redis.call('DEL', KEYS[2], KEYS[3], KEYS[4]) end
return 1
