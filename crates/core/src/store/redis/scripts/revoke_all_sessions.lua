-- KEYS: index, revoked, client, then the session key of each index member
-- the caller read (KEYS[i] is the key of member ARGV[i], i >= 4).
-- ARGV: now, invalidation, delete the client too ('1' or '0'), members.
-- Every key it touches is declared, so it is cluster-safe while the slot
-- migrates. Members added since the caller read the index were created
-- concurrently with this call: they are left, and counted in the reply
-- {revoked, client existed, left}.
local declared = {}
for i = 4, #ARGV do declared[ARGV[i]] = KEYS[i] end
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local n, left = 0, 0
for i = 1, #members, 2 do
  local key = declared[members[i]]
  if key then
    if redis.call('DEL', key) == 1 then
      n = n + 1
      remember(KEYS[2], members[i], members[i + 1], tonumber(ARGV[1]))
    end
    redis.call('ZREM', KEYS[1], members[i])
  else
    left = left + 1
  end
end
local existed = 0
if ARGV[3] == '1' then existed = redis.call('DEL', KEYS[3]) end
announce(n > 0 or existed > 0, ARGV[2])
return {n, existed, left}
