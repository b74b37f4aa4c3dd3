-- KEYS: session, index, revoked. ARGV: sid, now, invalidation.
local n = redis.call('DEL', KEYS[1])
local cap = redis.call('ZSCORE', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if n == 1 then
  remember(KEYS[3], ARGV[1], cap, tonumber(ARGV[2]))
end
announce(n == 1, ARGV[3])
return n
