--[[
  Take one request from a GCRA rate limit (a token bucket without a refill loop):
  `rate` requests per second sustained, bursts of up to `burst`.
  KEYS[1] limiter string      <prefix>:{pN}:t:<tenant>:rl:<scope>:<subject>
  ARGV[1] emission interval ms (1000 / rate)   ARGV[2] burst
  Returns {"allowed": true} or {"allowed": false, "retry_after_ms": n}
  Errors: none
  Writes KEYS[1] (theoretical arrival time, with a TTL); appends no event (not domain state).
]]
--- @include "dg_now_ms"
--- @include "dg_gcra"
local now = dg_now_ms()
local allowed, value = dg_gcra(tonumber(redis.call('GET', KEYS[1])), now,
  tonumber(ARGV[1]), tonumber(ARGV[2]))
if not allowed then
  return cjson.encode({allowed = false, retry_after_ms = value})
end
redis.call('SET', KEYS[1], value, 'PX', math.ceil(value - now) + 1000)
return '{"allowed":true}'
