-- KEYS: tenant, then the tenant's client index of each environment. ARGV:
-- change (+1 or -1), most allowed, a client id. Counts a tenant's clients:
-- +1 is refused (0) past the most allowed, -1 never goes below 0 and also
-- drops the client from the index (count and listing go down together).
-- Returns 1 when counted.
local n = tonumber(redis.call('HGET', KEYS[1], 'nc') or '0')
local d = tonumber(ARGV[1])
if d > 0 and n + d > tonumber(ARGV[2]) then return 0 end
if d < 0 then
  for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[3]) end
end
if n + d < 0 then d = -n end
redis.call('HINCRBY', KEYS[1], 'nc', d)
return 1
