-- A hash of records with a sorted set (id -> ms) that orders them: drops those older than the age, then the oldest
-- beyond the count, from both. Included by claim_request, save_turn, rate_turn and map_messages; returns the ids
-- dropped.
local function keep_bounded(hash, order, now, max_age_ms, max_count)
  local dropped = redis.call('ZRANGEBYSCORE', order, '-inf', '(' .. (now - max_age_ms))
  local over = redis.call('ZCARD', order) - #dropped - max_count
  if over > 0 then
    for _, id in ipairs(redis.call('ZRANGE', order, #dropped, #dropped + over - 1)) do table.insert(dropped, id) end
  end
  for i = 1, #dropped, 500 do
    local part = {unpack(dropped, i, math.min(i + 499, #dropped))}
    redis.call('ZREM', order, unpack(part))
    redis.call('HDEL', hash, unpack(part))
  end
  return dropped
end

-- The same bound given as a lifetime in seconds, which both keys then live for (refreshed with each new record).
local function keep_for(hash, order, now, ttl_s, max_count)
  local dropped = keep_bounded(hash, order, now, ttl_s * 1000, max_count)
  redis.call('EXPIRE', hash, ttl_s)
  redis.call('EXPIRE', order, ttl_s)
  return dropped
end
