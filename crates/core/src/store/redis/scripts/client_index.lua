-- Shared by the client index scripts. A client index is a directory (a
-- sorted set over buckets: score = the bucket's low created ms, the first
-- one's -inf; member = the low id (22 characters), then the bucket's name,
-- its key's suffix) over buckets (sorted sets: member = client id, score =
-- created ms), each holding exactly the entries from its low bound
-- (created, id) up to the next bucket's. Low ids order buckets of equal
-- scores, so a run of clients created in the same millisecond can be split.

-- Whether entry (t, id) is below the low bound of bucket `member` scored `s`.
local function below(t, id, s, member)
  return t < s or (t == s and id < string.sub(member, 1, 22))
end

-- The member of the bucket of `dir` whose range holds (t, id) (nil: none).
local function bucket_of(dir, t, id)
  local same = redis.call('ZRANGE', dir, t, t, 'BYSCORE')
  for i = #same, 1, -1 do
    if string.sub(same[i], 1, 22) <= id then return same[i] end
  end
  return redis.call('ZREVRANGEBYSCORE', dir, '(' .. t, '-inf', 'LIMIT', 0, 1)[1]
end

-- Drops the bucket `member` (key `key`) from `dir` once it is empty: its
-- range goes to the bucket before it, or, if it was the first, the next one
-- becomes the first (low bound -inf).
local function drop_if_empty(dir, key, member)
  if redis.call('EXISTS', key) == 1 then return end
  redis.call('ZREM', dir, member)
  local first = redis.call('ZRANGE', dir, 0, 0)[1]
  if first then redis.call('ZADD', dir, '-inf', first) end
end
