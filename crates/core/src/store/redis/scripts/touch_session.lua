-- KEYS: client, the legacy session string, the legacy index (si).
-- ARGV: session field (16 bytes), now, idle, session id (base62: the legacy
-- index member). Never revives: a gone session stays gone. Returns the new
-- expiry, -1 for a test key (none), -2 gone.
local now, idle = tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  if session_state(v, now) ~= 0 then return -2 end
  local cap, exp = field_time(v, 23), field_time(v, 35)
  if cap ~= 0 then
    local new = now + idle
    if new > cap then new = cap end
    if new > exp then exp = new end
  end
  redis.call('HSET', KEYS[1], ARGV[1], session_used(v, now, exp))
  if cap == 0 then return -1 end
  return exp
end
-- A session string written before sessions were fields: touched, and moved
-- into the client hash (if the client is still there), as a field.
local old = redis.call('GET', KEYS[2])
if not old then return -2 end
local cap = struct.unpack('>i8', string.sub(old, 25, 32))
local cur = redis.call('PEXPIRETIME', KEYS[2])
local exp = 0
if cap ~= 0 then
  exp = now + idle
  if exp > cap then exp = cap end
  if cur > exp then exp = cur end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  local created = struct.unpack('>i8', string.sub(old, 17, 24))
  local value = string.sub(old, 1, 16) .. struct.pack('>I6', created) .. struct.pack('>I6', cap)
  redis.call('HSET', KEYS[1], ARGV[1], session_used(value, now, exp))
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[4])
else
  redis.call('SETRANGE', KEYS[2], 32, struct.pack('>i8', now))
  if cap ~= 0 and exp > cur then redis.call('PEXPIREAT', KEYS[2], string.format('%d', exp)) end
end
if cap == 0 then return -1 end
return exp
