-- KEYS: tenant. ARGV: API keys, clients, sessions per client. The tenant as
-- it is now, or nothing if there is none (never creates one).
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('HSET', KEYS[1], 'qk', ARGV[1], 'qc', ARGV[2], 'qs', ARGV[3])
return redis.call('HGETALL', KEYS[1])
