-- KEYS: key, index, revoked, index as a set (before sorted sets). ARGV: key
-- id, now, invalidation. A key past its expiry (kept a day to name the cause)
-- is not found, and stays as it is.
local x = redis.call('HGET', KEYS[1], 'x')
if x and tonumber(x) <= tonumber(ARGV[2]) then
  announce(false, ARGV[3])
  return {}
end
local f = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
if #f > 0 then
  remember(KEYS[3], ARGV[1], nil, tonumber(ARGV[2]))
end
announce(#f > 0, ARGV[3])
return f
