-- KEYS: a client index directory, then consecutive buckets of it as the
-- caller read them from the directory. ARGV: how many directory members to
-- answer after them, then their members. Answers {0} when the directory no
-- longer has exactly these buckets in a row (read it again), else {1, the
-- next members of the directory, entries of each bucket (id, created, id,
-- created…), …}: read at once, so a split between reads cannot hide an
-- entry.
local r = redis.call('ZRANK', KEYS[1], ARGV[2])
if not r then return {0} end
local k = #ARGV - 1
local names = redis.call('ZRANGE', KEYS[1], r, r + k - 1)
if #names ~= k then return {0} end
for i = 1, k do
  if names[i] ~= ARGV[i + 1] then return {0} end
end
local out = {1, redis.call('ZRANGE', KEYS[1], r + k, r + k + tonumber(ARGV[1]) - 1)}
for i = 2, #KEYS do
  out[i + 1] = redis.call('ZRANGE', KEYS[i], 0, -1, 'WITHSCORES')
end
return out
