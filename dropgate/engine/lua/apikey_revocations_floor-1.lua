--[[
  After a restore: lift the partition's revocation version to Redis's clock in ms, above
  every version a serving process may have cached before Redis was lost (they count up
  by one from 0, or from an earlier restore's ms), so no answer cached under an old
  version is trusted again (``apikeys``: a hit needs its version >= the current one).
  KEYS[1] revocation version  <prefix>:{pN}:apikeys:revocations
  ARGV    none
  Returns the version now (a JSON number)
  Errors: none
  Writes KEYS[1] when it was lower.
]]
--- @include "dg_now_ms"
local now = dg_now_ms()
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < now then
  redis.call('SET', KEYS[1], now)
  return tostring(now)
end
return tostring(current)
