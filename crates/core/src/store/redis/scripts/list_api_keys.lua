-- KEYS: index. ARGV: API key key prefix.
local out = {}
for _, kid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HGETALL', ARGV[1] .. kid)
  if #f > 0 then table.insert(out, {kid, f}) else redis.call('SREM', KEYS[1], kid) end
end
return out
