-- KEYS: a client index directory, then consecutive buckets of it as the
-- caller read them from the directory. ARGV: their names. Answers {0} when
-- the directory no longer has exactly these buckets in a row (read it
-- again), else {1, entries of each bucket (id, created, id, created…), …}:
-- read at once, so a split between reads cannot hide an entry.
local r = redis.call('ZRANK', KEYS[1], ARGV[1])
if not r then return {0} end
local names = redis.call('ZRANGE', KEYS[1], r, r + #ARGV - 1)
if #names ~= #ARGV then return {0} end
for i = 1, #ARGV do
  if names[i] ~= ARGV[i] then return {0} end
end
local out = {1}
for i = 2, #KEYS do
  out[i] = redis.call('ZRANGE', KEYS[i], 0, -1, 'WITHSCORES')
end
return out
