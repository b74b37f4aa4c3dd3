-- KEYS: index, revoked, client, then the session key of each index member
-- the caller read (KEYS[i] is the key of member ARGV[i], i >= 4).
-- ARGV: now, invalidation, delete the client too ('1' or '0'), members.
-- Every key it touches is declared, so it is cluster-safe while the slot
-- migrates; if the index gained a member since the caller read it, nothing
-- changes and it returns {-1, 0}: read again.
local declared = {}
for i = 4, #ARGV do declared[ARGV[i]] = KEYS[i] end
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  if not declared[members[i]] then
    announce(false, ARGV[2])
    return {-1, 0}
  end
end
local n = 0
for i = 1, #members, 2 do
  if redis.call('DEL', declared[members[i]]) == 1 then
    n = n + 1
    remember(KEYS[2], members[i], members[i + 1], tonumber(ARGV[1]))
  end
end
redis.call('DEL', KEYS[1])
local existed = 0
if ARGV[3] == '1' then existed = redis.call('DEL', KEYS[3]) end
announce(n > 0 or existed > 0, ARGV[2])
return {n, existed}
