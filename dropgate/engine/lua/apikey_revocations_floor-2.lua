--[[
  After a restore: lift the partition's revocation version to Redis's clock in ms, above
  every version a serving process may have cached before Redis was lost (they count up
  by one from 0, or from an earlier restore's ms), so no answer cached under an old
  version is trusted again (``apikeys``: a hit needs its version >= the current one).
  The serving processes' poll records were lost too: one that kept running may still
  trust its view (polled before the loss) until its next poll, and a revoke finding no
  record would not wait for it. So a record `restore`, behind every version, stands for
  them: revoke (apikey_revoke_wait) waits for it until it is older than the lease, when
  every such process has polled again or reads the version per request.
  KEYS[1] revocation version  <prefix>:{pN}:apikeys:revocations
  KEYS[2] poller records      <prefix>:{pN}:apikeys:pollers
  ARGV    none
  Returns the version now (a JSON number)
  Errors: none
  Writes KEYS[1] when it was lower, and the field `restore` of KEYS[2].
]]
--- @include "dg_now_ms"
local now = dg_now_ms()
redis.call('HSET', KEYS[2], 'restore', '-1 ' .. now .. ' 0')
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < now then
  redis.call('SET', KEYS[1], now)
  return tostring(now)
end
return tostring(current)
