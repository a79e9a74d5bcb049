--[[
  Register a live persister (or unregister it) and list the live ones, so that N
  persisters each take ceil(P/N) partitions: a member that stops renewing drops out
  after its ttl, and the others take its share.
  KEYS[1] members zset         <prefix>:persisters   (member name -> expiry ms)
  ARGV[1] member name   ARGV[2] ttl ms (0 unregisters); the clock is Redis's TIME
  Returns {"members": [names of the live members, sorted]}
  Errors: none
  Writes KEYS[1]; appends no event (bookkeeping, not domain state).
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ttl == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
end
local names = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(names)
if #names == 0 then return '{"members":[]}' end
return cjson.encode({members = names})
