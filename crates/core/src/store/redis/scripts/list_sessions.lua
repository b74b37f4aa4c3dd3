-- KEYS: index. ARGV: session key prefix, now.
local out = {}
for _, sid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '+inf')) do
  local k = ARGV[1] .. sid
  local v = redis.call('GET', k)
  if v then table.insert(out, {sid, v, redis.call('PEXPIRETIME', k)}) end
end
return out
