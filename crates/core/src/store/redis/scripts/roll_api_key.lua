-- KEYS: old key, new key, index. ARGV: new id, old expiry, new expiry (0 = none),
-- invalidation of the old key, now, the new key's creation time, then its
-- fields as name/value pairs. A key past its expiry (kept a day to name the cause) is not found.
-- Expired keys are kept __REMEMBER_MS__ ms past their expiry.
local cur = redis.call('HGET', KEYS[1], 'x')
if redis.call('EXISTS', KEYS[1]) == 0 or (cur and tonumber(cur) <= tonumber(ARGV[5])) then
  announce(false, ARGV[4])
  return 0
end
if redis.call('HEXISTS', KEYS[1], 'r') == 1 then
  announce(false, ARGV[4])
  return -1
end
local x = ARGV[2]
if cur and tonumber(cur) < tonumber(x) then x = cur end
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'x', x)
redis.call('PEXPIREAT', KEYS[1], tonumber(x) + __REMEMBER_MS__)
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
if ARGV[3] ~= '0' then redis.call('PEXPIREAT', KEYS[2], tonumber(ARGV[3]) + __REMEMBER_MS__) end
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
announce(true, ARGV[4])
return 1
