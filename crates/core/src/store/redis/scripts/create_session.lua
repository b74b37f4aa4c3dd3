-- KEYS: client, session, index, then the session key of each index member
-- the caller read to prune (KEYS[3 + j] is the key of member ARGV[7 + j]).
-- ARGV: sid, now, value, expiry (0 = none), max live, index score, prune
-- ('1' when the members follow, else '0'), members.
-- Returns 1 created, -1 no such client, -2 full, -3 full unless pruned: call
-- again with the live-scored members. Every key it touches is declared, so it
-- is cluster-safe while the slot migrates.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local now = tonumber(ARGV[2])
local max = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%d', now - __REMEMBER_MS__))
-- Members past their cap (kept a day to explain expiry) do not count; members
-- that idled out are dropped when the index is full or twice the limit.
local live = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[2], '+inf')
if live >= max or redis.call('ZCARD', KEYS[3]) >= 2 * max then
  if ARGV[7] ~= '1' then return -3 end
  for j = 1, #ARGV - 7 do
    if redis.call('EXISTS', KEYS[3 + j]) == 0 then redis.call('ZREM', KEYS[3], ARGV[7 + j]) end
  end
  live = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[2], '+inf')
  if live >= max then return -2 end
end
if ARGV[4] ~= '0' then
  redis.call('SET', KEYS[2], ARGV[3], 'PXAT', ARGV[4])
else
  redis.call('SET', KEYS[2], ARGV[3])
end
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
-- The index outlives its longest-lived member by a day.
local top = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
if top[2] == 'inf' then
  redis.call('PERSIST', KEYS[3])
else
  redis.call('PEXPIREAT', KEYS[3], string.format('%d', tonumber(top[2]) + __REMEMBER_MS__))
end
return 1
