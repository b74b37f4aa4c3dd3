-- KEYS: index, revoked, client (optional: also delete the client).
-- ARGV: session key prefix, now, invalidation.
local n = 0
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  if redis.call('DEL', ARGV[1] .. members[i]) == 1 then
    n = n + 1
    remember(KEYS[2], members[i], members[i + 1], tonumber(ARGV[2]))
  end
end
redis.call('DEL', KEYS[1])
local existed = 0
if KEYS[3] then existed = redis.call('DEL', KEYS[3]) end
announce(n > 0 or existed > 0, ARGV[3])
return {n, existed}
