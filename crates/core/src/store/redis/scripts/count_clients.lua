-- KEYS: tenant. ARGV: change (+1 or -1), most allowed. Counts a tenant's
-- clients: +1 is refused (0) past the most allowed, -1 never goes below 0.
-- Returns 1 when counted.
local n = tonumber(redis.call('HGET', KEYS[1], 'nc') or '0')
local d = tonumber(ARGV[1])
if d > 0 and n + d > tonumber(ARGV[2]) then return 0 end
if n + d < 0 then d = -n end
redis.call('HINCRBY', KEYS[1], 'nc', d)
return 1
