--[[
  Partition housekeeping for purchases: drop idempotency records past their 24 h, and
  advance a scan over the purchase rate limits dropping users whose limit has fully
  recovered (their state is equal to having none).
  KEYS[1] idempotency hash    <prefix>:{pN}:idem
  KEYS[2] idempotency expiry  <prefix>:{pN}:idem_exp
  KEYS[3] purchase rate limit <prefix>:{pN}:rl_purchase
  ARGV[1] most records to drop per call
  Returns {"idempotency": n, "rate_limits": n}
  Errors: none
  Writes KEYS[1..3]; appends no event (neither is domain state).
]]
--- @include "dg_now_ms"
local now = dg_now_ms()
local limit = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
for _, field in ipairs(due) do
  redis.call('HDEL', KEYS[1], field)
  redis.call('ZREM', KEYS[2], field)
end
local cursor = redis.call('HGET', KEYS[3], '~cursor') or '0'
local scan = redis.call('HSCAN', KEYS[3], cursor, 'COUNT', limit)
local dropped = 0
local flat = scan[2]
for i = 1, #flat, 2 do
  if flat[i] ~= '~cursor' and tonumber(flat[i + 1]) < now then
    redis.call('HDEL', KEYS[3], flat[i])
    dropped = dropped + 1
  end
end
if scan[1] == '0' then
  redis.call('HDEL', KEYS[3], '~cursor')
else
  redis.call('HSET', KEYS[3], '~cursor', scan[1])
end
return cjson.encode({idempotency = #due, rate_limits = dropped})
