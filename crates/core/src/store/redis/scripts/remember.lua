-- Shared by the revoking scripts (prepended to them): remember `member` of the
-- revoked set `key` (until a day past its cap, or 30 days for a test key), prune
-- what is past remembering or over the cap, and let the set expire with its
-- last member.
local function remember(key, member, cap, now)
  local keep
  if cap and cap ~= 'inf' then keep = tonumber(cap) + __REMEMBER_MS__ else keep = now + __REMEMBER_REVOKED_MS__ end
  redis.call('ZADD', key, string.format('%d', keep), member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  -- At most __REMEMBER_MAX__ members: past that the soonest forgotten go
  -- first (still refused, as UNKNOWN), so a set's size has a bound.
  local over = redis.call('ZCARD', key) - __REMEMBER_MAX__
  if over > 0 then redis.call('ZREMRANGEBYRANK', key, 0, over - 1) end
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', key, top[2])
end
