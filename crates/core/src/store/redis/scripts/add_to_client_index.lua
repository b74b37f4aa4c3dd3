-- KEYS: the directory, the bucket the caller found (or guessed) for the
-- first entry, a fresh bucket (named by the caller), the index as one sorted
-- set (before buckets). ARGV: the bucket's directory member, the fresh
-- one's name, the split size, '1' to move the entries from the old index
-- ('0' to add), then (id, created) pairs in ascending order.
-- Adds the entries in the bucket's range to it (the first must be; those
-- past it are left to a next call); a bucket reaching the split size is
-- split, its upper part moved to the fresh bucket: most of it stays when it
-- is the last bucket or the last entry added is of its latest millisecond
-- (appends go on above), else half.
-- Answers {1, the member of the bucket now holding the last entry added,
-- how many added}; {0, member} when the first entry belongs to that bucket
-- (nothing done: call again with it); {-1} when adding while the old index
-- still holds entries (nothing done: move them first).
local dir, key, fresh, old = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local member, fname, split, move = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
if not move and redis.call('EXISTS', old) == 1 then return {-1} end
local upper
if redis.call('ZCARD', dir) == 0 then
  -- The first bucket.
  redis.call('ZADD', dir, '-inf', member)
else
  local at = bucket_of(dir, ARGV[6], ARGV[5])
  if at ~= member then return {0, at} end
  -- The next bucket's low bound (none after the last).
  local r = redis.call('ZRANK', dir, member) + 1
  upper = redis.call('ZRANGE', dir, r, r, 'WITHSCORES')
end
local added, last_t, last_id = 0, nil, nil
for i = 5, #ARGV, 2 do
  local t, id = tonumber(ARGV[i + 1]), ARGV[i]
  if upper and upper[1] and not below(t, id, tonumber(upper[2]), upper[1]) then break end
  redis.call('ZADD', key, ARGV[i + 1], id)
  if move then redis.call('ZREM', old, id) end
  added, last_t, last_id = added + 1, t, id
end
local holder = member
local n = redis.call('ZCARD', key)
if added > 0 and n >= split and redis.call('EXISTS', fresh) == 0 then
  local pos = math.floor(n / 2)
  if not (upper and upper[1]) then
    -- The last bucket, where creations go on: most stays below, with room
    -- for creations of the same moment arriving out of order.
    pos = n - 16
  elseif tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2]) == last_t then
    -- Appending inside the index (a move of the old index, in order).
    pos = n - 8
  end
  local b = redis.call('ZRANGE', key, pos, pos, 'WITHSCORES')
  local moved = redis.call('ZRANGE', key, pos, -1, 'WITHSCORES')
  local args = {}
  for i = 1, #moved, 2 do
    args[#args + 1] = moved[i + 1]
    args[#args + 1] = moved[i]
  end
  redis.call('ZADD', fresh, unpack(args))
  redis.call('ZREMRANGEBYRANK', key, pos, -1)
  local fmember = b[1] .. fname
  redis.call('ZADD', dir, b[2], fmember)
  if not below(last_t, last_id, tonumber(b[2]), fmember) then holder = fmember end
end
return {1, holder, added}
