-- KEYS: the legacy index (si), revoked, client, then the legacy session key of
-- each index member the caller read (KEYS[i] is the key of member ARGV[i],
-- i >= 4).
-- ARGV: now, invalidation, delete the client too ('1' or '0'), members.
-- Every key it touches is declared, so it is cluster-safe while the slot
-- migrates. Legacy members added since the caller read the index (none are
-- written now) are left, and counted in the reply {revoked, client existed,
-- left}.
local now = tonumber(ARGV[1])
local n, left = 0, 0
-- The client's session fields: each live one remembered as revoked.
local all = redis.call('HGETALL', KEYS[3])
local fields = {}
for i = 1, #all, 2 do
  if #all[i] == 16 then
    table.insert(fields, all[i])
    if session_state(all[i + 1], now) == 0 then
      n = n + 1
      local cap = field_time(all[i + 1], 23)
      if cap == 0 then cap = nil else cap = string.format('%d', cap) end
      remember(KEYS[2], all[i], cap, now)
    end
  end
end
hdel_all(KEYS[3], fields)
-- Sessions written before they were fields.
local declared = {}
for i = 4, #ARGV do declared[ARGV[i]] = KEYS[i] end
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local key = declared[members[i]]
  if key then
    if redis.call('DEL', key) == 1 then
      n = n + 1
      remember(KEYS[2], members[i], members[i + 1], now)
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
