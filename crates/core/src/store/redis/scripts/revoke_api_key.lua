-- KEYS: key, index, revoked. ARGV: key id, now, invalidation.
local f = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
if #f > 0 then
  remember(KEYS[3], ARGV[1], nil, tonumber(ARGV[2]))
  redis.call('PUBLISH', '__INVALIDATION_CHANNEL__', ARGV[3])
end
return f
