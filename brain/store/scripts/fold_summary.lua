-- KEYS: chats, summary; ARGV: chat_id, summary, ttl_s. Writes only while the chat still exists.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
