--[[
  Partition housekeeping for purchases: drop idempotency records past their 24 h (the
  expiry zset's due members name them, many to a member: lib/dg_idem.lua), and
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
--- @include "dg_call_chunked"
local now = dg_now_ms()
local limit = tonumber(ARGV[1])
-- each due member names the records filed with one expiry ('\n'-separated: one per
-- buffered call, dg_idem); members are taken until `limit` records are in hand
local fields, taken = {}, {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
  if #fields >= limit then break end
  taken[#taken + 1] = member
  for field in string.gmatch(member, '[^\n]+') do fields[#fields + 1] = field end
end
-- a record goes at its own expiry: one filed again since (a stopped request's, taken
-- over) lives on, under the member of its new expiry
local gone = {}
if #fields > 0 then
  local records = dg_call_chunked('HMGET', KEYS[1], fields, 1000)
  for i, field in ipairs(fields) do
    local raw = records[i]
    local expires = raw and tonumber(string.match(raw, '^%a %d+ (%d+) '))
    if raw and (not expires or expires <= now) then gone[#gone + 1] = field end
  end
  if #gone > 0 then dg_call_chunked('HDEL', KEYS[1], gone, 1000) end
end
if #taken > 0 then dg_call_chunked('ZREM', KEYS[2], taken, 1000) end
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
return cjson.encode({idempotency = #gone, rate_limits = dropped})
