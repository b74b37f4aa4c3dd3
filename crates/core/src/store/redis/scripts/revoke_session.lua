-- KEYS: client, revoked, the legacy session string, the legacy index (si).
-- ARGV: session field (16 bytes), now, invalidation, session id (base62: the
-- legacy index member). Deletes the session and, if it was live, remembers
-- it as revoked (by its 16 bytes). Returns 1 if it was live.
local now = tonumber(ARGV[2])
local n, cap = 0, nil
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if session_state(v, now) == 0 then
    n = 1
    local c = field_time(v, 23)
    if c ~= 0 then cap = string.format('%d', c) end
  end
end
if redis.call('DEL', KEYS[3]) == 1 then
  n = 1
  cap = redis.call('ZSCORE', KEYS[4], ARGV[4])
end
redis.call('ZREM', KEYS[4], ARGV[4])
if n == 1 then remember(KEYS[2], ARGV[1], cap, now) end
announce(n == 1, ARGV[3])
return n
