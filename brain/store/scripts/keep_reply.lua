-- KEYS: replied; ARGV: request id, reply JSON, ttl_ms. Keeps the reply of a claimed request (bounded by the claims).
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
