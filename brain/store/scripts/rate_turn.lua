-- KEYS: rater's profile, ratings, rating order; ARGV: turn id, rating (-1, 0, 1), the author opted in ('1'/'0'),
-- RatingRecord JSON, now_ms, ttl_s, most kept. The rating replaces the rater's previous one of the turn; it is kept
-- only while the rater (read here) and the author (read just before) are both opted in, and a rating that cannot be
-- kept deletes the previous one too. Returns {previous rating (0: none), kept (1/0), rater opted in (1/0)}.
-- include: keep_bounded.lua
local previous = 0
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if raw then previous = tonumber(cjson.decode(raw)['rating']) or 0 end
local rater_in = redis.call('HGET', KEYS[1], 'consent') == 'in'
local rating = tonumber(ARGV[2])
if rating == 0 or not rater_in or ARGV[3] ~= '1' then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {previous, 0, rater_in and 1 or 0}
end
local now = tonumber(ARGV[5])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[3], now, ARGV[1])
keep_for(KEYS[2], KEYS[3], now, tonumber(ARGV[6]), tonumber(ARGV[7]))
return {previous, 1, 1}
