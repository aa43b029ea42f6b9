-- KEYS: turn records, turn order; ARGV: platform, chat_id. The user's newest turn in that chat (JSON), or false.
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[2], 0, -1)) do
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then
    local turn = cjson.decode(raw)
    if turn['platform'] == ARGV[1] and turn['chat_id'] == ARGV[2] then return raw end
  end
end
return false
