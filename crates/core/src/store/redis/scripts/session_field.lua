-- Shared by the session scripts (prepended to them): a session field's value
-- is hash(16) created(6) cap(6) last-use(6) expiry(6), big-endian ms, 0 for
-- none. `session_state(v, now)` is 0 live, 1 gone but remembered (expired
-- idle, or at its cap less than a day ago), 2 past remembering.
local function field_time(v, at)
  return (struct.unpack('>I6', v, at))
end
local function session_state(v, now)
  local cap, exp = field_time(v, 23), field_time(v, 35)
  if cap ~= 0 and cap + __REMEMBER_MS__ <= now then return 2 end
  if (cap ~= 0 and cap <= now) or (exp ~= 0 and exp <= now) then return 1 end
  return 0
end
-- A session field's value with its last use and expiry replaced.
local function session_used(v, last, exp)
  return string.sub(v, 1, 28) .. struct.pack('>I6', last) .. struct.pack('>I6', exp)
end
-- HDEL of many fields, in chunks (unpack's stack is bounded).
local function hdel_all(key, fields)
  for i = 1, #fields, 1000 do
    redis.call('HDEL', key, unpack(fields, i, math.min(i + 999, #fields)))
  end
end
