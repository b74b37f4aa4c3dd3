-- KEYS: the index as a set (before sorted sets), the sorted index, then the
-- key of each id in ARGV (members of the set the caller read; KEYS[i + 2] is
-- the key of ARGV[i]). Moves each to the sorted index, scored by its key's
-- creation time (a member whose key is gone is dropped).
for i = 1, #ARGV do
  local c = redis.call('HGET', KEYS[i + 2], 'c')
  if c then redis.call('ZADD', KEYS[2], c, ARGV[i]) end
  redis.call('SREM', KEYS[1], ARGV[i])
end
return #ARGV
