-- KEYS: old key, new key, index. ARGV: new id, old expiry, new expiry (0 = none),
-- invalidation of the old key, then the new key's fields as name/value pairs.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'r') == 1 then return -1 end
local x = ARGV[2]
local cur = redis.call('HGET', KEYS[1], 'x')
if cur and tonumber(cur) < tonumber(x) then x = cur end
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'x', x)
redis.call('PEXPIREAT', KEYS[1], x)
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
if ARGV[3] ~= '0' then redis.call('PEXPIREAT', KEYS[2], ARGV[3]) end
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PUBLISH', '__INVALIDATION_CHANNEL__', ARGV[4])
return 1
