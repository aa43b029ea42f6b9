-- KEYS: message turns, message order (one chat); ARGV: turn id, now_ms, ttl_s, most kept, most per turn, only a first
-- mapping ('1': do nothing when the turn has messages already), message ids... A message is mapped once: one that
-- points at another turn stays as it is; a turn gets at most ``most per turn`` messages. Returns how many of the
-- message ids point at the turn afterwards, or -1 when only a first mapping was asked for and this is not one.
-- include: keep_bounded.lua
local held = 0
for _, turn in ipairs(redis.call('HVALS', KEYS[1])) do
  if turn == ARGV[1] then held = held + 1 end
end
if ARGV[6] == '1' and held > 0 then return -1 end
local now = tonumber(ARGV[2])
local most = tonumber(ARGV[5])
for i = 7, #ARGV do
  if held < most and redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[1]) == 1 then
    redis.call('ZADD', KEYS[2], now, ARGV[i])
    held = held + 1
  end
end
keep_for(KEYS[1], KEYS[2], now, tonumber(ARGV[3]), tonumber(ARGV[4]))
local mapped = 0
for i = 7, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then mapped = mapped + 1 end
end
return mapped
