-- A user's kept turns that quote what is being deleted leave with it (a /retry could bring it back, and training
-- would learn it). Included by reset_chat and delete_facts: drops from the turn records and their order every turn
-- for which ``quotes(turn)`` holds, and appends "platform TAB chat_id TAB turn id" of each to ``out`` (their author
-- keys and message maps live in other slots).
local function drop_turns(records, order, quotes, out)
  local fields = redis.call('HGETALL', records)
  for i = 1, #fields, 2 do
    local ok, turn = pcall(cjson.decode, fields[i + 1])
    if ok and type(turn) == 'table' and quotes(turn) then
      redis.call('HDEL', records, fields[i])
      redis.call('ZREM', order, fields[i])
      table.insert(out, tostring(turn['platform']) .. '\t' .. tostring(turn['chat_id']) .. '\t' .. fields[i])
    end
  end
end
local function holds(list, value)
  if type(list) ~= 'table' then return false end
  for _, item in ipairs(list) do if item == value then return true end end
  return false
end
