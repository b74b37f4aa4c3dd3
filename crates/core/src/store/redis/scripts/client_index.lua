-- Shared by the client index scripts. A client index is a directory (a
-- sorted set: member = bucket name, score = the bucket's low bound, the
-- first one's -inf) over buckets (sorted sets: member = client id, score =
-- created ms), each holding exactly the entries from its low bound up to
-- the next bucket's.

-- The name of the bucket of `dir` whose range holds `t` (nil: no bucket).
local function bucket_of(dir, t)
  return redis.call('ZREVRANGEBYSCORE', dir, t, '-inf', 'LIMIT', 0, 1)[1]
end

-- Drops the bucket `name` (key `key`) from `dir` once it is empty: its range
-- goes to the bucket before it, or, if it was the first, the next one
-- becomes the first (low bound -inf).
local function drop_if_empty(dir, key, name)
  if redis.call('EXISTS', key) == 1 then return end
  redis.call('ZREM', dir, name)
  local first = redis.call('ZRANGE', dir, 0, 0)[1]
  if first then redis.call('ZADD', dir, '-inf', first) end
end
