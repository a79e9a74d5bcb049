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
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = dg_now_ms()
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat - interval * burst
if now < allow_at then
  return cjson.encode({allowed = false, retry_after_ms = math.ceil(allow_at - now + interval)})
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return '{"allowed":true}'
