-- KEYS: a client index directory, one of its buckets. ARGV: the bucket's
-- directory member, then client ids. Drops the ids from the bucket (those a split moved
-- since the caller read them stay, for a later listing), and the bucket from
-- the directory once empty. Answers how many were dropped.
local n = redis.call('ZREM', KEYS[2], unpack(ARGV, 2))
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then drop_if_empty(KEYS[1], KEYS[2], ARGV[1]) end
return n
