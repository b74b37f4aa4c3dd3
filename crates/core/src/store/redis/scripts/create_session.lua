-- KEYS: client, the legacy session index (si), then the legacy session key of
-- each index member the caller read to prune (KEYS[2 + j] is the key of
-- member ARGV[8 + j]).
-- ARGV: session field (16 bytes), value, now, max live, prune ('1' when the
-- members follow, else '0'), the owner's tenant id as 16 bytes and in base62
-- (as tenants were written before), its environment code ('' for all three:
-- any owner), members.
-- Returns 1 created, -1 no such client (or another owner's), -2 full, -3
-- full unless the legacy index is pruned: call again with its live-scored
-- members. Every key it touches is declared, so it is cluster-safe while the
-- slot migrates.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[6] ~= '' then
  local owner = redis.call('HMGET', KEYS[1], 't', 'e')
  if (owner[1] ~= ARGV[6] and owner[1] ~= ARGV[7]) or owner[2] ~= ARGV[8] then return -1 end
end
local now = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
-- The client's sessions: live ones count; gone ones are kept to explain
-- expiry until past remembering, or until the client has max fields.
local all = redis.call('HGETALL', KEYS[1])
local live, gone, forgotten, fields = 0, {}, {}, 0
for i = 1, #all, 2 do
  if #all[i] == 16 then
    fields = fields + 1
    local s = session_state(all[i + 1], now)
    if s == 0 then live = live + 1 elseif s == 1 then table.insert(gone, all[i]) else table.insert(forgotten, all[i]) end
  end
end
hdel_all(KEYS[1], forgotten)
if fields - #forgotten >= max then hdel_all(KEYS[1], gone) end
-- Sessions written before they were fields (see keys.rs): counted as the
-- index scores them (by cap), idled-out members dropped when that fills it.
local legacy = 0
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now - __REMEMBER_MS__))
  legacy = redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[3], '+inf')
  if live + legacy >= max then
    if ARGV[5] ~= '1' then return -3 end
    for j = 1, #ARGV - 8 do
      if redis.call('EXISTS', KEYS[2 + j]) == 0 then redis.call('ZREM', KEYS[2], ARGV[8 + j]) end
    end
    legacy = redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[3], '+inf')
  end
end
if live + legacy >= max then return -2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
