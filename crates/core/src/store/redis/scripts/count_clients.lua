-- KEYS: tenant, the client index directory of the client's environment, the
-- bucket the caller found for the client there, the index as one sorted set
-- (before buckets). ARGV: the bucket's directory member, the client id, its
-- creation time. Counts a tenant's clients down (never below 0) and drops
-- the client from the listing: count and listing go down together. Answers
-- {1, member} when done; {0, member} when the client's entry belongs to
-- that bucket (nothing done: call again with it).
local at = bucket_of(KEYS[2], ARGV[3], ARGV[2])
if at and at ~= ARGV[1] then return {0, at} end
if at then
  redis.call('ZREM', KEYS[3], ARGV[2])
  drop_if_empty(KEYS[2], KEYS[3], ARGV[1])
end
redis.call('ZREM', KEYS[4], ARGV[2])
local n = tonumber(redis.call('HGET', KEYS[1], 'nc') or '0')
if n > 0 then redis.call('HINCRBY', KEYS[1], 'nc', -1) end
return {1, ARGV[1]}
