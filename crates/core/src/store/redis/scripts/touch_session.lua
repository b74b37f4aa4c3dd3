-- KEYS: session. ARGV: now, idle. Never revives: a missing key stays missing.
-- The value is hash(16) created(8) cap(8) last-use(8); SETRANGE keeps the TTL.
local v = redis.call('GET', KEYS[1])
if not v then return -2 end
local cap = struct.unpack('>i8', string.sub(v, 25, 32))
redis.call('SETRANGE', KEYS[1], 32, struct.pack('>i8', tonumber(ARGV[1])))
if cap == 0 then return -1 end
local new = tonumber(ARGV[1]) + tonumber(ARGV[2])
if new > cap then new = cap end
local cur = redis.call('PEXPIRETIME', KEYS[1])
if new > cur then
  redis.call('PEXPIREAT', KEYS[1], string.format('%d', new))
  return new
end
return cur
