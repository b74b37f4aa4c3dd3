-- KEYS: the directory, the bucket the caller found (or guessed) for the
-- first entry, a fresh bucket (named by the caller), the index as one sorted
-- set (before buckets). ARGV: the bucket's name, the fresh one's, the split
-- size, '1' to move the entries from the old index ('0' to add), then
-- (id, created) pairs in ascending order.
-- Adds the entries in the bucket's range to it (the first must be; those
-- past it are left to a next call); a bucket reaching the split size is
-- split at a score boundary, its upper part moved to the fresh bucket.
-- Answers {1, the bucket now holding the last entry added, how many added};
-- {0, name} when the first entry belongs to bucket `name` (nothing done:
-- call again with it); {-1} when adding while the old index still holds
-- entries (nothing done: move them first).
local dir, key, fresh, old = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local name, fname, split, move = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
if not move and redis.call('EXISTS', old) == 1 then return {-1} end
local upper
if redis.call('ZCARD', dir) == 0 then
  -- The first bucket.
  redis.call('ZADD', dir, '-inf', name)
else
  local at = bucket_of(dir, ARGV[6])
  if at ~= name then return {0, at} end
  -- The next bucket's low bound (none after the last).
  local r = redis.call('ZRANK', dir, name) + 1
  upper = tonumber(redis.call('ZRANGE', dir, r, r, 'WITHSCORES')[2])
end
local added, last = 0, nil
for i = 5, #ARGV, 2 do
  local t = tonumber(ARGV[i + 1])
  if upper and t >= upper then break end
  redis.call('ZADD', key, ARGV[i + 1], ARGV[i])
  if move then redis.call('ZREM', old, ARGV[i]) end
  added, last = added + 1, ARGV[i + 1]
end
local holder = name
local n = redis.call('ZCARD', key)
if added > 0 and n >= split and redis.call('EXISTS', fresh) == 0 then
  -- Appending (the last entry added is the highest): the lower part keeps
  -- most, as appends go on above it; else halves.
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2]
  local pos = math.floor(n / 2)
  if tonumber(top) == tonumber(last) then pos = n - 8 end
  local at = redis.call('ZRANGE', key, pos, pos, 'WITHSCORES')[2]
  local lowest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
  if tonumber(at) == tonumber(lowest) then
    -- The boundary must leave the lower part something: the next score.
    at = redis.call('ZRANGE', key, '(' .. at, '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')[2]
  end
  -- No boundary when every entry has the same score: not split.
  if at then
    local moved = redis.call('ZRANGE', key, at, '+inf', 'BYSCORE', 'WITHSCORES')
    local args = {}
    for i = 1, #moved, 2 do
      args[#args + 1] = moved[i + 1]
      args[#args + 1] = moved[i]
    end
    redis.call('ZADD', fresh, unpack(args))
    redis.call('ZREMRANGEBYSCORE', key, at, '+inf')
    redis.call('ZADD', dir, at, fname)
    if tonumber(last) >= tonumber(at) then holder = fname end
  end
end
return {1, holder, added}
