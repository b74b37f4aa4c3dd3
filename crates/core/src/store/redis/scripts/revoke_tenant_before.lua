-- KEYS: tenant. ARGV: time, invalidation. Only ever moves forward.
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local cur = redis.call('HGET', KEYS[1], 'r')
if not cur or tonumber(cur) < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'r', ARGV[1]) end
redis.call('PUBLISH', '__INVALIDATION_CHANNEL__', ARGV[2])
return redis.call('HGETALL', KEYS[1])
