-- KEYS: the session key of each member in ARGV (index members the caller
-- read). Those still live, with their values and expiries, read at one
-- instant; every key is declared, so it is cluster-safe while a slot migrates.
local out = {}
for i = 1, #ARGV do
  local v = redis.call('GET', KEYS[i])
  if v then table.insert(out, {ARGV[i], v, redis.call('PEXPIRETIME', KEYS[i])}) end
end
return out
