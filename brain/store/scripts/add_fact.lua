-- KEYS: facts, profile; ARGV: fact JSON, max facts, ttl_s, now_ms, expected since ('' = none expected: a fact the
-- user pins, which creates the profile where there is none), make room ('1': an extracted fact, which replaces the
-- oldest extracted fact when the list is full). Facts are compared by their text, lower-cased, without punctuation.
-- Returns 1 added, 0 already known, -1 the user was forgotten meanwhile, -2 full.
local function norm(text)
  return (string.gsub(string.lower(text), '[%s%p]+', ' ')):match('^%s*(.-)%s*$')
end
local since = redis.call('HGET', KEYS[2], 'since')
if ARGV[5] ~= '' and since ~= ARGV[5] then return -1 end
local function text_of(raw)
  -- a fact that is not a JSON object with a text (an older version's, a damaged one) matches nothing
  local ok, item = pcall(cjson.decode, raw)
  if ok and type(item) == 'table' and type(item['text']) == 'string' then return item end
  return nil
end
local fact = cjson.decode(ARGV[1])
local wanted = norm(fact['text'])
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for _, raw in ipairs(items) do
  local item = text_of(raw)
  if item and norm(item['text']) == wanted then return 0 end
end
if #items >= tonumber(ARGV[2]) then
  if ARGV[6] ~= '1' then return -2 end
  local oldest = nil
  for _, raw in ipairs(items) do
    local item = text_of(raw)
    if not item or item['source'] == 'extracted' then oldest = raw break end
  end
  if not oldest then return -2 end
  redis.call('LREM', KEYS[1], 1, oldest)
end
if not since then redis.call('HSET', KEYS[2], 'since', ARGV[4], 'consent', 'out') end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
