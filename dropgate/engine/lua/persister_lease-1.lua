--[[
  Take or renew a persister's lease on one partition (one applier per partition keeps
  the partition's events in order); ttl 0 gives the lease up.
  KEYS[1] lease string        <prefix>:{pN}:persister
  ARGV[1] owner id   ARGV[2] ttl ms (0 releases)
  Returns {"held": true|false}
  Errors: none
  Writes KEYS[1]; appends no event (bookkeeping, not domain state).
]]
local cur = redis.call('GET', KEYS[1])
local ttl = tonumber(ARGV[2])
if cur == false or cur == ARGV[1] then
  if ttl == 0 then
    if cur ~= false then redis.call('DEL', KEYS[1]) end
    return '{"held":false}'
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
  return '{"held":true}'
end
return '{"held":false}'
