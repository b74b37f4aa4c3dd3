-- KEYS: tenant. ARGV: time, latest sane cut-off (now + clock skew), now + 1,
-- invalidation. Only ever moves forward, but for a stored cut-off beyond the
-- sane bound (set before cut-offs were bounded), which first comes down to
-- now + 1: nothing issued before now becomes valid by that.
if redis.call('EXISTS', KEYS[1]) == 0 then
  announce(false, ARGV[4])
  return {}
end
local cur = tonumber(redis.call('HGET', KEYS[1], 'r'))
if cur and cur > tonumber(ARGV[2]) then cur = tonumber(ARGV[3]) end
local new = tonumber(ARGV[1])
if cur and cur > new then new = cur end
redis.call('HSET', KEYS[1], 'r', string.format('%d', new))
announce(true, ARGV[4])
return redis.call('HGETALL', KEYS[1])
