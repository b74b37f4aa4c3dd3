-- KEYS: client, the legacy session string.
-- ARGV: session field (16 bytes), now, idle. Never revives: a gone session
-- stays gone. Returns the new expiry, -1 for a test key (none), -2 gone.
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
-- A session string written before sessions were fields: touched where it
-- is (not moved: an older authd, during a rollout, still revokes it there).
local old = redis.call('GET', KEYS[2])
if not old then return -2 end
redis.call('SETRANGE', KEYS[2], 32, struct.pack('>i8', now))
local cap = struct.unpack('>i8', string.sub(old, 25, 32))
if cap == 0 then return -1 end
local new = now + idle
if new > cap then new = cap end
local cur = redis.call('PEXPIRETIME', KEYS[2])
if new > cur then
  redis.call('PEXPIREAT', KEYS[2], string.format('%d', new))
  return new
end
return cur
