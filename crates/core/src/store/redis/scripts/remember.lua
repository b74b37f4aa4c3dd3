-- Shared by the revoking scripts (prepended to them): remember `member` of the
-- revoked set `key` (until a day past its cap, or 30 days for a test key), prune
-- what is past remembering, and let the set expire with its last member.
local function remember(key, member, cap, now)
  local keep
  if cap and cap ~= 'inf' then keep = tonumber(cap) + __REMEMBER_MS__ else keep = now + __REMEMBER_REVOKED_MS__ end
  redis.call('ZADD', key, string.format('%d', keep), member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', key, top[2])
end
