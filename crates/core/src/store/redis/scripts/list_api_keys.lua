-- KEYS: index (sorted set), then the key of each id in ARGV (index members
-- the caller read; KEYS[i + 1] is the key of ARGV[i]). Those that exist,
-- with their fields; the others leave the index. Every key is declared, so
-- it is cluster-safe while a slot migrates.
local out = {}
for i = 1, #ARGV do
  local f = redis.call('HGETALL', KEYS[i + 1])
  if #f > 0 then table.insert(out, {ARGV[i], f}) else redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return out
